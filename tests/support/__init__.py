"""Helpers shared by Catcher's tests."""

from pathlib import Path

DATA = Path(__file__).resolve().parent.parent / "data"
"""Shared test data: rules files, golden Flux, CRDs."""
