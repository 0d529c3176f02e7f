"""Catcher's durable state: the action ledger."""
