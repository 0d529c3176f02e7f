from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from catcher.models.actions import ActionCondition
from catcher.models.enums import Edge, Severity, TriggerSource
from catcher.models.records import SeriesState, Trigger
from catcher.models.rules import Rule
from catcher.services.planning.planner import edge_matches, plan

T0 = datetime(2026, 11, 23, tzinfo=UTC)
N, W, S, C = Severity.NONE, Severity.WARNING, Severity.SERIOUS, Severity.CRITICAL


@pytest.mark.parametrize(
    ("edge", "minimum", "previous", "current", "expected"),
    [
        (Edge.rising, W, N, W, True),
        (Edge.rising, W, W, C, True),  # escalation is rising
        (Edge.rising, W, W, W, False),  # no change
        (Edge.rising, S, N, W, False),  # below the minimum
        (Edge.rising, W, C, S, False),
        (Edge.falling, S, C, N, True),
        (Edge.falling, S, C, S, True),
        (Edge.falling, S, W, N, False),  # previous never reached the minimum
        (Edge.falling, S, N, N, False),
        (Edge.any, W, N, W, True),
        (Edge.any, W, W, N, True),
        (Edge.any, W, W, W, False),
        (Edge.any, C, W, S, False),
        (Edge.rising, N, N, W, True),
    ],
)
def test_edge_matches(
    edge: Edge, minimum: Severity, previous: Severity, current: Severity, expected: bool
) -> None:
    condition = ActionCondition(severity=minimum, edge=edge)
    assert edge_matches(condition, previous, current) is expected


RULE = Rule.model_validate(
    {
        "id": "r",
        "description": "d",
        "actions": [
            {"name": "page", "type": "webhook", "url": "http://x", "cooldown": "10m"},
            {
                "name": "bye",
                "type": "webhook",
                "url": "http://x",
                "on": {"edge": "falling", "severity": "WARNING"},
            },
        ],
    }
)


def trig(severity: Severity, minutes: float) -> Trigger:
    return Trigger.create(
        "r",
        severity,
        reason="x",
        source=TriggerSource.manual,
        time=T0 + timedelta(minutes=minutes),
    )


def test_sequence_with_cooldown() -> None:
    state = None
    seen = []
    for severity, minutes in [(W, 0), (N, 1), (W, 5), (N, 6), (W, 11)]:
        result = plan(RULE, trig(severity, minutes), state)
        state = result.state
        seen.append([(d.action_name, d.run) for d in result.decisions])
    assert seen == [
        [("page", True)],
        [("bye", True)],
        [("page", False)],  # 5 min after the last page: cooling down
        [("bye", True)],
        [("page", True)],  # 11 min after: cooled down
    ]


def test_suppression_says_why() -> None:
    state = plan(RULE, trig(W, 0), None).state
    state = plan(RULE, trig(N, 1), state).state
    result = plan(RULE, trig(W, 2), state)
    decision = result.decisions[0]
    assert not decision.run
    assert "Suppressed by the 0:10:00 cooldown" in decision.reason
    assert "0:08:00 left" in decision.reason
    assert result.state.last_fired["page"] == T0  # a suppression does not restart the cooldown


def test_redelivery_plans_the_same_actions_and_keeps_state() -> None:
    trigger = trig(C, 0)
    first = plan(RULE, trigger, None)
    again = plan(RULE, trigger, first.state)
    assert again.redelivered
    assert again.to_run == first.to_run == ["page"]
    assert again.state == first.state


def test_out_of_order_trigger_starts_nothing() -> None:
    state = plan(RULE, trig(W, 5), None).state
    result = plan(RULE, trig(C, 1), state)
    assert result.out_of_order
    assert result.decisions == []
    assert result.state == state


def test_unseen_series_starts_from_none() -> None:
    assert plan(RULE, trig(N, 0), None).decisions == []
    assert plan(RULE, trig(N, 0), SeriesState()).state.severity == N
