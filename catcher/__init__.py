"""Catcher: rules over the Rubin EFD that raise alarms, start pipelines and run notebooks."""

from importlib.metadata import PackageNotFoundError, version

__all__ = ["__version__"]

try:
    __version__ = version("catcher")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0.0.0"
