"""What a rule's condition means, as pure functions: the executable specification.

The Flux templates (``flux/threshold.flux``, ``flux/deadman.flux``) implement these same
rules on InfluxDB; the backtest (and the stream engine) run these functions. Where the two
differ, the README says so ("Conditions: Flux and Python").

- :func:`aggregate`: one value from a window's samples, as Flux's aggregate of that name;
  an empty window gives None (no evaluation, no trigger). The window of an evaluation at
  ``T`` holds the samples with ``T - window <= time < T``.
- :func:`level_of`: the Watcher's threshold levels with ``big_is_bad`` and hysteresis: a
  level is reached at its value (``>=``, or ``<=`` when small is bad) and kept, from the
  previous level, until the value is back past it by the hysteresis or more (with
  ``big_is_bad``: kept while above ``threshold - hysteresis``, left at or below it).
- :func:`evaluate`: the window's level, capped by the level the whole ``held_for`` span
  reaches (its minimum when big is bad), so that a level is raised only once held.
- :func:`deadman`: a series whose last sample is older than the timeout gets the rule's
  severity; one silent for longer than the lookback is forgotten.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from .models.conditions import Condition, Deadman, Thresholds
from .models.enums import Severity

__all__ = ["Evaluation", "aggregate", "deadman", "evaluate", "evaluate_condition", "level_of"]

Sample = tuple[datetime, float]


def _clean(samples: Sequence[Sample]) -> list[Sample]:
    """Samples in time order, NaN dropped (a NaN reading is no reading)."""
    return sorted((s for s in samples if not math.isnan(s[1])), key=lambda s: s[0])


def _stddev(values: list[float]) -> float | None:
    # Flux's default mode: the sample standard deviation, undefined for one sample.
    return statistics.stdev(values) if len(values) > 1 else None


_AGGREGATES: dict[str, Callable[[list[float]], float | None]] = {
    "mean": statistics.fmean,
    "min": min,
    "max": max,
    "first": lambda values: values[0],
    "last": lambda values: values[-1],
    "count": lambda values: float(len(values)),
    "sum": math.fsum,
    "stddev": _stddev,
    "spread": lambda values: max(values) - min(values),
    "median": statistics.median,
}


def aggregate(name: str, samples: Sequence[Sample]) -> float | None:
    """The window's value; None when the window is empty (or stddev of one sample)."""
    if name not in _AGGREGATES:
        raise ValueError(f"Unknown aggregate {name!r}.")
    values = [v for _, v in _clean(samples)]
    if not values:
        return None
    found = _AGGREGATES[name](values)
    return None if found is None else float(found)


def _reached(x: float, threshold: float, previous: int, level: int, t: Thresholds) -> bool:
    if t.big_is_bad:
        return x >= threshold or (previous >= level and x > threshold - t.hysteresis)
    return x <= threshold or (previous >= level and x < threshold + t.hysteresis)


def level_of(x: float, thresholds: Thresholds, previous: Severity = Severity.NONE) -> Severity:
    """The severity of one value, given the severity before it (for the hysteresis)."""
    if math.isnan(x):
        return Severity.NONE
    for severity, threshold in thresholds.levels():
        if _reached(x, threshold, int(previous), int(severity), thresholds):
            return severity
    return Severity.NONE


@dataclass(frozen=True)
class Evaluation:
    """One evaluation of one series: its value and severity."""

    value: float
    severity: Severity


def evaluate(
    samples: Sequence[Sample],
    at: datetime,
    window: timedelta,
    aggregate_name: str,
    thresholds: Thresholds,
    *,
    previous: Severity = Severity.NONE,
) -> Evaluation | None:
    """The evaluation at ``at`` of samples in ``[at - window, at)`` (and ``held_for``)."""
    inside = [s for s in samples if at - window <= s[0] < at]
    value = aggregate(aggregate_name, inside)
    if value is None:
        return None
    severity = level_of(value, thresholds, previous)
    if thresholds.held_for is not None:
        held = [s for s in samples if at - thresholds.held_for <= s[0] < at]
        extreme = aggregate("min" if thresholds.big_is_bad else "max", held)
        if extreme is not None:
            severity = min(severity, level_of(extreme, thresholds, previous))
    return Evaluation(value, severity)


def deadman(samples: Sequence[Sample], at: datetime, rule: Deadman) -> Evaluation | None:
    """The deadman at ``at``: seconds since the last sample before it, and the severity.

    None when no sample lies within the lookback (the series is forgotten).
    """
    seen = [t for t, _ in samples if at - rule.lookback <= t < at]
    if not seen:
        return None
    last = max(seen)
    silent = last < at - rule.timeout
    seconds = (at - last).total_seconds()
    return Evaluation(seconds, Severity(rule.severity) if silent else Severity.NONE)


def evaluate_condition(
    condition: Condition,
    samples: Sequence[Sample],
    at: datetime,
    previous: Severity = Severity.NONE,
) -> Evaluation | None:
    """A condition's evaluation at ``at``: its thresholds over the window, or its deadman."""
    if condition.thresholds is not None:
        return evaluate(
            samples,
            at,
            condition.window,
            condition.aggregate,
            condition.thresholds,
            previous=previous,
        )
    if condition.deadman is None:
        raise ValueError("A condition has thresholds or a deadman.")
    return deadman(samples, at, condition.deadman)
