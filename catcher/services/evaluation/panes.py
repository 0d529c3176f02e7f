"""Per-pane aggregates: a series' state whatever its rate and window.

A threshold rule's windows ``[T - window, T)`` (and ``held_for`` spans) are unions of
panes of one width, the greatest common divisor of ``every``, ``window`` and ``held_for``.
Each pane keeps what every aggregate needs, built one sample at a time: the count, the
sum, the mean and the sum of squared deviations (Welford, combined as Chan et al.), the
minimum, the maximum, and the first and last samples. A window's value is then computed
from its panes as :mod:`catcher.semantics` computes it from the samples: exactly for
``count``, ``min``, ``max``, ``first``, ``last`` and ``spread``, and to rounding for
``sum``, ``mean`` and ``stddev``. ``median`` needs the samples themselves, and deadmen only
the last one, so those rules keep samples instead.

A pane is a JSON list ``[n, sum, mean, m2, min, max, first_t, first_v, last_t, last_v]``.
"""

from __future__ import annotations

import math
from datetime import datetime
from typing import Any

from ...models.conditions import Condition
from ...models.enums import Severity
from ...models.rules import Rule
from ...semantics import Evaluation, level_of

__all__ = ["add_sample", "evaluate_panes", "pane_width", "prune", "uses_panes"]

_N, _SUM, _MEAN, _M2, _MIN, _MAX, _FIRST_T, _FIRST_V, _LAST_T, _LAST_V = range(10)


def uses_panes(rule: Rule) -> bool:
    """Whether a rule's state is kept as panes (thresholds with any aggregate but median)."""
    condition = rule.condition
    return bool(
        condition is not None
        and condition.thresholds is not None
        and condition.aggregate != "median"
    )


def pane_width(rule: Rule) -> int:
    """The panes' width in milliseconds: the GCD of ``every``, ``window`` and ``held_for``."""
    condition = rule.condition
    assert condition is not None
    spans = [rule.schedule.every, condition.window]
    if condition.thresholds is not None and condition.thresholds.held_for is not None:
        spans.append(condition.thresholds.held_for)
    return math.gcd(*(max(1, round(s.total_seconds() * 1000)) for s in spans))


def add_sample(panes: dict[str, list[float]], width_ms: int, stamp: float, value: float) -> None:
    """Add one sample (event time in seconds); a NaN value is no reading and is skipped."""
    if math.isnan(value):
        return
    start = (math.floor(stamp * 1000) // width_ms) * width_ms
    key = str(start)
    pane = panes.get(key)
    if pane is None:
        panes[key] = [1, value, value, 0.0, value, value, stamp, value, stamp, value]
        return
    n = pane[_N] + 1
    delta = value - pane[_MEAN]
    mean = pane[_MEAN] + delta / n
    pane[_M2] += delta * (value - mean)
    pane[_N], pane[_MEAN] = n, mean
    pane[_SUM] += value
    pane[_MIN] = min(pane[_MIN], value)
    pane[_MAX] = max(pane[_MAX], value)
    if stamp < pane[_FIRST_T]:
        pane[_FIRST_T], pane[_FIRST_V] = stamp, value
    if stamp >= pane[_LAST_T]:
        pane[_LAST_T], pane[_LAST_V] = stamp, value


def _combined(
    panes: dict[str, list[float]], start: datetime, stop: datetime
) -> list[float] | None:
    """The panes starting in ``[start, stop)``, as one pane (None when there are none)."""
    low, high = _ms(start), _ms(stop)
    total: list[float] | None = None
    for key in sorted(panes, key=int):
        if not low <= int(key) < high:
            continue
        pane = panes[key]
        if total is None:
            total = list(pane)
            continue
        n = total[_N] + pane[_N]
        delta = pane[_MEAN] - total[_MEAN]
        total[_M2] += pane[_M2] + delta * delta * total[_N] * pane[_N] / n
        total[_MEAN] += delta * pane[_N] / n
        total[_N] = n
        total[_SUM] += pane[_SUM]
        total[_MIN] = min(total[_MIN], pane[_MIN])
        total[_MAX] = max(total[_MAX], pane[_MAX])
        total[_LAST_T], total[_LAST_V] = pane[_LAST_T], pane[_LAST_V]
    return total


def _value(name: str, pane: list[float]) -> float | None:
    n = pane[_N]
    values: dict[str, Any] = {
        "mean": pane[_MEAN],
        "min": pane[_MIN],
        "max": pane[_MAX],
        "first": pane[_FIRST_V],
        "last": pane[_LAST_V],
        "count": float(n),
        "sum": pane[_SUM],
        "spread": pane[_MAX] - pane[_MIN],
        "stddev": math.sqrt(max(pane[_M2], 0.0) / (n - 1)) if n > 1 else None,
    }
    found = values[name]
    return None if found is None else float(found)


def evaluate_panes(
    condition: Condition,
    panes: dict[str, list[float]],
    at: datetime,
    previous: Severity = Severity.NONE,
) -> Evaluation | None:
    """The evaluation at ``at``, as :func:`catcher.semantics.evaluate` from the samples."""
    thresholds = condition.thresholds
    assert thresholds is not None
    inside = _combined(panes, at - condition.window, at)
    if inside is None:
        return None
    value = _value(condition.aggregate, inside)
    if value is None:
        return None
    severity = level_of(value, thresholds, previous)
    if thresholds.held_for is not None:
        held = _combined(panes, at - thresholds.held_for, at)
        if held is not None:
            extreme = held[_MIN] if thresholds.big_is_bad else held[_MAX]
            severity = min(severity, level_of(extreme, thresholds, previous))
    return Evaluation(value, severity)


def prune(panes: dict[str, list[float]], oldest: datetime) -> dict[str, list[float]]:
    """The panes a later window may still need: those starting at ``oldest`` or after."""
    low = _ms(oldest)
    return {key: pane for key, pane in panes.items() if int(key) >= low}


def _ms(at: datetime) -> int:
    return round(at.timestamp() * 1000)
