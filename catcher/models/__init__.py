"""Catcher's data models: rules, records and ledger entries. They import nothing else of Catcher."""
