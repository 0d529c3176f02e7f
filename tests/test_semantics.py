"""The conditions' semantics, table by table: the cases the Flux templates implement."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import pytest

from catcher.models.conditions import Deadman, Thresholds
from catcher.models.enums import Severity
from catcher.semantics import aggregate, deadman, evaluate, level_of

T = datetime(2026, 11, 24, 3, 0, tzinfo=UTC)
NONE, WARNING, SERIOUS, CRITICAL = Severity
NAN = float("nan")


def samples(*values: float, step: float = 10) -> list[tuple[datetime, float]]:
    return [(T + timedelta(seconds=step * n), v) for n, v in enumerate(values)]


@pytest.mark.parametrize(
    ("name", "values", "expected"),
    [
        ("mean", (1, 2, 3, 6), 3.0),
        ("min", (4, -1, 2), -1.0),
        ("max", (4, -1, 2), 4.0),
        ("first", (4, -1, 2), 4.0),
        ("last", (4, -1, 2), 2.0),
        ("count", (4, -1, 2), 3.0),
        ("sum", (0.1, 0.2, 0.3), 0.6),
        ("stddev", (2, 4, 4, 4, 5, 5, 7, 9), 2.138089935299395),  # the sample deviation
        ("spread", (4, -1, 2), 5.0),
        ("median", (5, 1, 3), 3.0),
        ("median", (4, 1, 3, 2), 2.5),
        ("mean", (), None),  # an empty window: no evaluation
        ("stddev", (3,), None),  # undefined for one sample
        ("mean", (7,), 7.0),  # one sample
        ("mean", (1, NAN, 3), 2.0),  # a NaN reading is no reading
        ("max", (NAN,), None),
    ],
)
def test_aggregates(name: str, values: tuple[float, ...], expected: float | None) -> None:
    found = aggregate(name, samples(*values))
    if expected is None:
        assert found is None
    else:
        assert found is not None and math.isclose(found, expected)


def test_first_and_last_follow_time_not_arrival() -> None:
    late_first = [(T + timedelta(seconds=5), 1.0), (T, 9.0)]
    assert (aggregate("first", late_first), aggregate("last", late_first)) == (9.0, 1.0)


HOT = Thresholds(warning=60, serious=65, critical=70, big_is_bad=True, hysteresis=2)
COLD = Thresholds(warning=10, critical=0, big_is_bad=False, hysteresis=1)


@pytest.mark.parametrize(
    ("thresholds", "x", "previous", "expected"),
    [
        (HOT, 59.9, NONE, NONE),
        (HOT, 60.0, NONE, WARNING),  # exactly at a threshold reaches it
        (HOT, 64.99, NONE, WARNING),
        (HOT, 70.0, NONE, CRITICAL),
        (HOT, 69.0, CRITICAL, CRITICAL),  # inside the band below 70: kept
        (HOT, 68.0, CRITICAL, SERIOUS),  # back by exactly the hysteresis: left
        (HOT, 68.5, SERIOUS, SERIOUS),
        (HOT, 58.5, WARNING, WARNING),  # inside WARNING's band
        (HOT, 58.0, WARNING, NONE),
        (HOT, 58.5, NONE, NONE),  # the band keeps a level, never raises one
        (COLD, 10.0, NONE, WARNING),
        (COLD, 10.5, WARNING, WARNING),
        (COLD, 11.0, WARNING, NONE),
        (COLD, -0.5, NONE, CRITICAL),
        (COLD, 0.9, CRITICAL, CRITICAL),
        (COLD, 1.0, CRITICAL, WARNING),
        (HOT, NAN, CRITICAL, NONE),
    ],
)
def test_levels_with_hysteresis(
    thresholds: Thresholds, x: float, previous: Severity, expected: Severity
) -> None:
    assert level_of(x, thresholds, previous) == expected


def test_a_window_is_half_open_and_empty_gives_nothing() -> None:
    data = samples(50, 62, 71, step=30)  # at T, T+30 s, T+60 s
    at = T + timedelta(seconds=60)
    result = evaluate(data, at, timedelta(seconds=60), "max", HOT)
    assert result is not None and (result.value, result.severity) == (62.0, WARNING)
    assert evaluate(data, T, timedelta(seconds=60), "max", HOT) is None


def test_held_for_raises_a_level_only_once_held() -> None:
    held = Thresholds(warning=60, critical=70, hysteresis=0, held_for=timedelta(seconds=60))
    data = samples(50, 50, 50, 72, 72, 72, 72, 72, 72, step=10)  # hot from T+30 s
    at = T + timedelta(seconds=60)
    result = evaluate(data, at, timedelta(seconds=10), "last", held)
    assert result is not None and result.value == 72 and result.severity == NONE  # min 50
    at = T + timedelta(seconds=90)
    result = evaluate(data, at, timedelta(seconds=10), "last", held)
    assert result is not None and result.severity == CRITICAL


def test_deadman() -> None:
    rule = Deadman(timeout=timedelta(minutes=5), severity="SERIOUS", lookback=timedelta(hours=1))
    data = samples(1.0, 1.0, step=60)  # last at T+60 s
    fresh = deadman(data, T + timedelta(minutes=5), rule)
    assert fresh is not None and (fresh.value, fresh.severity) == (240.0, NONE)
    at_timeout = deadman(data, T + timedelta(minutes=6), rule)
    assert at_timeout is not None and at_timeout.severity == NONE  # exactly the timeout
    silent = deadman(data, T + timedelta(minutes=6, seconds=1), rule)
    assert silent is not None and silent.severity == SERIOUS
    assert deadman(data, T + timedelta(hours=2), rule) is None  # forgotten
    assert deadman([], T, rule) is None
