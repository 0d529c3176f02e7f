"""What a rule watches: its source in the EFD, thresholds or a deadman, and its schedule."""

from __future__ import annotations

import itertools
import re
from datetime import timedelta
from typing import Literal, Self, get_args

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from .durations import Duration
from .enums import Severity, SeverityField

__all__ = [
    "AGGREGATES",
    "RESERVED_TAGS",
    "Aggregate",
    "Condition",
    "Deadman",
    "Schedule",
    "Source",
    "Thresholds",
]


Aggregate = Literal[
    "mean", "min", "max", "last", "first", "count", "sum", "stddev", "spread", "median"
]
AGGREGATES: tuple[str, ...] = get_args(Aggregate)


RESERVED_TAGS = frozenset(
    {
        "rule_id",
        "trigger_id",
        "severity",
        "severity_level",
        "reason",
        "value",
        "window_start",
        "window_stop",
        "source",
        "kind",
        "x",
        "level",
        "held",
        "hasValue",
        "hasHeld",
        "previousLevel",
    }
)
"""Column names the compiled tasks use; tags cannot have them."""


_FIELD = re.compile(r"(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:\[(?P<index>\d{1,4})\])?")


class Source(BaseModel):
    """Which EFD series a condition reads."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    measurement: str = Field(min_length=1, description="Measurement (topic), e.g. lsst.sal...")
    field: str = Field(
        min_length=1,
        description="Field to evaluate; name[i] is element i of a SAL array (the EFD's"
        " flattened name{i}, e.g. temperatureItem[3] or temperatureItem3).",
    )
    tags: dict[str, str] = Field(
        default_factory=dict, description="Tag filters: only points with these tag values."
    )
    group_by: list[str] = Field(
        default_factory=list,
        description="Tags that tell series apart (e.g. salIndex): one trigger per series.",
    )

    @field_validator("field")
    @classmethod
    def _field_name(cls, value: str) -> str:
        if not _FIELD.fullmatch(value):
            raise ValueError(
                "a field is a name (letters, digits, _), or name[i] for an array element"
            )
        return value

    @property
    def element(self) -> tuple[str, int] | None:
        """``(array, index)`` when the field names an array element as ``name[i]``."""
        found = _FIELD.fullmatch(self.field)
        assert found is not None  # checked when the rule was loaded
        return (found["name"], int(found["index"])) if found["index"] is not None else None

    @property
    def efd_field(self) -> str:
        """The field's name in the EFD, where Telegraf flattens ``name[i]`` to ``name{i}``."""
        element = self.element
        return f"{element[0]}{element[1]}" if element else self.field

    @field_validator("group_by")
    @classmethod
    def _unique(cls, value: list[str]) -> list[str]:
        if len(set(value)) != len(value):
            raise ValueError("group_by names a tag twice")
        return value

    @model_validator(mode="after")
    def _tag_names(self) -> Self:
        for name in [*self.tags, *self.group_by]:
            if not name or name.startswith("_") or name in RESERVED_TAGS:
                raise ValueError(
                    f"tag name {name!r} is reserved: Catcher's trigger rows use"
                    f" {', '.join(sorted(RESERVED_TAGS))} and names starting with _"
                )
        return self


class Thresholds(BaseModel):
    """The Watcher's threshold levels.

    A level is entered once the value reaches it, and left once the value is back past it by
    ``hysteresis``.
    """

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    warning: float | None = Field(None, description="Level of WARNING.")
    serious: float | None = Field(None, description="Level of SERIOUS.")
    critical: float | None = Field(None, description="Level of CRITICAL.")
    big_is_bad: bool = Field(True, description="True: high values are bad; false: low ones.")
    hysteresis: float = Field(0.0, ge=0, description="How far back past a level to leave it.")
    held_for: Duration | None = Field(
        None, description="Only raise a level the value has held for this long."
    )

    def levels(self) -> list[tuple[Severity, float]]:
        """(severity, level) from the most severe, for the levels that are set."""
        found = [
            (Severity.CRITICAL, self.critical),
            (Severity.SERIOUS, self.serious),
            (Severity.WARNING, self.warning),
        ]
        return [(s, v) for s, v in found if v is not None]

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        levels = self.levels()
        if not levels:
            raise ValueError("set at least one of warning, serious and critical")
        for (high, high_value), (low, low_value) in itertools.pairwise(levels):
            worse = high_value > low_value if self.big_is_bad else high_value < low_value
            if not worse:
                direction = "above" if self.big_is_bad else "below"
                raise ValueError(
                    f"{high.name.lower()} ({high_value:g}) must be {direction}"
                    f" {low.name.lower()} ({low_value:g}) when big_is_bad is"
                    f" {str(self.big_is_bad).lower()}"
                )
        if self.held_for is not None and self.held_for <= timedelta(0):
            raise ValueError("held_for must be longer than zero")
        return self


class Deadman(BaseModel):
    """No data for ``timeout`` raises ``severity``."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    timeout: Duration = Field(description="How long without data before the alarm.")
    severity: SeverityField = Field(Severity.SERIOUS, description="Severity when the data stops.")
    lookback: Duration = Field(
        timedelta(days=1),
        description="How far back to look for series; a series silent for longer is forgotten.",
    )

    @model_validator(mode="after")
    def _sensible(self) -> Self:
        if self.timeout <= timedelta(0):
            raise ValueError("timeout must be longer than zero")
        if self.severity == Severity.NONE:
            raise ValueError("severity must be WARNING, SERIOUS or CRITICAL")
        if self.lookback <= self.timeout:
            raise ValueError("lookback must be longer than timeout")
        return self


class Condition(BaseModel):
    """What a rule evaluates: a window of a source, aggregated, then thresholds or a deadman."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    source: Source
    window: Duration = Field(
        timedelta(minutes=1),
        description="Evaluated window of data; 0 (stream rules with thresholds): every sample"
        " is evaluated as it arrives, as the Watcher's rules are.",
    )
    aggregate: Aggregate = Field("mean", description="How the window's points become one value.")
    thresholds: Thresholds | None = None
    deadman: Deadman | None = None
    engine: Literal["flux", "stream"] | None = Field(
        None,
        description="Who evaluates the condition: a Flux task on InfluxDB, or the worker on"
        " the telemetry stream (default: CATCHER_DEFAULT_ENGINE).",
    )

    @model_validator(mode="after")
    def _one_kind(self) -> Self:
        if (self.thresholds is None) == (self.deadman is None):
            raise ValueError("give exactly one of thresholds or deadman")
        if self.window < timedelta(0):
            raise ValueError("window cannot be negative")
        if self.window == timedelta(0):
            if self.engine != "stream" or self.thresholds is None:
                raise ValueError(
                    "window 0 (every sample evaluated as it arrives) needs engine: stream"
                    " and thresholds"
                )
            if self.thresholds.held_for is not None:
                raise ValueError("window 0 evaluates single samples: drop held_for")
        return self

    @property
    def per_sample(self) -> bool:
        """Whether every sample is evaluated as it arrives (``window: 0``, stream rules)."""
        return self.window == timedelta(0)

    def samples_span(self) -> timedelta:
        """How far before an evaluation its samples count: the window or ``held_for``."""
        held_for = self.thresholds.held_for if self.thresholds else None
        return max(self.window, held_for or timedelta(0))

    def history_needed(self) -> timedelta:
        """How much data before the first evaluation a reader of the past must fetch.

        The samples' span, or the deadman's lookback (how far back the last sample is
        looked for), whichever is longer.
        """
        lookback = self.deadman.lookback if self.deadman else timedelta(0)
        return max(self.samples_span(), lookback)


class Schedule(BaseModel):
    """When a rule's task runs."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    every: Duration = Field(timedelta(minutes=1), description="How often the task runs.")
    offset: Duration = Field(
        timedelta(0), description="Delay after each period, to let late data arrive."
    )

    @model_validator(mode="after")
    def _positive(self) -> Self:
        if self.every <= timedelta(0):
            raise ValueError("every must be longer than zero")
        return self
