"""Durations written as seconds or as text (``90s``, ``10m``, ``1h30m``)."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Annotated, Any

from pydantic import BeforeValidator

__all__ = ["Duration", "parse_duration"]

_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(value: Any) -> timedelta:
    """A duration from seconds (number) or text such as ``90s``, ``10m``, ``1h30m``."""
    if isinstance(value, timedelta):
        return value
    if isinstance(value, bool):
        raise ValueError("a duration is a number of seconds or text such as 30s, 10m, 1h30m")
    if isinstance(value, int | float):
        if value < 0:
            raise ValueError("a duration cannot be negative")
        return timedelta(seconds=value)
    if isinstance(value, str):
        text = value.strip().replace(" ", "")
        if text and _DURATION.sub("", text) == "":
            return timedelta(seconds=sum(float(n) * _UNITS[u] for n, u in _DURATION.findall(text)))
    raise ValueError(f"{value!r} is not a duration; write seconds or text such as 30s, 10m, 1h30m")


Duration = Annotated[timedelta, BeforeValidator(parse_duration)]
