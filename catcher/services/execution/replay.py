"""Replay: run again what happened, never re-deciding edges or cooldowns.

The selection joins the triggers of a time range (found through offsets for times) with
the history of the actions they started: each (trigger, action) pair has a last state, and
``--only`` keeps the pairs in the wanted states. Replaying sends an action request straight
to the action's owner, so the planner is not asked again:

- without ``force``, under the action's own id: the ledger skips an action that finished
  and continues one that did not;
- with ``force``, under a new generation (``.g<n>``, one more than the highest seen in the
  history), recording who asked and why; a forced replay is never refused as too old.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from ...models.enums import ActionState
from ...models.records import (
    ActionEvent,
    ActionRequest,
    ReplayInfo,
    Trigger,
    isoformat,
    make_action_id,
)
from .history import OperatorTopics

__all__ = ["Only", "ReplayItem", "plan_replay", "select", "send"]


class Only(StrEnum):
    """Which actions a replay selects, by their last state."""

    failed = "failed"
    cancelled = "cancelled"
    expired = "expired"
    unfinished = "unfinished"
    all = "all"

    def wants(self, state: ActionState) -> bool:
        """Whether an action whose last state is ``state`` is selected."""
        if state == ActionState.suppressed:
            return False  # it never ran: a cooldown is not re-decided
        if self == Only.all:
            return True
        if self == Only.unfinished:
            return not state.terminal
        return state.value == self.value


@dataclass(frozen=True)
class ReplayItem:
    """One action to replay, and what the replay will do with it."""

    trigger: Trigger
    action_name: str
    last_state: ActionState
    last_action_id: str
    generation: int
    """The generation the replay uses (the last one seen, or one more with force)."""

    @property
    def action_id(self) -> str:
        """The id the replay sends."""
        return make_action_id(self.trigger.trigger_id, self.action_name, self.generation)

    def what(self, *, force: bool) -> str:
        """What the replay will do, for people."""
        if force:
            return f"run again as {self.action_id}"
        if self.last_state.terminal:
            return f"deliver again; the ledger skips it ({self.last_state.value})"
        return "deliver again; the worker continues it"

    def to_json(self, *, force: bool) -> dict[str, Any]:
        """The dry run's row, for programs."""
        return {
            "trigger_time": isoformat(self.trigger.time),
            "trigger_id": self.trigger.trigger_id,
            "rule_id": self.trigger.rule_id,
            "action_name": self.action_name,
            "last_action_id": self.last_action_id,
            "last_state": self.last_state.value,
            "action_id": self.action_id,
            "replay": self.what(force=force),
        }


def plan_replay(
    triggers: Iterable[Trigger],
    events: Iterable[ActionEvent],
    *,
    only: Only,
    rules: Sequence[str] = (),
    action: str | None = None,
    force: bool = False,
) -> list[ReplayItem]:
    """The actions to replay: pure, from the triggers and the history."""
    latest: dict[tuple[str, str], ActionEvent] = {}
    highest: dict[tuple[str, str], int] = {}
    for event in sorted(events, key=lambda e: e.time):
        pair = (event.trigger_id, event.action_name)
        latest[pair] = event
        highest[pair] = max(highest.get(pair, 0), event.generation)
    items = []
    seen: set[str] = set()
    for trigger in sorted(triggers, key=lambda t: t.time):
        if trigger.trigger_id in seen or (rules and trigger.rule_id not in rules):
            continue
        seen.add(trigger.trigger_id)
        for (trigger_id, name), event in latest.items():
            if trigger_id != trigger.trigger_id or (action and name != action):
                continue
            if not only.wants(event.state):
                continue
            generation = highest[(trigger_id, name)] + 1 if force else event.generation
            base = trigger.model_copy(update={"generation": event.generation})
            items.append(
                ReplayItem(
                    trigger=base,
                    action_name=name,
                    last_state=event.state,
                    last_action_id=event.action_id,
                    generation=generation,
                )
            )
    return items


async def select(
    operator: OperatorTopics,
    *,
    since: datetime,
    until: datetime | None,
    only: Only,
    rules: Sequence[str] = (),
    action: str | None = None,
    force: bool = False,
) -> list[ReplayItem]:
    """Read the triggers and the history from ``since`` and plan the replay."""
    triggers = [
        t
        for t in await operator.read_triggers(since)
        if t.time >= since and (until is None or t.time <= until)
    ]
    events = await operator.read_history(since=since)
    return plan_replay(triggers, events, only=only, rules=rules, action=action, force=force)


async def send(
    operator: OperatorTopics,
    topic: str,
    items: Sequence[ReplayItem],
    *,
    force: bool,
    by: str,
    reason: str,
    progress: Callable[[int], None] = lambda _n: None,
) -> int:
    """Send one action request per item to the actions' owners (``topic``); returns how many."""

    def requests() -> Iterator[tuple[str, dict[str, Any]]]:
        for n, item in enumerate(items, 1):
            if n > 1:
                progress(n - 1)
            trigger = item.trigger.model_copy(update={"generation": item.generation})
            request = ActionRequest(
                action_id=item.action_id,
                action_name=item.action_name,
                trigger=trigger,
                replay=ReplayInfo(by=by, reason=reason, forced=force),
            )
            yield item.action_id, request.to_json()

    sent = await operator.send_json(topic, requests())
    if sent:
        progress(sent)
    return sent
