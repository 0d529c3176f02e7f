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
import re
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
from .panes import add_sample, evaluate_panes, pane_width, prune, uses_panes

__all__ = [
    "EVENT_TIME",
    "MARK_INTERVAL",
    "StreamOwner",
    "TelemetryReader",
    "field_problems",
    "field_value",
]

logger = structlog.get_logger("catcher")

EVENT_TIME = "private_efdStamp"
MARK_INTERVAL = 1.0
"""Seconds between two marks of a telemetry reader."""
_MARK_STALE = 5 * MARK_INTERVAL
"""A reader not heard from for this long may be behind: its owners' clocks wait."""
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

Emit = Callable[[Trigger], Awaitable[None]]
Decode = Callable[[bytes], Awaitable[dict[str, Any]]]


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


_FLATTENED = re.compile(r"(?P<name>.*?)(?P<index>\d+)")


def field_value(record: dict[str, Any], field: str) -> Any:
    """A record's field.

    ``name[i]``, or the EFD's flattened ``name{i}``, is element ``i`` of the SAL array
    ``name``.
    """
    if field.endswith("]") and "[" in field:
        name, _, index = field[:-1].partition("[")
    elif field in record:
        return record[field]
    elif found := _FLATTENED.fullmatch(field):
        name, index = found["name"], found["index"]
    else:
        return None
    array = record.get(name)
    if isinstance(array, list) and index.isdigit() and int(index) < len(array):
        return array[int(index)]
    return None


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
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self._decode = decode
        self._guard = guard
        self._send = send
        self._samples_topic = samples_topic
        self._partitions = partitions
        self._clock = clock
        self._by_topic: dict[str, list[Rule]] = {}
        for rule in rules:
            assert rule.condition is not None  # only rules with a condition are given
            self._by_topic.setdefault(rule.condition.source.measurement, []).append(rule)
        self._target: dict[tuple[str, int], int] = {}
        """Offset each assigned partition must be read up to before it is caught up."""
        self._caught_up: dict[tuple[str, int], bool] = {}

    @property
    def topics(self) -> list[str]:
        """The telemetry topics the stream rules read."""
        return sorted(self._by_topic)

    def rules_of(self, topic: str) -> list[Rule]:
        """The stream rules reading a topic."""
        return list(self._by_topic.get(topic, []))

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
        self._target = {}
        self._caught_up = {}
        for tp, end in ends.items():
            start = committed.get(tp) or 0
            key = (tp.topic, tp.partition)
            self._caught_up[key] = start >= end
            self._target[key] = int(end)
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

    def handled(self, topic: str, partition: int, offset: int) -> None:
        """A record of a partition is handled (or dead-lettered)."""
        tp = (topic, partition)
        if not self._caught_up.get(tp, True) and offset + 1 >= self._target.get(tp, 0):
            self._caught_up[tp] = True
            logger.info("Read the telemetry backlog", topic=topic, partition=partition)

    async def read(self, messages: list[Any]) -> None:
        """Take a batch's samples, then send each series' to its owner, in one record.

        All are acknowledged before this returns, so before the batch's offsets may be
        committed.
        """
        gathered: dict[str, SampleBatch] = {}
        for message in messages:

            async def take(message: Any = message) -> None:
                try:
                    if not isinstance(message.value, bytes):
                        raise RecordError("A telemetry record has no value.")
                    record = await self._decode(message.value)
                    self.collect(message.topic, message.partition, record, gathered)
                finally:
                    self.handled(message.topic, message.partition, message.offset)

            await self._guard.run(message, DeadLetterStage.decode, take)
        if messages:
            METRICS.consumed.labels(messages[0].topic).inc(len(messages))
        if gathered:
            await keep_trying("Sending telemetry samples", lambda: self._flush(gathered))

    async def _flush(self, batch: dict[str, SampleBatch]) -> None:
        await asyncio.gather(
            *(
                self._send(self._samples_topic, key.encode(), _dumps(b.to_json()), None)
                for key, b in batch.items()
            )
        )

    async def send_marks(self) -> None:
        """Tell every owner how far this worker has read its telemetry partitions."""
        for mark in self.marks():
            key = f"{mark.topic}|{mark.partition}".encode()
            value = _dumps(mark.to_json())
            for partition in range(self._partitions):
                await self._send(self._samples_topic, key, value, partition)

    def marks(self) -> list[TelemetryMark]:
        """How far this worker has read each telemetry partition it reads."""
        now = self._clock().timestamp()
        return [
            TelemetryMark(topic=topic, partition=partition, caught_up=caught_up, sent=now)
            for (topic, partition), caught_up in sorted(self._caught_up.items())
        ]


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
        self._readers: dict[tuple[str, int], TelemetryMark] = {}
        self._started = clock().timestamp()
        """Marks sent before this owner started are an earlier run's: not believed."""
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
        """A reader says how far it has read a telemetry partition."""
        self._readers[(mark.topic, mark.partition)] = mark

    def _clock_may_close(self, topic: str, partition: int) -> bool:
        """Whether the reader of the partition has read its backlog, as heard lately."""
        mark = self._readers.get((topic, partition))
        if mark is None or not mark.caught_up or mark.sent < self._started:
            return False
        return self._clock().timestamp() - mark.sent <= _MARK_STALE

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
        last, emitted = state["last"], 0
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
            await self._emit(
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
            emitted += 1
            previous = severity
        state.update(last=last, severity=int(previous), evaluated_until=last or 0.0)
        await self._table.put(int(state["partition"]), key, state)
        return emitted

    async def tick(self, owns: OwnsTopicPartition, samples_topic: str) -> int:
        """Close the windows the owner's clock has passed (and run the deadmen)."""
        emitted = 0
        marker = self._clock() - self._grace
        for key, state in self._table.items():
            rule = self._rules.get(state["rule_id"])
            if rule is None or not owns(samples_topic, int(state["partition"])):
                continue
            if rule.condition is not None and rule.condition.per_sample:
                continue  # no windows to close
            if not self._clock_may_close(state["topic"], int(state["source_partition"])):
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
        emitted = 0
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
            await self._emit(trigger)
            emitted += 1
            previous = found.severity
        keep = condition.samples_span()
        oldest = times[-1] + rule.schedule.every - keep  # the next window's start
        kept = [s for s in state["samples"] if s[0] >= oldest.timestamp()]
        if condition.deadman is not None and state["samples"]:
            kept = kept or [state["samples"][-1]]  # the deadman needs the last sample
        if panes is not None:
            state["panes"] = prune(panes, oldest)
        state.update(samples=kept, evaluated_until=times[-1].timestamp(), severity=int(previous))
        await self._table.put(int(state["partition"]), key, state)
        return emitted


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


_NUMBERS = {"int", "long", "float", "double"}


def _numeric(avro_type: Any) -> bool:
    if isinstance(avro_type, list):  # a union, e.g. ["null", "double"]
        return any(_numeric(t) for t in avro_type if t != "null")
    if isinstance(avro_type, dict):
        return avro_type.get("type") in _NUMBERS
    return avro_type in _NUMBERS


def _array_of_numbers(avro_type: Any) -> bool:
    if isinstance(avro_type, list):
        return any(_array_of_numbers(t) for t in avro_type if t != "null")
    return (
        isinstance(avro_type, dict)
        and avro_type.get("type") == "array"
        and _numeric(avro_type.get("items"))
    )


def field_problems(
    rules: Iterable[Rule], schemas: Mapping[str, dict[str, Any] | None]
) -> list[str]:
    """What the telemetry topics' registered schemas say against the stream rules' fields.

    A topic without a registered schema (``None``) cannot be checked and is not a problem.
    """
    problems = []
    for rule in rules:
        assert rule.condition is not None
        source = rule.condition.source
        schema = schemas.get(source.measurement)
        if schema is None:
            continue
        fields = {f["name"]: f["type"] for f in schema.get("fields", []) if "name" in f}
        element = source.element
        if element is None and source.field in fields and _numeric(fields[source.field]):
            continue
        flattened = _FLATTENED.fullmatch(source.field)
        array = element[0] if element else flattened["name"] if flattened else None
        if array is not None and array in fields and _array_of_numbers(fields[array]):
            continue
        known = ", ".join(
            sorted(n for n, t in fields.items() if _numeric(t) or _array_of_numbers(t))
        )
        problems.append(
            f"rule {rule.id!r}: {source.measurement} has no number field {source.field!r}"
            f" (its schema's numbers and arrays of numbers: {known or 'none'})"
        )
    return problems
