"""Per-pane aggregates give what the semantics give from the samples themselves."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from catcher.models.conditions import AGGREGATES
from catcher.models.enums import Severity
from catcher.models.rules import Rule
from catcher.semantics import evaluate_condition
from catcher.services.evaluation.panes import add_sample, evaluate_panes, pane_width, uses_panes

T0 = datetime(2026, 11, 24, 3, 0, tzinfo=UTC)
EXACT = {"count", "min", "max", "first", "last", "spread"}


def _rule(aggregate: str, window: int, every: int, held_for: int | None) -> Rule:
    thresholds: dict[str, object] = {"warning": 10, "critical": 20, "hysteresis": 2}
    if held_for:
        thresholds["held_for"] = held_for
    return Rule.model_validate(
        {
            "id": "r",
            "description": "d",
            "condition": {
                "engine": "stream",
                "source": {"measurement": "m", "field": "f"},
                "aggregate": aggregate,
                "window": window,
                "thresholds": thresholds,
            },
            "schedule": {"every": every},
        }
    )


values = st.one_of(st.floats(min_value=-50, max_value=50, allow_nan=False), st.just(float("nan")))


@settings(max_examples=300, deadline=None)
@given(
    aggregate=st.sampled_from([a for a in AGGREGATES if a != "median"]),
    window=st.sampled_from([1, 2, 3, 6, 10]),
    every=st.sampled_from([1, 2, 5]),
    held_for=st.sampled_from([None, 1, 4]),
    offsets=st.lists(st.integers(0, 30_000), min_size=1, max_size=60, unique=True),
    data=st.data(),
)
def test_panes_evaluate_as_the_samples_do(
    aggregate: str,
    window: int,
    every: int,
    held_for: int | None,
    offsets: list[int],
    data: st.DataObject,
) -> None:
    rule = _rule(aggregate, window, every, held_for)
    condition = rule.condition
    assert condition is not None and uses_panes(rule)
    width = pane_width(rule)
    samples = [(T0 + timedelta(milliseconds=ms), data.draw(values)) for ms in sorted(offsets)]
    panes: dict[str, list[float]] = {}
    for at, value in samples:
        add_sample(panes, width, at.timestamp(), value)
    previous = Severity.NONE
    for k in range(1, 32 // every + 2):
        at = T0 + timedelta(seconds=k * every)
        expected = evaluate_condition(condition, samples, at, previous)
        found = evaluate_panes(condition, panes, at, previous)
        if expected is None:
            assert found is None
            continue
        assert found is not None
        if aggregate in EXACT:
            assert found.value == expected.value
        else:
            assert math.isclose(found.value, expected.value, rel_tol=1e-9, abs_tol=1e-9)
        if aggregate in EXACT or (abs(found.value - 10) > 1e-6 and abs(found.value - 20) > 1e-6):
            assert found.severity == expected.severity
        previous = expected.severity


def test_median_and_deadmen_keep_samples() -> None:
    assert not uses_panes(_rule("median", 2, 2, None))
    assert pane_width(_rule("max", 90, 60, None)) == 30_000
