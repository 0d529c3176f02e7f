"""The series' owner: it decides which actions a trigger of its rule and series starts.

It reads the series' state (a changelog-backed table), asks the pure planner
(:func:`catcher.services.planning.planner.plan`), writes the new state durably, then sends one
request per action to start (the internal action-request topic, keyed by action id) and
records suppressed actions in the history. A trigger delivered again plans the same
actions again, which the ledger makes harmless. The series' alarm takes the trigger's
severity under the same lock, and operator commands on the alarm take that lock too.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Awaitable, Callable

import structlog

from ...aio import together
from ...metrics import METRICS
from ...models.alarms import AlarmCommand
from ...models.enums import ActionState
from ...models.records import (
    ActionEvent,
    ActionRequest,
    SeriesState,
    Trigger,
    make_action_id,
    utcnow,
)
from ...models.rules import RuleSet
from ...storage.tables import DurableTable
from ...types import SendJson
from ..alarms.engine import AlarmEngine
from .planner import plan

__all__ = ["SeriesOwner"]

logger = structlog.get_logger("catcher")


class SeriesOwner:
    """Plans the actions of triggers for the series this worker owns."""

    def __init__(
        self,
        rules: RuleSet,
        state: DurableTable,
        send: SendJson,
        record: Callable[[ActionEvent], Awaitable[None]],
        requests_topic: str,
        *,
        alarms: AlarmEngine | None = None,
    ) -> None:
        self._rules = rules
        self._alarms = alarms
        self._state = state
        self._send = send
        self._record = record
        self._requests_topic = requests_topic
        self._locks: weakref.WeakValueDictionary[str, asyncio.Lock] = weakref.WeakValueDictionary()

    async def handle(self, trigger: Trigger, partition: int) -> None:
        """Plan one trigger of a series held in ``partition`` (triggers or series topic).

        Triggers of one series are planned one at a time, whichever agent brings them.
        """
        lock = self._locks.setdefault(trigger.series, asyncio.Lock())
        async with lock:
            await self._plan(trigger, partition)

    async def command(self, command: AlarmCommand, partition: int) -> None:
        """Apply an operator command to an alarm, in order with its series' triggers."""
        if self._alarms is None:
            return
        lock = self._locks.setdefault(command.series, asyncio.Lock())
        async with lock:
            await self._alarms.on_command(command, partition)

    async def _plan(self, trigger: Trigger, partition: int) -> None:
        rule = self._rules.get(trigger.rule_id)
        if rule is None:  # checked at intake; rules are fixed for the life of the process
            return
        METRICS.trigger_age.observe(max((utcnow() - trigger.time).total_seconds(), 0.0))
        raw = self._state.get(trigger.series)
        result = plan(rule, trigger, SeriesState.model_validate(raw) if raw else None)
        log = logger.bind(rule_id=trigger.rule_id, trigger_id=trigger.trigger_id)
        if result.out_of_order:
            log.info("Ignored a trigger older than the last one of its series")
            return
        # The writes of one trigger go together, in one round trip: whichever of them a
        # crash interrupts, the trigger is delivered again and planned again the same way
        # (the alarm's severity set again changes nothing; the same action ids are deduped).
        writes: list[Awaitable[None]] = []
        if result.redelivered:
            log.info("Trigger delivered again; planning the same actions", actions=result.to_run)
        else:
            writes.append(self._state.put(partition, trigger.series, result.state.to_json()))
        if self._alarms is not None:
            writes.append(self._alarms.on_trigger(trigger, partition))
        for decision in result.decisions:
            action = rule.action(decision.action_name)
            action_id = make_action_id(
                trigger.trigger_id, decision.action_name, trigger.generation
            )
            if decision.run:
                request = ActionRequest(
                    action_id=action_id, action_name=decision.action_name, trigger=trigger
                )
                writes.append(self._send(self._requests_topic, action_id, request.to_json()))
                continue
            writes.append(
                self._record(
                    ActionEvent(
                        action_id=action_id,
                        trigger_id=trigger.trigger_id,
                        rule_id=trigger.rule_id,
                        action_name=decision.action_name,
                        action_type=action.type if action else "unknown",
                        state=ActionState.suppressed,
                        attempt=0,
                        time=utcnow(),
                        severity=trigger.severity.name,
                        message=decision.reason,
                        generation=trigger.generation,
                    )
                )
            )
        await together(*writes)
        if result.decisions:
            log.info(
                "Planned actions",
                run=result.to_run,
                suppressed=[d.action_name for d in result.decisions if not d.run],
            )
