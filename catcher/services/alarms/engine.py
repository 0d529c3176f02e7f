"""The alarm engine: the owner of a series keeps its alarm.

SeriesOwner calls :meth:`AlarmEngine.on_trigger` under the series' lock, so an alarm sees its
triggers in order; operator commands arrive as typed messages on the series topic, keyed
like the series, and are applied by :meth:`AlarmEngine.on_command` under the same lock.
Each change is written to the alarm table (changelog acknowledged first), then sent to the
alarms topic. Timers are due times in the state; :meth:`AlarmEngine.scan` fires those due
on the partitions this worker holds, so they survive restarts and move with ownership.
"""

from __future__ import annotations

import heapq
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Protocol

import structlog
from aiokafka.partitioner import DefaultPartitioner

from ...aio import together
from ...exceptions import ActionError, AlarmCommandError
from ...models.alarms import (
    RECENT_COMMANDS,
    Alarm,
    AlarmCommand,
    AlarmSettings,
    CommandKind,
    RuleState,
    Silence,
    SilenceState,
    alarm_name,
)
from ...models.enums import Severity
from ...models.records import Trigger, series_id, utcnow
from ...models.rules import RuleSet
from ...retry import RetryPolicy
from ...storage.tables import DurableTable
from ...types import OwnsPartition
from . import machine
from .escalation import Escalator

__all__ = ["AlarmEngine", "Change", "series_partition"]

logger = structlog.get_logger("catcher")

Change = Callable[[Alarm, AlarmCommand | None], Awaitable[None]]
"""Sends an alarm's new state (and the command that made it, if any) to the alarms topic."""


class SilenceSource(Protocol):
    """The silences every worker follows (:class:`~catcher.services.alarms.view.TopicView`)."""

    values: dict[str, Silence]
    version: int


class RuleStateSource(Protocol):
    """The rule states every worker follows (a :class:`TopicView` of the rule-states topic)."""

    values: dict[str, RuleState]


_DISABLED = AlarmSettings(enabled=False)


def series_partition(key: str, partitions: int) -> int:
    """The partition the producer's default partitioner gives a series key (murmur2)."""
    return int(DefaultPartitioner()(key.encode(), list(range(partitions)), []))


class AlarmEngine:
    """Alarms of the series this worker owns."""

    def __init__(
        self,
        rules: RuleSet,
        table: DurableTable,
        publish: Change,
        clock: Callable[[], datetime] = utcnow,
        *,
        escalator: Escalator | None = None,
        policy: RetryPolicy | None = None,
        silences: SilenceSource | None = None,
        partitions: int = 1,
        rule_states: RuleStateSource | None = None,
    ) -> None:
        self._rule_states = rule_states
        self._rules = rules
        self._partitions = partitions
        self._table = table
        self._publish = publish
        self._clock = clock
        self._escalator = escalator
        self._policy = policy or RetryPolicy()
        self._due: list[tuple[datetime, str]] = []
        self._silences = silences
        self._silences_seen = -1
        self._silences_due: datetime | None = None
        self._resolving: dict[str, tuple[datetime, int]] = {}
        """Alarms with an incident to resolve: when to try next, and failures so far."""

    def settings(self, rule_id: str, name: str) -> AlarmSettings:
        """An alarm's settings: its rule's block, escalated by the escalation table.

        Alarms of an unknown rule are disabled.
        """
        settings = self._rules.alarm_settings(rule_id, name)
        if settings is None or not self.enabled(rule_id):
            return _DISABLED
        return settings

    def enabled(self, rule_id: str) -> bool:
        """Whether the rule's alarms follow its triggers (not disabled at run time)."""
        if self._rule_states is None:
            return True
        state = self._rule_states.values.get(rule_id)
        return state is None or state.alarms_enabled

    def get(self, name: str) -> Alarm | None:
        """An alarm this worker holds."""
        raw = self._table.get(name)
        return None if raw is None else Alarm.model_validate(raw)

    def rebuild_index(self) -> None:
        """Index the timers of every alarm once (after the table is recovered)."""
        self._due.clear()
        self._resolving.clear()
        for name, raw in self._table.items():
            self._index(name, Alarm.model_validate(raw))

    def _index(self, name: str, alarm: Alarm) -> None:
        due = alarm.next_due()
        if due is not None:
            heapq.heappush(self._due, (due, name))
        if alarm.resolve_id and name not in self._resolving:
            self._resolving[name] = (self._clock(), 0)

    async def _write(
        self, alarm: Alarm, partition: int, command: AlarmCommand | None = None
    ) -> None:
        # The alarm's state and its record on the alarms topic, in one round trip: a crash
        # before both are written leaves the cause (trigger or command) to be handled again.
        await together(
            self._table.put(partition, alarm.name, {**alarm.to_json(), "partition": partition}),
            self._publish(alarm, command),
        )
        self._index(alarm.name, alarm)

    async def on_trigger(self, trigger: Trigger, partition: int) -> None:
        """Set the severity of the trigger's alarm."""
        name = alarm_name(trigger.rule_id, trigger.tags)
        settings = self.settings(trigger.rule_id, name)
        if not settings.enabled:
            return
        alarm = self.get(name) or Alarm(name=name, rule_id=trigger.rule_id, tags=trigger.tags)
        now = self._clock()
        changed = machine.set_severity(alarm, trigger.severity, trigger.reason, now, settings)
        if changed is not alarm:
            changed = self._with_silences(changed, now)
            await self._write(changed, partition)

    async def on_command(self, command: AlarmCommand, partition: int) -> Alarm | None:
        """Apply one operator command; returns the alarm after it (None if unknown).

        A command delivered again (the same ``command_id``, after a restart) is not applied
        a second time.
        """
        log = logger.bind(alarm=command.name, command=command.command.value, user=command.user)
        alarm = self.get(command.name)
        if alarm is None:
            log.warning("Ignored a command for an alarm that does not exist")
            return None
        if command.command_id in alarm.recent_commands:
            log.info("Ignored a command applied before", command_id=command.command_id)
            return alarm
        settings = self.settings(alarm.rule_id, alarm.name)
        now = self._clock()
        remembered = [*alarm.recent_commands, command.command_id][-RECENT_COMMANDS:]
        try:
            changed = _apply(command, alarm, now, settings)
        except AlarmCommandError as exc:
            log.warning("Refused an alarm command", reason=str(exc))
            # Recorded with the unchanged state, so that every command is on the topic.
            unchanged = alarm.model_copy(update={"recent_commands": remembered})
            await self._write(
                unchanged, partition, command.model_copy(update={"refused": str(exc)})
            )
            return unchanged
        update: dict[str, object] = {"recent_commands": remembered}
        if command.comment and changed.comment != command.comment:
            update |= {"comment": command.comment, "updated": now}
        changed = changed.model_copy(update=update)
        # Every command is recorded, even one that changed nothing.
        await self._write(changed, partition, command)
        log.info("Applied an alarm command", comment=command.comment)
        return changed

    def _covering(self, alarm: Alarm, now: datetime) -> Silence | None:
        if self._silences is None:
            return None
        active = [
            s
            for s in self._silences.values.values()
            if s.state(now) == SilenceState.active and s.matches(alarm)
        ]
        return min(active, key=lambda s: (s.created_at, s.id)) if active else None

    def _with_silences(self, alarm: Alarm, now: datetime) -> Alarm:
        """Mute the alarm while an active silence covers it; an operator's mute wins."""
        covering = self._covering(alarm, now)
        if covering is not None:
            if alarm.muted and not alarm.silence_id:
                return alarm
            end = min(covering.ends_at, covering.expired_at or covering.ends_at)
            by = f"silence by {covering.created_by}"
            return machine.silence(alarm, covering.id, end, by, now)
        if alarm.silence_id:
            return machine.unmute(alarm, now, self.settings(alarm.rule_id, alarm.name))
        return alarm

    async def _apply_silences(self, owns: OwnsPartition, now: datetime) -> int:
        """After the silences changed, or one started: re-check this worker's alarms."""
        if self._silences is None:
            return 0
        starting = self._silences_due is not None and self._silences_due <= now
        if self._silences.version == self._silences_seen and not starting:
            return 0
        self._silences_seen = self._silences.version
        starts = [
            s.starts_at
            for s in self._silences.values.values()
            if s.state(now) == SilenceState.pending
        ]
        self._silences_due = min(starts) if starts else None
        changed = 0
        for name, raw in self._table.items():
            partition = int(raw.get("partition", 0))
            if not owns(partition):
                continue
            alarm = Alarm.model_validate(raw)
            updated = self._with_silences(alarm, now)
            if updated is not alarm:
                logger.info("A silence changed an alarm", alarm=name, silence=updated.silence_id)
                await self._write(updated, partition)
                changed += 1
        return changed

    async def ensure_nominal(self, owns: OwnsPartition, now: datetime) -> int:
        """Create, nominal, the alarm of every rule that has one series and no alarm yet.

        A rule whose condition groups by nothing has one alarm, named after the rule: it
        exists from start-up, so that an operator can mute it before it ever fires (the
        alarms of a rule with series are known only once each series is seen; a silence
        covers them in advance). Each is created by the owner of its series' partition.
        """
        created = 0
        for rule in self._rules.rules.values():
            if rule.condition is None or rule.condition.source.group_by or not rule.alarm.enabled:
                continue
            if not self.enabled(rule.id):
                continue
            if self._table.get(rule.id) is not None:
                continue
            partition = series_partition(series_id(rule.id, {}), self._partitions)
            if not owns(partition):
                continue
            alarm = Alarm(name=alarm_name(rule.id, {}), rule_id=rule.id, updated=now)
            settings = self.settings(rule.id, alarm.name)
            alarm = alarm.model_copy(update={"escalate_to": machine.responder(settings)})
            await self._write(self._with_silences(alarm, now), partition)
            created += 1
        return created

    async def scan(self, owns: OwnsPartition) -> int:
        """Fire the timers that are due on this worker's partitions, page and resolve.

        Returns how many alarms changed or called out. Ownership is checked right before
        every call to the escalation service.
        """
        now = self._clock()
        done = await self.ensure_nominal(owns, now)
        done += await self._apply_silences(owns, now)
        while self._due and self._due[0][0] <= now:
            _, name = heapq.heappop(self._due)
            raw = self._table.get(name)
            if raw is None or not owns(int(raw.get("partition", 0))):
                continue
            partition = int(raw.get("partition", 0))
            alarm = Alarm.model_validate(raw)
            settings = self.settings(alarm.rule_id, alarm.name)
            changed = machine.fire_timers(alarm, now, settings)
            if changed is not alarm:  # a silence may cover it still after its mute ended
                changed = self._with_silences(changed, now)
            if changed is not alarm:
                await self._write(changed, partition)
                done += 1
            event_id = machine.escalation_due(changed, now)
            if event_id is not None:
                await self._escalate(changed, partition, event_id, owns)
                done += 1
            elif changed is alarm and (due := alarm.next_due()) is not None and due > now:
                self._index(name, alarm)  # an entry older than the alarm's current timers
        for name in [n for n, (at, _) in self._resolving.items() if at <= now]:
            done += await self._resolve(name, now, owns)
        return done

    async def _escalate(
        self, alarm: Alarm, partition: int, event_id: str, owns: OwnsPartition
    ) -> None:
        log = logger.bind(alarm=alarm.name, event_id=event_id, responder=alarm.escalate_to)
        if not owns(partition):  # fenced: the new owner pages
            return
        now = self._clock()
        if self._escalator is None:
            log.error("Cannot escalate: CATCHER_ESCALATION_URL is not set")
            failed = machine.escalation_failed(
                alarm, "CATCHER_ESCALATION_URL is not set.", now, None
            )
            await self._write(failed, partition)
            return
        try:
            await self._escalator.trigger(alarm, event_id, alarm.escalate_to)
        except ActionError as exc:
            attempts = alarm.escalation_attempts + 1
            again = exc.retryable and attempts < self._policy.attempts
            retry_in = timedelta(seconds=self._policy.backoff(attempts)) if again else None
            log.warning("Escalation failed", error=str(exc), retry_in=retry_in)
            await self._write(machine.escalation_failed(alarm, str(exc), now, retry_in), partition)
            return
        log.warning("Escalated an unacknowledged CRITICAL alarm")
        await self._write(machine.escalation_sent(alarm, event_id, now), partition)

    async def _resolve(self, name: str, now: datetime, owns: OwnsPartition) -> int:
        raw = self._table.get(name)
        alarm = None if raw is None else Alarm.model_validate(raw)
        if alarm is None or not alarm.resolve_id:
            self._resolving.pop(name, None)
            return 0
        partition = int(raw.get("partition", 0)) if raw else 0
        if not owns(partition) or self._escalator is None:
            self._resolving.pop(name, None)
            return 0
        try:
            await self._escalator.resolve(alarm.resolve_id)
        except ActionError as exc:
            failures = self._resolving[name][1] + 1
            delay = timedelta(seconds=self._policy.backoff(failures))
            self._resolving[name] = (now + delay, failures)
            logger.warning(
                "Resolving an incident failed; will try again",
                alarm=name,
                event_id=alarm.resolve_id,
                error=str(exc),
            )
            return 0
        logger.info("Resolved an incident", alarm=name, event_id=alarm.resolve_id)
        self._resolving.pop(name, None)
        await self._write(machine.resolved(alarm, self._clock()), partition)
        return 1

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
            raise AlarmCommandError(f"{alarm.name}: a mute needs a duration.")
        return machine.mute(
            alarm, command.duration, command.severity or Severity.CRITICAL, command.user, now
        )
    return machine.unmute(alarm, now, settings)
