"""Durations written as seconds or as text (``90s``, ``10m``, ``1h30m``), and user times.

Every duration is finite and at most :data:`MAX_DURATION` (ten years), so that adding one
to a time can never overflow.
"""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from pydantic import AfterValidator, BeforeValidator, WithJsonSchema

__all__ = ["MAX_DURATION", "Duration", "Time", "as_utc", "parse_duration"]

MAX_DURATION = timedelta(days=3650)
"""The longest duration anything in Catcher takes."""

_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}
_LONGEST_TEXT = 64
"""Longer text is no duration anyone writes (and is not parsed)."""


def parse_duration(value: Any) -> timedelta:
    """A duration from seconds (number) or text such as ``90s``, ``10m``, ``1h30m``."""
    if isinstance(value, timedelta):
        return value
    if isinstance(value, bool):
        raise ValueError("a duration is a number of seconds or text such as 30s, 10m, 1h30m")
    seconds: float | None = None
    if isinstance(value, int | float):
        seconds = value
    elif isinstance(value, str):
        text = value.strip().replace(" ", "")
        if text and len(text) <= _LONGEST_TEXT and _DURATION.sub("", text) == "":
            seconds = sum(float(n) * _UNITS[u] for n, u in _DURATION.findall(text))
    if seconds is None or math.isnan(seconds):
        shown = repr(value)
        shown = shown if len(shown) <= _LONGEST_TEXT else shown[: _LONGEST_TEXT - 3] + "..."
        raise ValueError(
            f"{shown} is not a duration; write seconds or text such as 30s, 10m, 1h30m"
        )
    if seconds < 0:
        raise ValueError("a duration cannot be negative")
    if seconds > MAX_DURATION.total_seconds():
        raise ValueError(f"a duration is at most {MAX_DURATION.days} days")
    return timedelta(seconds=seconds)


DURATION_SCHEMA = {
    "anyOf": [
        {"type": "number", "minimum": 0, "maximum": MAX_DURATION.total_seconds()},
        {"type": "string", "pattern": r"^\s*(\d+(\.\d+)?\s*(ms|s|m|h|d)\s*)+$"},
    ],
    "description": "Seconds, or text such as 30s, 10m, 1h30m or 2d.",
}

Duration = Annotated[
    timedelta,
    BeforeValidator(parse_duration),
    WithJsonSchema(DURATION_SCHEMA, mode="validation"),
]


def as_utc(value: datetime) -> datetime:
    """A time with a time zone: one without is read as UTC (the EFD's and Kafka's zone)."""
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value


def _bounded_time(value: datetime) -> datetime:
    value = as_utc(value)
    if not EARLIEST <= value <= LATEST:
        raise ValueError(
            f"a time between {EARLIEST.year} and {LATEST.year - 1}, not {value.isoformat()}"
        )
    return value


EARLIEST = datetime(2000, 1, 1, tzinfo=UTC)
LATEST = datetime(2100, 1, 1, tzinfo=UTC)

Time = Annotated[datetime, AfterValidator(_bounded_time)]
"""A time given by a user: read as UTC without a zone, and within this century."""
