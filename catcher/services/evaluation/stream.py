"""The stream engine: rules with ``engine: stream`` evaluated on the telemetry topics.

Sasquatch feeds the EFD from Avro topics named after the measurement (``lsst.sal.<CSC>.
<topic>``), each with one partition and the key ``""``; tags such as ``salIndex`` are
fields of each record, and its event time is ``private_efdStamp`` (UTC seconds). The
engine has two halves, so that any partition count works and the work spreads:

- :class:`TelemetryReader`, on the worker that reads a telemetry partition, decodes each
  batch of records, takes each stream rule's samples from them, and sends each series'
  new samples in one record, keyed by the series id, to Catcher's own partitioned samples
  topic (``<prefix>.internal.samples``). Once a second it tells every owner how far it has
  read (:class:`~catcher.models.telemetry.TelemetryMark`): whether it has read what the
  partition held when it was assigned it.
- :class:`StreamOwner`, on the worker that owns a series' samples partition, keeps for
  each rule and series, in a changelog-backed table, the samples still needed, the time
  of the last sample and the end of the last evaluated window, written once per record:

  - a sample not newer than the last of its series is dropped (as SAL readers drop it;
    an equal time is not newer);
  - the window ``[T - window, T)`` ending at a scheduled time ``T`` (multiples of
    ``every``) is closed once the series' event time passes ``T`` plus the grace
    (``CATCHER_STREAM_GRACE``) plus ``schedule.offset``, or the owner's clock does while the
    series' reader is caught up, and evaluated with :mod:`catcher.semantics`, exactly as
    the rule's Flux task would. A worker that restarts closes nothing by its clock until
    the reader has read the backlog, so no window is lost or evaluated on partial data;
  - deadman rules are evaluated on the owner's clock at every scheduled time (again only
    while the reader is caught up);
  - each evaluation is a trigger (``source: stream``, the deterministic id of its rule,
    series and time) sent to the triggers topic, so planning, alarms and actions follow as
    for any trigger. The end of the last evaluated window is written after its triggers
    are sent: a restart never evaluates a window again, and a crash in between sends the
    same trigger ids again, which planning absorbs.
"""

from __future__ import annotations

import asyncio
import json
import math
import weakref
from collections.abc import Awaitable, Callable, Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog

from ...exceptions import RecordError
from ...metrics import METRICS
from ...models.enums import DeadLetterStage, Severity, TriggerSource
from ...models.messages import parse_internal
from ...models.records import Trigger, series_id, utcnow
from ...models.rules import Rule
from ...models.telemetry import SampleBatch, TelemetryMark
from ...semantics import evaluate_condition, level_of
from ...storage.tables import DurableTable
from ...types import OwnsTopicPartition, SendToPartition
from ..guard import Guard, keep_trying
from .fields import field_value
from .panes import add_sample, evaluate_panes, pane_width, prune, uses_panes

__all__ = [
    "EVENT_TIME",
    "MARK_INTERVAL",
    "StreamOwner",
    "TelemetryReader",
]

logger = structlog.get_logger("catcher")

EVENT_TIME = "private_efdStamp"
MARK_INTERVAL = 1.0
"""Seconds between two marks of a telemetry reader."""
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

Emit = Callable[[list[Trigger]], Awaitable[None]]
"""Send triggers in their order; all are acknowledged when it returns."""
Decode = Callable[[bytes], Awaitable[dict[str, Any]]]
OffsetsAt = Callable[
    [Mapping[tuple[str, int], int]], Awaitable[Mapping[tuple[str, int], int | None]]
]
"""The first offset at or after a time (ms) of each (topic, partition); None: none."""


def _boundaries(after: datetime, until: datetime, rule: Rule) -> list[datetime]:
    """Scheduled times T (multiples of ``every``) whose window closes in ``(after, until]``.

    ``schedule.offset`` delays the evaluation of the window ending at T to T + offset, as
    it delays a Flux task's run (whose ``now()`` stays T).
    """
    step = rule.schedule.every.total_seconds()
    until = until - rule.schedule.offset
    n = int((after - _EPOCH).total_seconds() // step) + 1
    times = []
    while (at := _EPOCH + timedelta(seconds=n * step)) <= until:
        times.append(at)
        n += 1
    return times


def _dumps(value: dict[str, Any]) -> bytes:
    return json.dumps(value).encode()


class TelemetryReader:
    """Takes the stream rules' samples from telemetry records and sends them to the owners.

    ``decode`` reads a record's Avro value; ``guard`` runs each record's handling (a record
    that cannot be read is dead-lettered); ``partitions`` is the samples topic's count.
    """

    def __init__(
        self,
        rules: Iterable[Rule],
        *,
        decode: Decode,
        guard: Guard,
        send: SendToPartition,
        samples_topic: str,
        partitions: int,
        grace: timedelta,
        offsets_at: OffsetsAt,
        topic_prefix: str = "",
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self._grace = grace
        self._offsets_at = offsets_at
        self._decode = decode
        self._guard = guard
        self._send = send
        self._samples_topic = samples_topic
        self._partitions = partitions
        self._clock = clock
        self._by_topic: dict[str, list[Rule]] = {}
        for rule in rules:
            assert rule.condition is not None  # only rules with a condition are given
            topic = f"{topic_prefix}{rule.condition.source.measurement}"
            self._by_topic.setdefault(topic, []).append(rule)
        self._target: dict[tuple[str, int], int] = {}
        """Where each assigned partition ended when this worker was assigned it."""
        self._position: dict[tuple[str, int], int] = {}
        """The next offset of each partition whose samples are not sent yet."""
        self._read_until: dict[tuple[str, int], float | None] = {}
        """When each partition was last seen read to its end (None: not since assigned)."""
        self._tps: dict[tuple[str, int], Any] = {}

    @property
    def topics(self) -> list[str]:
        """The telemetry topics the stream rules read."""
        return sorted(self._by_topic)

    def rules_of(self, topic: str) -> list[Rule]:
        """The stream rules reading a topic."""
        return list(self._by_topic.get(topic, []))

    def first_read(self, topic: str) -> timedelta:
        """How far before now a partition of ``topic`` never read by the group is read from.

        Enough for each rule's open window (its samples' span, one schedule step, its offset
        and the grace; a deadman's timeout): the present is evaluated, not the topic's
        history, which would raise the past's alarms and actions.
        """
        spans = []
        for rule in self._by_topic.get(topic, []):
            condition = rule.condition
            assert condition is not None
            span = condition.deadman.timeout if condition.deadman else condition.samples_span()
            spans.append(span + rule.schedule.every + rule.schedule.offset + self._grace)
        return max(spans, default=self._grace)

    async def first_offsets(
        self, fresh: Iterable[Any], highwaters: Callable[..., Awaitable[Mapping[Any, int]]]
    ) -> dict[Any, int]:
        """Where each telemetry partition the group has never read starts (see ``first_read``).

        At the first record of the recent past, or at the end when there is none.
        """
        fresh = list(fresh)
        if not fresh:
            return {}
        now = self._clock()
        times = {
            (tp.topic, tp.partition): int((now - self.first_read(tp.topic)).timestamp() * 1000)
            for tp in fresh
        }
        found = await self._offsets_at(times)
        ends = await highwaters(*fresh)
        starts = {}
        for tp in fresh:
            start = found.get((tp.topic, tp.partition))
            starts[tp] = int(ends[tp]) if start is None else start
            logger.info(
                "Reading a telemetry partition the group has never read from the recent past",
                topic=tp.topic,
                partition=tp.partition,
                seconds=self.first_read(tp.topic).total_seconds(),
                offset=starts[tp],
            )
        return starts

    async def assigned(
        self,
        committed: Mapping[Any, int | None],
        highwaters: Callable[..., Awaitable[Mapping[Any, int]]],
    ) -> None:
        """Note where each telemetry partition this worker now reads starts and ends.

        ``committed`` holds the offsets of every assigned partition; ``highwaters`` finds
        where partitions end. Until a partition's backlog is read, its owners' clocks wait.
        """
        tps = [tp for tp in committed if tp.topic in self._by_topic]
        ends = await highwaters(*tps) if tps else {}
        now = self._clock().timestamp()
        self._target, self._position, self._read_until, self._tps = {}, {}, {}, {}
        for tp, end in ends.items():
            start = committed.get(tp) or 0
            key = (tp.topic, tp.partition)
            self._tps[key] = tp
            self._position[key] = start
            self._target[key] = int(end)
            self._read_until[key] = now if start >= end else None
            if start < end:
                logger.info(
                    "Reading the telemetry backlog before closing windows by the clock",
                    topic=tp.topic,
                    partition=tp.partition,
                    records=end - start,
                )

    def collect(
        self, topic: str, partition: int, record: dict[str, Any], into: dict[str, SampleBatch]
    ) -> None:
        """Add one decoded record's samples to the batch being gathered (by series id)."""
        for rule in self._by_topic.get(topic, []):
            sample = _sample(rule, record)
            if sample is None:
                continue
            tags, stamp, value = sample
            key = series_id(rule.id, tags)
            found = into.get(key)
            if found is None:
                into[key] = SampleBatch(
                    rule_id=rule.id,
                    tags=tags,
                    topic=topic,
                    partition=partition,
                    samples=[(stamp, value)],
                )
            else:
                found.samples.append((stamp, value))

    def _sent_on(self, messages: list[Any]) -> None:
        """The samples of these records are on the samples topic: the reader is past them."""
        for message in messages:
            key = (message.topic, message.partition)
            before = self._position.get(key, 0)
            self._position[key] = max(before, message.offset + 1)
            target = self._target.get(key, 0)
            if before < target <= self._position[key]:
                logger.info(
                    "Read the telemetry backlog", topic=message.topic, partition=message.partition
                )

    async def read(self, messages: list[Any]) -> None:
        """Take a batch's samples, then send each series' to its owner, in one record.

        All are acknowledged before this returns, so before the batch's offsets may be
        committed, and before a mark may say the reader is past them.
        """
        gathered: dict[str, SampleBatch] = {}
        for message in messages:

            async def take(message: Any = message) -> None:
                if not isinstance(message.value, bytes):
                    raise RecordError("A telemetry record has no value.")
                record = await self._decode(message.value)
                self.collect(message.topic, message.partition, record, gathered)

            await self._guard.run(message, DeadLetterStage.decode, take)
        if messages:
            METRICS.consumed.labels(messages[0].topic).inc(len(messages))
        if gathered:
            await keep_trying("Sending telemetry samples", lambda: self._flush(gathered))
        self._sent_on(messages)

    async def _flush(self, batch: dict[str, SampleBatch]) -> None:
        await asyncio.gather(
            *(
                self._send(self._samples_topic, key.encode(), _dumps(b.to_json()), None)
                for key, b in batch.items()
            )
        )

    async def send_marks(self, highwater: Callable[[Any], int | None]) -> None:
        """Tell every owner how far this worker has read its telemetry partitions.

        ``highwater`` is where a partition ends as the consumer last saw it (None: unknown).
        A mark follows, on each samples partition, the samples sent before it.
        """
        for mark in self.marks(highwater):
            key = f"{mark.topic}|{mark.partition}".encode()
            value = _dumps(mark.to_json())
            for partition in range(self._partitions):
                await self._send(self._samples_topic, key, value, partition)

    def marks(self, highwater: Callable[[Any], int | None]) -> list[TelemetryMark]:
        """How far this worker has read each telemetry partition it reads."""
        now = self._clock().timestamp()
        marks = []
        for key, position in sorted(self._position.items()):
            end = highwater(self._tps[key])
            if end is not None and position >= end:
                self._read_until[key] = now
            topic, partition = key
            marks.append(
                TelemetryMark(
                    topic=topic,
                    partition=partition,
                    caught_up=position >= self._target.get(key, 0),
                    sent=now,
                    read_until=self._read_until.get(key),
                )
            )
        return marks


class StreamOwner:
    """Evaluates the windows of the series whose samples partitions this worker owns."""

    def __init__(
        self,
        rules: Iterable[Rule],
        table: DurableTable,
        emit: Emit,
        grace: timedelta,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self._rules = {rule.id: rule for rule in rules}
        self._table = table
        self._emit = emit
        self._grace = grace
        self._clock = clock
        self._read_until: dict[tuple[str, int], float] = {}
        """By telemetry partition: every sample read before this time has been handled."""
        self._locks: weakref.WeakValueDictionary[str, asyncio.Lock] = weakref.WeakValueDictionary()

    def _lock(self, key: str) -> asyncio.Lock:
        return self._locks.setdefault(key, asyncio.Lock())

    async def handle(self, data: Any, partition: int) -> None:
        """One record of the samples topic: a series' samples, or a reader's mark."""
        message = parse_internal(data)
        if isinstance(message, SampleBatch):
            await self.on_samples(message, partition)
        elif isinstance(message, TelemetryMark):
            self.on_mark(message)
        else:
            raise RecordError(f"A {message.kind} message does not belong on the samples topic.")

    def on_mark(self, mark: TelemetryMark) -> None:
        """A reader says how far it has read a telemetry partition.

        Marks come on the samples partition after the samples sent before them, so by the
        time this owner handles one, it has handled every sample the reader had read by
        ``read_until``. That time never goes back (a new reader behind says None).
        """
        if mark.read_until is not None:
            key = (mark.topic, mark.partition)
            self._read_until[key] = max(self._read_until.get(key, 0.0), mark.read_until)

    def _clock_marker(self, topic: str, partition: int) -> datetime | None:
        """How far the clock may close windows of a partition's series (None: not at all).

        Up to the grace before the time as of which every sample read is handled: the
        owner's lag and the reader's both hold windows open.
        """
        until = self._read_until.get((topic, partition))
        if until is None:
            return None
        return min(self._clock(), datetime.fromtimestamp(until, UTC)) - self._grace

    async def on_samples(self, batch: SampleBatch, partition: int) -> int:
        """Take a series' new samples; returns how many triggers they let out."""
        rule = self._rules.get(batch.rule_id)
        if rule is None:
            return 0  # a rule no longer loaded
        key = series_id(rule.id, batch.tags)
        async with self._lock(key):  # records of one series may come in one batch
            stored = self._table.get(key)
            first = datetime.fromtimestamp(batch.samples[0][0], UTC)
            state = _copy(stored) if stored else _new_state(rule, batch, partition, first)
            state["partition"] = partition
            if rule.condition is not None and rule.condition.per_sample:
                return await self._each_sample(rule, key, state, batch.samples)
            last = state["last"]
            panes = _panes_of(rule, state)
            width = pane_width(rule)
            for stamp, value in batch.samples:
                if last is not None and stamp <= last:
                    continue  # not newer than the last sample of its series: dropped
                if panes is None:
                    state["samples"].append([stamp, value])
                else:
                    add_sample(panes, width, stamp, value)
                last = stamp
            state["last"] = last
            marker = datetime.fromtimestamp(last, UTC) - self._grace
            return await self._close(rule, key, state, marker, changed=True)

    async def _each_sample(
        self, rule: Rule, key: str, state: dict[str, Any], samples: list[tuple[float, float]]
    ) -> int:
        """Evaluate each new sample as it arrives; a change of severity is a trigger.

        As the Watcher's rules: no window and no schedule. The first sample of a series,
        and every sample whose level differs from the one before, is sent as a trigger at
        its own time; the others change nothing.
        """
        condition = rule.condition
        assert condition is not None
        assert condition.thresholds is not None
        last, triggers = state["last"], []
        previous = Severity(state["severity"])
        for stamp, value in samples:
            if (last is not None and stamp <= last) or math.isnan(value):
                continue
            first = last is None
            last = stamp
            severity = level_of(value, condition.thresholds, previous)
            if severity == previous and not first:
                continue
            at = datetime.fromtimestamp(stamp, UTC)
            triggers.append(
                Trigger.create(
                    rule.id,
                    severity,
                    reason=f"{condition.source.measurement}.{condition.source.field} is"
                    f" {value:g}: {severity.name}",
                    source=TriggerSource.stream,
                    time=at,
                    tags=state["tags"],
                    value=value,
                    window_start=at,
                    window_stop=at,
                )
            )
            previous = severity
        if triggers:
            await self._emit(triggers)  # sent before the state that says they were
        state.update(last=last, severity=int(previous), evaluated_until=last or 0.0)
        await self._table.put(int(state["partition"]), key, state)
        return len(triggers)

    async def tick(self, owns: OwnsTopicPartition, samples_topic: str) -> int:
        """Close the windows the owner's clock has passed (and run the deadmen)."""
        emitted = 0
        for key, state in self._table.items():
            rule = self._rules.get(state["rule_id"])
            if rule is None or not owns(samples_topic, int(state["partition"])):
                continue
            if rule.condition is not None and rule.condition.per_sample:
                continue  # no windows to close
            marker = self._clock_marker(state["topic"], int(state["source_partition"]))
            if marker is None:
                continue
            async with self._lock(key):
                current = self._table.get(key)
                if current is not None:
                    emitted += await self._close(rule, key, _copy(current), marker, changed=False)
        return emitted

    async def _close(
        self, rule: Rule, key: str, state: dict[str, Any], marker: datetime, *, changed: bool
    ) -> int:
        """Evaluate the windows ``marker`` has closed; write the state (durable first)."""
        condition = rule.condition
        assert condition is not None
        done = datetime.fromtimestamp(state["evaluated_until"], UTC)
        times = _boundaries(done, marker, rule)
        if not times:
            if changed:  # new samples: written before their offset may be committed
                await self._table.put(int(state["partition"]), key, state)
            return 0
        panes = _panes_of(rule, state)
        samples = [(datetime.fromtimestamp(t, UTC), v) for t, v in state["samples"]]
        previous = Severity(state["severity"])
        triggers = []
        for at in times:
            if panes is not None:
                found = evaluate_panes(condition, panes, at, previous)
            else:
                found = evaluate_condition(condition, samples, at, previous)
            if found is None:
                continue
            trigger = Trigger.create(
                rule.id,
                found.severity,
                reason=_reason(rule, found.value, found.severity),
                source=TriggerSource.stream,
                time=at,
                tags=state["tags"],
                value=found.value,
                window_start=at - condition.window,
                window_stop=at,
            )
            triggers.append(trigger)
            previous = found.severity
        if triggers:
            await self._emit(triggers)  # sent before the state that says they were
        keep = condition.samples_span()
        oldest = times[-1] + rule.schedule.every - keep  # the next window's start
        kept = [s for s in state["samples"] if s[0] >= oldest.timestamp()]
        if condition.deadman is not None and state["samples"]:
            kept = kept or [state["samples"][-1]]  # the deadman needs the last sample
        if panes is not None:
            state["panes"] = prune(panes, oldest)
        state.update(samples=kept, evaluated_until=times[-1].timestamp(), severity=int(previous))
        await self._table.put(int(state["partition"]), key, state)
        return len(triggers)


def _sample(rule: Rule, record: dict[str, Any]) -> tuple[dict[str, str], float, float] | None:
    condition = rule.condition
    assert condition is not None
    source = condition.source
    value = field_value(record, source.field)
    stamp = record.get(EVENT_TIME)
    if not isinstance(value, int | float) or isinstance(value, bool):
        return None
    if not isinstance(stamp, int | float) or isinstance(stamp, bool):
        return None
    for tag, wanted in source.tags.items():
        if str(record.get(tag)) != wanted:
            return None
    tags = {tag: str(record.get(tag)) for tag in source.group_by if tag in record}
    return tags, float(stamp), float(value)


def _new_state(rule: Rule, batch: SampleBatch, partition: int, first: datetime) -> dict[str, Any]:
    step = rule.schedule.every.total_seconds()
    start = (first.timestamp() // step) * step
    return {
        "rule_id": rule.id,
        "tags": dict(batch.tags),
        "topic": batch.topic,
        "source_partition": batch.partition,
        "partition": partition,
        "samples": [],
        "last": None,
        "evaluated_until": start,
        "severity": int(Severity.NONE),
    }


def _copy(state: dict[str, Any]) -> dict[str, Any]:
    """A state to change: what the table holds is only replaced, never changed in place."""
    copied = {**state, "samples": [list(s) for s in state["samples"]], "tags": dict(state["tags"])}
    if "panes" in state:
        copied["panes"] = {k: list(v) for k, v in state["panes"].items()}
    return copied


def _panes_of(rule: Rule, state: dict[str, Any]) -> dict[str, list[float]] | None:
    """The state's panes for a rule that keeps panes (made from samples of an older state)."""
    if not uses_panes(rule):
        return None
    if "panes" not in state:
        panes: dict[str, list[float]] = {}
        width = pane_width(rule)
        for stamp, value in state["samples"]:
            add_sample(panes, width, stamp, value)
        state["panes"] = panes
        state["samples"] = []
    panes_found: dict[str, list[float]] = state["panes"]
    return panes_found


def _reason(rule: Rule, value: float, severity: Severity) -> str:
    condition = rule.condition
    assert condition is not None
    source = condition.source
    if condition.deadman is not None:
        return f"last point of {source.measurement}.{source.field} was {value:g} s ago"
    return (
        f"{condition.aggregate} of {source.measurement}.{source.field} over"
        f" {condition.window} is {value:g}: {severity.name}"
    )
