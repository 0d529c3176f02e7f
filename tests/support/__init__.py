"""Helpers shared by Catcher's tests."""
