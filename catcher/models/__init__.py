"""Catcher's data models: rules, records, ledger entries. They import nothing else of Catcher."""
