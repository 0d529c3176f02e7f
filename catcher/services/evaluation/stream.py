"""The stream engine: rules with ``engine: stream`` evaluated on the telemetry topics.

Sasquatch feeds the EFD from Avro topics named after the measurement (``lsst.sal.<CSC>.
<topic>``); tags such as ``salIndex`` are fields of each record, and its event time is
``private_efdStamp`` (UTC seconds). For each rule and series the engine keeps, in a
changelog-backed table, the samples still needed, the time of the last sample and the end
of the last evaluated window:

- a sample not newer than the last of its series is dropped, as SAL readers drop it;
- the window ending at a scheduled time ``T`` (multiples of ``every``) is closed once the
  series' event time, or the owner's clock, passes ``T`` plus the grace
  (``CATCHER_STREAM_GRACE``), and evaluated with :mod:`catcher.semantics`, exactly as the
  rule's Flux task would;
- deadman rules are evaluated on the owner's clock at every scheduled time;
- each evaluation is a trigger (``source: stream``, the deterministic id of its rule,
  series and time) sent to the triggers topic, so planning, alarms and actions follow as for
  any trigger. The end of the last evaluated window is written after its triggers are sent:
  a restart never evaluates a window again, and a crash in between sends the same trigger
  ids again, which planning absorbs.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Awaitable, Callable, Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog

from ...models.enums import Severity, TriggerSource
from ...models.records import Trigger, series_id, utcnow
from ...models.rules import Rule
from ...semantics import evaluate_condition
from ...storage.tables import DurableTable
from ...types import OwnsTopicPartition

__all__ = ["EVENT_TIME", "StreamEngine"]

logger = structlog.get_logger("catcher")

EVENT_TIME = "private_efdStamp"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

Emit = Callable[[Trigger], Awaitable[None]]


def _boundaries(after: datetime, until: datetime, every: timedelta) -> list[datetime]:
    """Scheduled times T with ``after < T <= until``."""
    step = every.total_seconds()
    n = int((after - _EPOCH).total_seconds() // step) + 1
    times = []
    while (at := _EPOCH + timedelta(seconds=n * step)) <= until:
        times.append(at)
        n += 1
    return times


class StreamEngine:
    """Evaluates stream rules on the telemetry this worker owns."""

    def __init__(
        self,
        rules: Iterable[Rule],
        table: DurableTable,
        emit: Emit,
        grace: timedelta,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self._rules = list(rules)
        self._table = table
        self._emit = emit
        self._grace = grace
        self._clock = clock
        self._by_topic: dict[str, list[Rule]] = {}
        self._locks: weakref.WeakValueDictionary[str, asyncio.Lock] = weakref.WeakValueDictionary()
        for rule in self._rules:
            assert rule.condition is not None  # only rules with a condition are given
            self._by_topic.setdefault(rule.condition.source.measurement, []).append(rule)

    def _lock(self, key: str) -> asyncio.Lock:
        return self._locks.setdefault(key, asyncio.Lock())

    @property
    def topics(self) -> list[str]:
        """The telemetry topics the stream rules read."""
        return sorted(self._by_topic)

    async def on_record(self, topic: str, record: dict[str, Any], partition: int) -> int:
        """Take one telemetry record; returns how many triggers it let out."""
        emitted = 0
        for rule in self._by_topic.get(topic, []):
            sample = _sample(rule, record)
            if sample is None:
                continue
            tags, time, value = sample
            key = series_id(rule.id, tags)
            async with self._lock(key):  # records of one series may come in one batch
                stored = self._table.get(key)
                state = _copy(stored) if stored else _new_state(rule, tags, topic, partition, time)
                if state["last"] is not None and time.timestamp() <= state["last"]:
                    continue  # older than the last sample of its series: dropped
                state["samples"].append([time.timestamp(), value])
                state["last"] = time.timestamp()
                emitted += await self._close(rule, key, state, time - self._grace, changed=True)
        return emitted

    async def tick(self, owns: OwnsTopicPartition) -> int:
        """Close the windows the owner's clock has passed (and run the deadmen)."""
        rules = {rule.id: rule for rule in self._rules}
        emitted = 0
        marker = self._clock() - self._grace
        for key, state in self._table.items():
            rule = rules.get(state["rule_id"])
            if rule is None or not owns(state["topic"], int(state["partition"])):
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
        times = _boundaries(done, marker, rule.schedule.every)
        if not times:
            if changed:  # a new sample: written before its offset may be committed
                await self._table.put(int(state["partition"]), key, state)
            return 0
        samples = [(datetime.fromtimestamp(t, UTC), v) for t, v in state["samples"]]
        previous = Severity(state["severity"])
        emitted = 0
        for at in times:
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
        oldest = (times[-1] + rule.schedule.every - keep).timestamp()  # the next window's start
        kept = [s for s in state["samples"] if s[0] >= oldest]
        if condition.deadman is not None and state["samples"]:
            kept = kept or [state["samples"][-1]]  # the deadman needs the last sample
        state.update(samples=kept, evaluated_until=times[-1].timestamp(), severity=int(previous))
        await self._table.put(int(state["partition"]), key, state)
        return emitted


def _sample(rule: Rule, record: dict[str, Any]) -> tuple[dict[str, str], datetime, float] | None:
    condition = rule.condition
    assert condition is not None
    source = condition.source
    value = record.get(source.field)
    stamp = record.get(EVENT_TIME)
    if not isinstance(value, int | float) or isinstance(value, bool):
        return None
    if not isinstance(stamp, int | float):
        return None
    for tag, wanted in source.tags.items():
        if str(record.get(tag)) != wanted:
            return None
    tags = {tag: str(record.get(tag)) for tag in source.group_by if tag in record}
    return tags, datetime.fromtimestamp(float(stamp), UTC), float(value)


def _new_state(
    rule: Rule, tags: dict[str, str], topic: str, partition: int, first: datetime
) -> dict[str, Any]:
    step = rule.schedule.every.total_seconds()
    start = (first.timestamp() // step) * step
    return {
        "rule_id": rule.id,
        "tags": tags,
        "topic": topic,
        "partition": partition,
        "samples": [],
        "last": None,
        "evaluated_until": start,
        "severity": int(Severity.NONE),
    }


def _copy(state: dict[str, Any]) -> dict[str, Any]:
    """A state to change: what the table holds is only replaced, never changed in place."""
    return {**state, "samples": [list(s) for s in state["samples"]], "tags": dict(state["tags"])}


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
