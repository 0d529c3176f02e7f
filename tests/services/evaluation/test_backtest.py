"""The backtest's one pass over the samples agrees with the semantics evaluated in full."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from catcher.models.enums import Severity
from catcher.models.rules import Rule
from catcher.semantics import evaluate_condition
from catcher.services.evaluation.backtest import Series, run_backtest, schedule

T0 = datetime(2026, 11, 20, tzinfo=UTC)


def _rule(condition: dict[str, Any], every: str = "1m") -> Rule:
    source = {"measurement": "lsst.sal.X.y", "field": "v"}
    return Rule.model_validate(
        {
            "id": "r",
            "description": "d",
            "condition": {"source": source, **condition},
            "schedule": {"every": every},
        }
    )


THRESHOLDS = {"warning": 50, "critical": 60, "hysteresis": 2}
RULES = {
    "mean": _rule({"aggregate": "mean", "window": "5m", "thresholds": THRESHOLDS}),
    "max held": _rule(
        {"aggregate": "max", "window": "2m", "thresholds": {**THRESHOLDS, "held_for": "3m"}}
    ),
    "median": _rule({"aggregate": "median", "window": "3m", "thresholds": THRESHOLDS}),
    "deadman": _rule({"deadman": {"timeout": "4m", "lookback": "1h"}}),
}


@pytest.mark.parametrize("name", sorted(RULES))
def test_one_pass_agrees_with_the_semantics_at_every_time(name: str) -> None:
    rule = RULES[name]
    condition = rule.condition
    assert condition is not None
    chance = random.Random(name)
    samples = []
    at = T0
    while at < T0 + timedelta(hours=3):
        at += timedelta(seconds=chance.choice([1, 7, 30, 90, 400]))  # with silences
        samples.append((at, chance.uniform(30, 70)))
    start, end = T0 + timedelta(minutes=10), T0 + timedelta(hours=3)
    result = run_backtest(rule, {"": Series.of({}, samples)}, start, end)
    found = result.series[""].evaluations
    expected = []
    previous = Severity.NONE
    for time in schedule(start, end, rule.schedule.every):
        evaluation = evaluate_condition(condition, samples, time, previous)
        if evaluation is not None:
            expected.append((time, evaluation.value, evaluation.severity))
            previous = evaluation.severity
    assert [(t, s) for t, _, s in found] == [(t, s) for t, _, s in expected]
    assert [v for _, v, _ in found] == pytest.approx([v for _, v, _ in expected])
    assert len(found) > 20


def test_samples_added_out_of_order_are_evaluated_in_order() -> None:
    rule = RULES["mean"]
    samples = [(T0 + timedelta(seconds=10 * n), 40.0 + (n // 30) * 5) for n in range(360)]
    shuffled = samples[:]
    random.Random(1).shuffle(shuffled)
    start, end = T0 + timedelta(minutes=10), T0 + timedelta(hours=1)
    in_order = run_backtest(rule, {"": Series.of({}, samples)}, start, end)
    out_of_order = Series.of({}, shuffled)
    assert not out_of_order.ordered
    mixed = run_backtest(rule, {"": out_of_order}, start, end)
    assert mixed.series[""].evaluations == in_order.series[""].evaluations
    assert out_of_order.ordered
    assert [c.severity for c in mixed.changes] == [Severity.WARNING, Severity.CRITICAL]


def test_a_series_repr_is_short_whatever_its_size() -> None:
    # asyncio formats a finished task's result in passing (signal.signal in asyncio.run):
    # a week of points printed in full was 36 MB at the end of every backtest.
    series = Series.of(
        {"salIndex": "1"}, [(T0 + timedelta(seconds=n), 1.0) for n in range(10_000)]
    )
    assert repr(series) == "Series({'salIndex': '1'}, 10000 samples, 0 evaluations)"
