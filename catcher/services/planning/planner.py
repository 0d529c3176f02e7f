"""The planner decides which of a rule's actions a trigger starts.

Judged against the previous severity of the same rule and series (NONE for a series never
seen), and each action's cooldown:

- ``rising``: the severity went up and is now at least the action's minimum severity
  (NONE → WARNING, WARNING → CRITICAL);
- ``falling``: the severity went down from at least the minimum (CRITICAL → NONE is a
  recovery);
- ``any``: either;
- ``cooldown``: an action that started for this series less than ``cooldown`` ago (in trigger
  time) is suppressed, and the suppression is recorded in the history.

A trigger older than the last one seen for its series is out of order and starts nothing;
the last trigger delivered again plans the same actions again, which the ledger makes
harmless.
"""

from __future__ import annotations

from dataclasses import dataclass

from ...models.actions import ActionCondition
from ...models.enums import Edge, Severity
from ...models.records import SeriesState, Trigger
from ...models.rules import Rule

__all__ = ["Decision", "Plan", "edge_matches", "plan"]


@dataclass(frozen=True)
class Decision:
    """One action's fate for one trigger: run it, or record why it was suppressed."""

    action_name: str
    run: bool
    reason: str = ""


@dataclass(frozen=True)
class Plan:
    """What a trigger does: decisions, the new series state, and whether it was a redelivery."""

    decisions: list[Decision]
    state: SeriesState
    redelivered: bool = False
    out_of_order: bool = False

    @property
    def to_run(self) -> list[str]:
        """Names of the actions to start."""
        return [d.action_name for d in self.decisions if d.run]


def edge_matches(condition: ActionCondition, previous: Severity, current: Severity) -> bool:
    """Whether a change from ``previous`` to ``current`` meets the condition."""
    rising = current > previous and current >= condition.severity
    falling = current < previous and previous >= condition.severity
    if condition.edge == Edge.rising:
        return rising
    if condition.edge == Edge.falling:
        return falling
    return rising or falling


def plan(rule: Rule, trigger: Trigger, state: SeriesState | None) -> Plan:
    """Decide which of the rule's actions the trigger starts, and the series' next state."""
    state = state or SeriesState()
    if state.last_trigger_id == trigger.trigger_id:
        again = [Decision(name, run=True) for name in state.last_actions]
        return Plan(again, state, redelivered=True)
    if state.time is not None and trigger.time < state.time:
        return Plan([], state, out_of_order=True)
    decisions: list[Decision] = []
    last_fired = dict(state.last_fired)
    for action in rule.actions:
        name = action.name or action.type
        if not edge_matches(action.on, state.severity, trigger.severity):
            continue
        fired = last_fired.get(name)
        if fired is not None and action.cooldown and trigger.time - fired < action.cooldown:
            remaining = action.cooldown - (trigger.time - fired)
            decisions.append(
                Decision(
                    name,
                    run=False,
                    reason=f"Suppressed by the {action.cooldown} cooldown: it last started"
                    f" {fired.isoformat()} for this series ({remaining} left).",
                )
            )
            continue
        last_fired[name] = trigger.time
        decisions.append(Decision(name, run=True))
    new_state = SeriesState(
        severity=trigger.severity,
        time=trigger.time,
        last_trigger_id=trigger.trigger_id,
        last_actions=[d.action_name for d in decisions if d.run],
        last_fired=last_fired,
    )
    return Plan(decisions, new_state)
