"""The LOVE producer against a fake LOVE-manager on a real websocket."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from datetime import UTC, datetime

import pytest

from catcher.fakes.love import FakeLoveManager
from catcher.models.alarms import Alarm
from catcher.models.enums import Severity
from catcher.services.alarms.love import TAI_MINUS_UTC, LoveProducer

pytestmark = pytest.mark.asyncio

T = datetime(2026, 11, 24, 3, 0, tzinfo=UTC)


async def _until(check: Callable[[], bool], timeout: float = 10) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not check():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("timed out")
        await asyncio.sleep(0.02)


async def test_the_whole_map_is_sent_on_connect_on_change_on_request_and_after_a_drop() -> None:
    love = await FakeLoveManager().start()
    alarms = {
        "a:x=1": Alarm(
            name="a:x=1",
            rule_id="a",
            severity=Severity.SERIOUS,
            max_severity=Severity.CRITICAL,
            reason="hot",
            severity_oldest=T,
        )
    }
    producer = LoveProducer(love.url, love.password, lambda: alarms)
    task = asyncio.create_task(producer.run())
    try:
        await _until(lambda: len(love.alarm_maps()) == 1)
        assert love.subscriptions()[0] == {
            "option": "subscribe",
            "category": "initial_state",
            "csc": "Catcher",
            "salindex": "all",
            "stream": "all",
        }
        fields = love.alarm_maps()[0]["a:x=1"]
        assert fields["severity"] == {"value": 3, "dataType": "Int", "units": "unitless"}
        assert fields["maxSeverity"]["value"] == 4
        assert fields["timestampSeverityOldest"]["value"] == T.timestamp() + TAI_MINUS_UTC
        assert fields["timestampUnmute"]["value"] == 0.0
        assert all(m.get("producer_snd") for m in love.messages if "option" not in m)
        alarms["b"] = Alarm(name="b", rule_id="b", severity=Severity.WARNING)
        producer.changed()
        await _until(lambda: len(love.alarm_maps()) == 2)
        assert sorted(love.alarm_maps()[-1]) == ["a:x=1", "b"]
        await love.ask_initial_state()
        await _until(lambda: len(love.alarm_maps()) == 3)
        await _until(lambda: len(love.heartbeats()) >= 1, timeout=5)
        heartbeat = love.heartbeats()[0]
        assert (heartbeat["csc"], heartbeat["salindex"], heartbeat["lost"]) == ("Catcher", 0, 0)
        await love.drop()
        await _until(lambda: love.connections == 2)
        await _until(lambda: len(love.alarm_maps()) == 4)
        assert sorted(love.alarm_maps()[-1]) == ["a:x=1", "b"]
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await love.stop()


async def test_a_wrong_password_is_refused_and_tried_again() -> None:
    love = await FakeLoveManager().start()
    producer = LoveProducer(love.url, "wrong", dict)
    task = asyncio.create_task(producer.run())
    try:
        await _until(lambda: love.refused >= 1)
        assert love.connections == 0 and love.messages == []
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await love.stop()
