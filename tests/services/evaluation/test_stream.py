"""The stream engine without Faust: telemetry read and re-keyed, windows closed, triggers out."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from catcher.models.enums import Severity, TriggerSource
from catcher.models.records import Trigger, make_trigger_id
from catcher.models.rules import Rule
from catcher.models.telemetry import SampleBatch, TelemetryMark
from catcher.services.evaluation.stream import StreamOwner, TelemetryReader
from catcher.storage.tables import DurableTable
from tests.support.tables import MemoryTable

T0 = datetime(2026, 11, 24, 3, 0, tzinfo=UTC)
TOPIC = "lsst.sal.MTHexapod.electrical"
SAMPLES = "lsst.catcher.internal.samples"


def _rule(**schedule: Any) -> Rule:
    return Rule.model_validate(
        {
            "id": "hexapod",
            "description": "d",
            "condition": {
                "engine": "stream",
                "source": {
                    "measurement": TOPIC,
                    "field": "motorTemperature0",
                    "group_by": ["salIndex"],
                },
                "aggregate": "max",
                "window": "1m",
                "thresholds": {"warning": 60, "critical": 70},
            },
            "schedule": {"every": "1m", **schedule},
        }
    )


RULE = _rule()


class Clock:
    now = T0

    def __call__(self) -> datetime:
        return self.now


def _stamp(seconds: float) -> float:
    return (T0 + timedelta(seconds=seconds)).timestamp()


def _batch(*samples: tuple[float, float], sal_index: int = 1) -> SampleBatch:
    return SampleBatch(
        rule_id="hexapod",
        tags={"salIndex": str(sal_index)},
        topic=TOPIC,
        partition=0,
        samples=[(_stamp(s), v) for s, v in samples],
    )


def _owner(rule: Rule = RULE) -> tuple[StreamOwner, MemoryTable, list[Trigger], Clock]:
    table, sent, clock = MemoryTable(), [], Clock()

    async def emit(triggers: list[Trigger]) -> None:
        sent.extend(triggers)

    owner = StreamOwner([rule], DurableTable(table), emit, timedelta(seconds=5), clock)
    return owner, table, sent, clock


def _mark(clock: Clock, read_until: datetime | None) -> TelemetryMark:
    return TelemetryMark(
        topic=TOPIC,
        partition=0,
        caught_up=read_until is not None,
        sent=clock.now.timestamp(),
        read_until=read_until.timestamp() if read_until else None,
    )


@pytest.mark.asyncio
async def test_windows_close_after_the_grace_and_emit_deterministic_triggers() -> None:
    owner, table, sent, _ = _owner()
    for seconds, value in ((10, 50), (40, 62), (64, 55), (70, 71), (120, 72), (126, 40)):
        await owner.on_samples(_batch((seconds, value)), partition=2)
    # 03:01 closes at the sample of 03:01:05+; 03:02 at 03:02:05+ (the sample at 03:02:06).
    assert [(t.time - T0, t.severity, t.value) for t in sent] == [
        (timedelta(minutes=1), Severity.WARNING, 62.0),
        (timedelta(minutes=2), Severity.CRITICAL, 71.0),
    ]
    first = sent[0]
    assert first.source == TriggerSource.stream and first.tags == {"salIndex": "1"}
    assert first.trigger_id == make_trigger_id("hexapod", T0 + timedelta(minutes=1), first.tags)
    assert first.window_start == T0 and first.window_stop == T0 + timedelta(minutes=1)
    state = table.data["hexapod|salIndex=1"]
    assert state["evaluated_until"] == (T0 + timedelta(minutes=2)).timestamp()
    # Kept as per-pane aggregates: one pane (03:02) of two samples, whatever the rate.
    assert state["samples"] == []
    assert [(p[0], p[4], p[5]) for p in state["panes"].values()] == [(2, 40.0, 72.0)]
    assert {partition for partition, _, _ in table.changelog} == {2}  # the samples partition


@pytest.mark.asyncio
async def test_a_batch_is_one_write_and_older_or_equal_samples_are_dropped() -> None:
    owner, table, sent, _ = _owner()
    await owner.on_samples(_batch((30, 65), (20, 99), (30, 98), (40, 66)), partition=0)
    assert len(table.changelog) == 1  # one write for the batch
    (pane,) = table.data["hexapod|salIndex=1"]["panes"].values()
    assert (pane[0], pane[4], pane[5]) == (2, 65.0, 66.0)  # n, min, max
    await owner.on_samples(_batch((70, 50)), partition=0)
    assert [(t.severity, t.value) for t in sent] == [(Severity.WARNING, 66.0)]


@pytest.mark.asyncio
async def test_the_clock_closes_windows_only_up_to_what_the_reader_has_sent() -> None:
    owner, table, sent, clock = _owner()
    await owner.on_samples(_batch((30, 75)), partition=0)

    def owns(_topic: str, _partition: int) -> bool:
        return True

    clock.now = T0 + timedelta(seconds=66)
    assert await owner.tick(owns, SAMPLES) == 0  # no reader heard from: it may be behind
    owner.on_mark(_mark(clock, None))
    assert await owner.tick(owns, SAMPLES) == 0  # the reader is reading its backlog
    owner.on_mark(_mark(clock, T0 + timedelta(seconds=64)))
    assert await owner.tick(owns, SAMPLES) == 0  # all read up to 03:01:04: 03:01 still open
    owner.on_mark(_mark(clock, None))  # a new reader, behind: what was read stays read
    owner.on_mark(_mark(clock, T0 + timedelta(seconds=66)))
    assert await owner.tick(lambda _t, _p: False, SAMPLES) == 0  # not the owner
    assert await owner.tick(owns, SAMPLES) == 1
    assert sent[0].severity == Severity.CRITICAL
    clock.now = T0 + timedelta(seconds=200)  # the reader has said nothing since 03:01:06
    assert await owner.tick(owns, SAMPLES) == 0
    restarted, _, _, _ = _owner()
    restarted._table = DurableTable(table)  # the recovered table
    restarted._clock = clock
    restarted.on_mark(_mark(clock, clock.now))
    assert await restarted.tick(owns, SAMPLES) == 0  # 03:01 was done; 03:02 has no sample
    assert len(sent) == 1


@pytest.mark.asyncio
async def test_schedule_offset_delays_the_evaluation_not_the_window() -> None:
    owner, _, sent, _ = _owner(_rule(offset="30s"))
    await owner.on_samples(_batch((40, 65)), partition=0)
    await owner.on_samples(_batch((70, 50)), partition=0)  # 03:01:10: not yet (offset 30 s)
    assert sent == []
    await owner.on_samples(_batch((96, 50)), partition=0)  # past 03:01 + 5 s grace + 30 s
    assert [(t.time - T0, t.window_start) for t in sent] == [(timedelta(minutes=1), T0)]


@dataclass
class Message:
    topic: str
    partition: int
    offset: int
    value: bytes | None


class Passing:
    """A guard that runs each handler and swallows what it would dead-letter."""

    def __init__(self) -> None:
        self.rejected: list[int] = []

    async def run(self, message: Any, _stage: Any, handler: Callable[[], Awaitable[None]]) -> None:
        try:
            await handler()
        except Exception:  # noqa: BLE001
            self.rejected.append(message.offset)


@pytest.mark.asyncio
async def test_the_reader_sends_one_record_per_series_and_marks_when_caught_up() -> None:
    sent: list[tuple[str, bytes, bytes, int | None]] = []

    async def send(topic: str, key: bytes, value: bytes, partition: int | None) -> None:
        sent.append((topic, key, value, partition))

    records = {
        0: {"private_efdStamp": _stamp(1), "salIndex": 1, "motorTemperature0": 61.0},
        1: {"private_efdStamp": _stamp(1), "salIndex": 2, "motorTemperature0": 62.0},
        2: {"private_efdStamp": _stamp(2), "salIndex": 1, "motorTemperature0": 63.0},
        4: {"private_efdStamp": _stamp(3), "salIndex": 1, "motorTemperature0": "n/a"},
    }

    async def decode(value: bytes) -> dict[str, Any]:
        return records[int(value)]

    async def offsets_at(_times: Any) -> dict[tuple[str, int], int | None]:
        raise AssertionError("not asked: every partition has a committed offset")

    guard = Passing()
    clock = Clock()
    reader = TelemetryReader(
        [RULE],
        decode=decode,
        guard=guard,  # type: ignore[arg-type]
        send=send,
        samples_topic=SAMPLES,
        partitions=3,
        grace=timedelta(seconds=5),
        offsets_at=offsets_at,
        clock=clock,
    )

    @dataclass(frozen=True)
    class TP:
        topic: str
        partition: int

    async def highwaters(*tps: TP) -> dict[TP, int]:
        return dict.fromkeys(tps, 5)

    ends = {TOPIC: 5}

    def highwater(tp: TP) -> int | None:
        return ends.get(tp.topic)

    def read_until() -> list[float | None]:
        return [m.read_until for m in reader.marks(highwater)]

    await reader.assigned({TP(TOPIC, 0): None, TP("lsst.catcher.triggers", 0): 3}, highwaters)
    assert read_until() == [None]
    await reader.read([Message(TOPIC, 0, n, str(n).encode()) for n in (0, 1, 2)])
    assert read_until() == [None]
    assert sorted((key, SampleBatch.model_validate_json(v).samples) for _, key, v, _ in sent) == [
        (b"hexapod|salIndex=1", [(_stamp(1), 61.0), (_stamp(2), 63.0)]),
        (b"hexapod|salIndex=2", [(_stamp(1), 62.0)]),
    ]
    sent.clear()
    await reader.read([Message(TOPIC, 0, 3, None), Message(TOPIC, 0, 4, b"4")])
    assert guard.rejected == [3]  # no value: dead-lettered; a text value: no sample
    assert sent == []
    assert read_until() == [clock.now.timestamp()]  # offset 4 was the last of 5
    first = clock.now.timestamp()
    clock.now += timedelta(seconds=3)
    ends[TOPIC] = 9  # four records more, not read yet: the reader is behind again
    assert read_until() == [first]
    assert [m.caught_up for m in reader.marks(highwater)] == [True]  # the backlog is read
    await reader.send_marks(highwater)
    assert [(topic, partition) for topic, _, _, partition in sent] == [
        (SAMPLES, p) for p in range(3)
    ]


@pytest.mark.asyncio
async def test_a_50_hz_series_with_a_one_hour_window_keeps_a_small_state() -> None:
    rule = Rule.model_validate(
        {
            **{
                k: v for k, v in RULE.model_dump(mode="json").items() if k in ("id", "description")
            },
            "condition": {
                "engine": "stream",
                "source": {"measurement": TOPIC, "field": "motorTemperature0"},
                "aggregate": "mean",
                "window": "1h",
                "thresholds": {"warning": 60},
            },
            "schedule": {"every": "1m"},
        }
    )
    owner, table, sent, _ = _owner(rule)
    for second in range(0, 7200, 10):  # two hours at 50 Hz, ten seconds a record
        samples = [(second + i / 50, 50.0 + (i % 7)) for i in range(500)]
        await owner.on_samples(
            SampleBatch(
                rule_id="hexapod",
                topic=TOPIC,
                partition=0,
                samples=[(_stamp(t), v) for t, v in samples],
            ),
            partition=0,
        )
    largest = max(len(json.dumps(value)) for _, _, value in table.changelog)
    assert largest < 16_000  # not 180,000 samples (about 5 MB)
    assert len(sent) > 60 and all(t.severity == Severity.NONE for t in sent)


@pytest.mark.asyncio
async def test_window_0_evaluates_every_sample_and_sends_changes() -> None:
    rule = Rule.model_validate(
        {
            "id": "hexapod",
            "description": "d",
            "condition": {
                "engine": "stream",
                "source": {"measurement": TOPIC, "field": "motorTemperature0"},
                "window": 0,
                "thresholds": {"warning": 60, "critical": 70, "hysteresis": 2},
            },
        }
    )
    owner, _, sent, clock = _owner(rule)
    await owner.on_samples(
        SampleBatch(
            rule_id="hexapod",
            topic=TOPIC,
            partition=0,
            samples=[(_stamp(s), v) for s, v in ((0.1, 50), (0.2, 61), (0.3, 62), (0.4, 59))],
        ),
        partition=0,
    )
    await owner.on_samples(
        SampleBatch(rule_id="hexapod", topic=TOPIC, partition=0, samples=[(_stamp(0.5), 57)]),
        partition=0,
    )
    # The first sample, then each change of level (59 is within the 2-degree hysteresis).
    assert [(t.time - T0, t.severity, t.value) for t in sent] == [
        (timedelta(seconds=0.1), Severity.NONE, 50.0),
        (timedelta(seconds=0.2), Severity.WARNING, 61.0),
        (timedelta(seconds=0.5), Severity.NONE, 57.0),
    ]
    clock.now = T0 + timedelta(hours=1)
    owner.on_mark(_mark(clock, clock.now))
    assert await owner.tick(lambda _t, _p: True, SAMPLES) == 0  # no windows to close
    for bad in ({"window": 0}, {"window": 0, "engine": "flux"}):
        with pytest.raises(ValueError, match="window 0"):
            Rule.model_validate(
                {
                    "id": "x",
                    "description": "d",
                    "condition": {
                        "source": {"measurement": TOPIC, "field": "f"},
                        "thresholds": {"warning": 1},
                        **bad,
                    },
                }
            )


@pytest.mark.asyncio
async def test_a_partition_never_read_starts_in_the_recent_past_not_at_its_beginning() -> None:
    asked: list[dict[tuple[str, int], int]] = []

    async def offsets_at(times: dict[tuple[str, int], int]) -> dict[tuple[str, int], int | None]:
        asked.append(dict(times))
        return {(TOPIC, 0): 700, (TOPIC, 1): None}

    async def highwaters(*tps: Any) -> dict[Any, int]:
        return dict.fromkeys(tps, 900)

    async def unused(*_args: Any) -> None:
        raise AssertionError("nothing is sent")

    clock = Clock()
    deadman = Rule.model_validate(
        {
            "id": "quiet",
            "description": "d",
            "condition": {
                "engine": "stream",
                "source": {"measurement": TOPIC, "field": "motorTemperature0"},
                "deadman": {"timeout": "30s"},
            },
            "schedule": {"every": "10s", "offset": "2s"},
        }
    )
    reader = TelemetryReader(
        [RULE, deadman],
        decode=unused,
        guard=Passing(),  # type: ignore[arg-type]
        send=unused,
        samples_topic=SAMPLES,
        partitions=3,
        grace=timedelta(seconds=5),
        offsets_at=offsets_at,
        clock=clock,
    )
    # RULE: a 1 min window every 1 min, so 2 min and the grace; the deadman 30 + 10 + 2 + 5 s.
    assert reader.first_read(TOPIC) == timedelta(minutes=2, seconds=5)
    fresh = [Key(TOPIC, 0), Key(TOPIC, 1)]
    starts = await reader.first_offsets(fresh, highwaters)
    since = int((clock.now - timedelta(minutes=2, seconds=5)).timestamp() * 1000)
    assert asked == [{(TOPIC, 0): since, (TOPIC, 1): since}]
    assert starts == {Key(TOPIC, 0): 700, Key(TOPIC, 1): 900}  # none that recent: the end
    assert await reader.first_offsets([], highwaters) == {}


@dataclass(frozen=True)
class Key:
    topic: str
    partition: int


@pytest.mark.asyncio
async def test_a_prefixed_topic_carries_the_rules_measurement() -> None:
    """usdfprod reads the summit's telemetry as summit.lsst.sal.*: rules name lsst.sal.*."""
    sent: list[bytes] = []

    async def send(_topic: str, key: bytes, _value: bytes, _partition: int | None) -> None:
        sent.append(key)

    async def decode(_value: bytes) -> dict[str, Any]:
        return {"private_efdStamp": _stamp(1), "salIndex": 1, "motorTemperature0": 61.0}

    async def offsets_at(_times: Any) -> dict[tuple[str, int], int | None]:
        raise AssertionError("not asked")

    reader = TelemetryReader(
        [RULE],
        decode=decode,
        guard=Passing(),  # type: ignore[arg-type]
        send=send,
        samples_topic=SAMPLES,
        partitions=3,
        grace=timedelta(seconds=5),
        offsets_at=offsets_at,
        topic_prefix="summit.",
        clock=Clock(),
    )
    assert reader.topics == [f"summit.{TOPIC}"]
    await reader.read([Message(TOPIC, 0, 0, b"0")])  # the unprefixed name is not read
    assert sent == []
    await reader.read([Message(f"summit.{TOPIC}", 0, 0, b"0")])
    assert sent == [b"hexapod|salIndex=1"]
