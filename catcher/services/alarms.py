"""The alarm engine: the owner of a series keeps its alarm.

Planning calls :meth:`AlarmEngine.on_trigger` under the series' lock, so an alarm sees its
triggers in order; operator commands arrive as typed messages on the series topic, keyed
like the series, and are applied by :meth:`AlarmEngine.on_command` under the same lock.
Each change is written to the alarm table (changelog acknowledged first), then sent to the
alarms topic. Timers are due times in the state; :meth:`AlarmEngine.scan` fires those due
on the partitions this worker holds, so they survive restarts and move with ownership.
"""

from __future__ import annotations

import heapq
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

import structlog

from ..models.alarms import Alarm, AlarmCommand, AlarmSettings, CommandKind, alarm_name
from ..models.enums import Severity
from ..models.records import Trigger, utcnow
from ..models.rules import RuleSet
from ..storage.tables import DurableTable
from . import alarm_machine as machine

__all__ = ["AlarmEngine", "Change"]

logger = structlog.get_logger("catcher")

Change = Callable[[Alarm, AlarmCommand | None], Awaitable[None]]
"""Sends an alarm's new state (and the command that made it, if any) to the alarms topic."""

Owns = Callable[[int], bool]

_DISABLED = AlarmSettings(enabled=False)


class AlarmEngine:
    """Alarms of the series this worker owns."""

    def __init__(
        self,
        rules: RuleSet,
        table: DurableTable,
        publish: Change,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self._rules = rules
        self._table = table
        self._publish = publish
        self._clock = clock
        self._due: list[tuple[datetime, str]] = []

    def settings(self, rule_id: str) -> AlarmSettings:
        """The rule's alarm block (alarms of an unknown rule are disabled)."""
        rule = self._rules.get(rule_id)
        return rule.alarm if rule is not None else _DISABLED

    def get(self, name: str) -> Alarm | None:
        """An alarm this worker holds."""
        raw = self._table.get(name)
        return None if raw is None else Alarm.model_validate(raw)

    def rebuild_index(self) -> None:
        """Index the timers of every alarm once (after the table is recovered)."""
        self._due.clear()
        for name, raw in self._table.items():
            self._index(name, Alarm.model_validate(raw))

    def _index(self, name: str, alarm: Alarm) -> None:
        due = alarm.next_due()
        if due is not None:
            heapq.heappush(self._due, (due, name))

    async def _write(
        self, alarm: Alarm, partition: int, command: AlarmCommand | None = None
    ) -> None:
        await self._table.put(partition, alarm.name, {**alarm.to_json(), "partition": partition})
        self._index(alarm.name, alarm)
        await self._publish(alarm, command)

    async def on_trigger(self, trigger: Trigger, partition: int) -> None:
        """Set the severity of the trigger's alarm."""
        settings = self.settings(trigger.rule_id)
        if not settings.enabled:
            return
        name = alarm_name(trigger.rule_id, trigger.tags)
        alarm = self.get(name) or Alarm(name=name, rule_id=trigger.rule_id, tags=trigger.tags)
        changed = machine.set_severity(
            alarm, trigger.severity, trigger.reason, self._clock(), settings
        )
        if changed is not alarm:
            await self._write(changed, partition)

    async def on_command(self, command: AlarmCommand, partition: int) -> Alarm | None:
        """Apply one operator command; returns the alarm after it (None if unknown)."""
        log = logger.bind(alarm=command.name, command=command.command.value, user=command.user)
        alarm = self.get(command.name)
        if alarm is None:
            log.warning("Ignored a command for an alarm that does not exist")
            return None
        settings = self.settings(alarm.rule_id)
        now = self._clock()
        try:
            changed = _apply(command, alarm, now, settings)
        except machine.AlarmCommandError as exc:
            log.warning("Refused an alarm command", reason=str(exc))
            return alarm
        if command.comment and changed.comment != command.comment:
            changed = changed.model_copy(update={"comment": command.comment, "updated": now})
        # Every command is recorded, even one that changed nothing.
        await self._write(changed, partition, command)
        log.info("Applied an alarm command", comment=command.comment)
        return changed

    async def scan(self, owns: Owns) -> int:
        """Fire the timers that are due on this worker's partitions; returns how many."""
        now = self._clock()
        fired = 0
        while self._due and self._due[0][0] <= now:
            _, name = heapq.heappop(self._due)
            raw = self._table.get(name)
            if raw is None or not owns(int(raw.get("partition", 0))):
                continue
            alarm = Alarm.model_validate(raw)
            changed = machine.fire_timers(alarm, now, self.settings(alarm.rule_id))
            if changed is not alarm:
                await self._write(changed, int(raw.get("partition", 0)))
                fired += 1
            elif alarm.next_due() is not None and alarm.next_due() > now:  # type: ignore[operator]
                self._index(name, alarm)
        return fired

    def alarms(self) -> list[Alarm]:
        """Every alarm this worker holds."""
        return [Alarm.model_validate(raw) for _, raw in self._table.items()]


def _apply(command: AlarmCommand, alarm: Alarm, now: datetime, settings: AlarmSettings) -> Alarm:
    kind = command.command
    if kind == CommandKind.acknowledge:
        severity = command.severity or alarm.max_severity
        return machine.acknowledge(alarm, severity, command.user, now, settings)
    if kind == CommandKind.unacknowledge:
        return machine.unacknowledge(alarm, now, settings)
    if kind == CommandKind.mute:
        if command.duration is None:
            raise machine.AlarmCommandError(f"{alarm.name}: a mute needs a duration.")
        return machine.mute(
            alarm, command.duration, command.severity or Severity.CRITICAL, command.user, now
        )
    return machine.unmute(alarm, now, settings)


def alarm_avro(alarm: Alarm, command: AlarmCommand | None) -> dict[str, Any]:
    """The alarms topic's record of an alarm's state."""
    return {
        "name": alarm.name,
        "rule_id": alarm.rule_id,
        "tags": alarm.tags,
        "severity": alarm.severity.name,
        "max_severity": alarm.max_severity.name,
        "state": alarm.display_state.value.replace("-", "_"),
        "reason": alarm.reason,
        "acknowledged": alarm.acknowledged,
        "acknowledged_by": alarm.acknowledged_by,
        "muted_severity": alarm.muted_severity.name,
        "muted_by": alarm.muted_by,
        "silence_id": alarm.silence_id,
        "escalate_to": alarm.escalate_to,
        "escalated_id": alarm.escalated_id,
        "comment": alarm.comment,
        "timestamp_severity_oldest": alarm.severity_oldest,
        "timestamp_severity_newest": alarm.severity_newest,
        "timestamp_max_severity": alarm.max_severity_time,
        "timestamp_acknowledged": alarm.acknowledged_time,
        "timestamp_auto_acknowledge": alarm.auto_acknowledge_at,
        "timestamp_auto_unacknowledge": alarm.auto_unacknowledge_at,
        "timestamp_escalate": alarm.escalate_at,
        "timestamp_unmute": alarm.unmute_at,
        "time": alarm.updated or utcnow(),
        "command": command.command.value if command else None,
        "command_user": command.user if command else None,
    }


def alarm_from_avro(record: dict[str, Any]) -> Alarm:
    """An alarm's state read back from the alarms topic (for reads on any worker)."""
    return Alarm(
        name=record["name"],
        rule_id=record["rule_id"],
        tags=record.get("tags") or {},
        severity=Severity[record["severity"]],
        max_severity=Severity[record["max_severity"]],
        reason=record["reason"],
        acknowledged=record["acknowledged"],
        acknowledged_by=record["acknowledged_by"],
        muted_severity=Severity[record["muted_severity"]],
        muted_by=record["muted_by"],
        silence_id=record.get("silence_id") or "",
        escalate_to=record["escalate_to"],
        escalated_id=record["escalated_id"],
        comment=record.get("comment") or "",
        severity_oldest=record.get("timestamp_severity_oldest"),
        severity_newest=record.get("timestamp_severity_newest"),
        max_severity_time=record.get("timestamp_max_severity"),
        acknowledged_time=record.get("timestamp_acknowledged"),
        auto_acknowledge_at=record.get("timestamp_auto_acknowledge"),
        auto_unacknowledge_at=record.get("timestamp_auto_unacknowledge"),
        escalate_at=record.get("timestamp_escalate"),
        unmute_at=record.get("timestamp_unmute"),
        updated=record.get("time"),
    )
