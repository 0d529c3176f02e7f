"""The stream engine without Faust: samples in, windows closed, triggers out, state durable."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from catcher.models.enums import Severity, TriggerSource
from catcher.models.records import Trigger, make_trigger_id
from catcher.models.rules import Rule
from catcher.services.evaluation.stream import StreamEngine
from catcher.storage.tables import DurableTable
from tests.support.tables import MemoryTable

T0 = datetime(2026, 11, 24, 3, 0, tzinfo=UTC)
TOPIC = "lsst.sal.MTHexapod.electrical"
RULE = Rule.model_validate(
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
        "schedule": {"every": "1m"},
    }
)


class Clock:
    now = T0

    def __call__(self) -> datetime:
        return self.now


def _record(seconds: float, value: float, sal_index: int = 1) -> dict[str, object]:
    return {
        "private_efdStamp": (T0 + timedelta(seconds=seconds)).timestamp(),
        "salIndex": sal_index,
        "motorTemperature0": value,
    }


def _engine() -> tuple[StreamEngine, MemoryTable, list[Trigger], Clock]:
    table, sent, clock = MemoryTable(), [], Clock()

    async def emit(trigger: Trigger) -> None:
        sent.append(trigger)

    engine = StreamEngine([RULE], DurableTable(table), emit, timedelta(seconds=5), clock)
    return engine, table, sent, clock


@pytest.mark.asyncio
async def test_windows_close_after_the_grace_and_emit_deterministic_triggers() -> None:
    engine, table, sent, _ = _engine()
    assert engine.topics == [TOPIC]
    for seconds, value in ((10, 50), (40, 62), (64, 55), (70, 71), (120, 72), (126, 40)):
        await engine.on_record(TOPIC, _record(seconds, value), 0)
    # 03:01 closes at the sample of 03:01:05+; 03:02 at 03:02:05+ (the sample at 03:02:06).
    assert [(t.time - T0, t.severity, t.value) for t in sent] == [
        (timedelta(minutes=1), Severity.WARNING, 62.0),
        (timedelta(minutes=2), Severity.CRITICAL, 71.0),
    ]
    first = sent[0]
    assert first.source == TriggerSource.stream and first.tags == {"salIndex": "1"}
    assert first.trigger_id == make_trigger_id("hexapod", T0 + timedelta(minutes=1), first.tags)
    assert first.window_start == T0 and first.window_stop == T0 + timedelta(minutes=1)
    # Every accepted sample was written durably; the state holds only what is still needed.
    state = table.data["hexapod|salIndex=1"]
    assert state["evaluated_until"] == (T0 + timedelta(minutes=2)).timestamp()
    assert [s[1] for s in state["samples"]] == [72.0, 40.0]


@pytest.mark.asyncio
async def test_older_samples_are_dropped_and_other_topics_ignored() -> None:
    engine, table, sent, _ = _engine()
    await engine.on_record(TOPIC, _record(30, 65), 0)
    await engine.on_record(TOPIC, _record(20, 99), 0)  # older than the last: dropped
    await engine.on_record("lsst.sal.Other.topic", _record(40, 99), 0)
    await engine.on_record(TOPIC, {"salIndex": 1, "motorTemperature0": 1.0}, 0)  # no stamp
    await engine.on_record(TOPIC, _record(70, 50), 0)
    assert [(t.severity, t.value) for t in sent] == [(Severity.WARNING, 65.0)]
    assert len(table.changelog) == 2


@pytest.mark.asyncio
async def test_the_owners_clock_closes_quiet_windows_once_even_after_a_restart() -> None:
    engine, table, sent, clock = _engine()
    await engine.on_record(TOPIC, _record(30, 75), 0)
    clock.now = T0 + timedelta(seconds=64)
    assert await engine.tick(lambda _topic, _partition: True) == 0  # inside the grace
    clock.now = T0 + timedelta(seconds=66)
    assert await engine.tick(lambda _topic, _partition: False) == 0  # not the owner
    assert await engine.tick(lambda _topic, _partition: True) == 1
    assert sent[0].severity == Severity.CRITICAL
    restarted, _, _, _ = _engine()
    restarted._table = DurableTable(table)  # the recovered table
    restarted._clock = clock
    clock.now = T0 + timedelta(seconds=80)
    assert await restarted.tick(lambda _topic, _partition: True) == 0  # 03:01 was done
