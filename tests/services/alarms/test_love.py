"""The LOVE producer against a fake LOVE-manager on a real websocket."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable
from datetime import UTC, datetime
from unittest.mock import ANY

import pytest

from catcher.fakes.love import FakeLoveManager
from catcher.models.alarms import Alarm
from catcher.models.enums import Severity
from catcher.services.alarms.love import (
    TAI_MINUS_UTC,
    LoveProducer,
    alarm_map,
    love_json,
    reconnect_delay,
)

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
        assert love.subscriptions()[:2] == [
            {
                "option": "subscribe",
                "category": "initial_state",
                "csc": csc,
                "salindex": "all",
                "stream": "all",
            }
            for csc in ("Catcher", "all")  # the legacy manager asks initial_state-all-all-all
        ]
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
        assert await love.ask_initial_state() == 1
        await _until(lambda: len(love.alarm_maps()) == 3)
        assert await love.ask_initial_state(legacy=True) == 1
        await _until(lambda: len(love.alarm_maps()) == 4)
        assert await love.ask_initial_state("Watcher") == 0  # not our group: not asked
        await _until(lambda: len(love.heartbeats()) >= 1, timeout=5)
        heartbeat = love.heartbeats()[0]
        assert (heartbeat["csc"], heartbeat["salindex"], heartbeat["lost"]) == ("Catcher", 0, 0)
        await love.drop()
        await _until(lambda: love.connections == 2)
        await _until(lambda: len(love.alarm_maps()) == 5)
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


async def test_no_nan_or_infinity_reaches_the_frontends_rewrite() -> None:
    """LOVE's frontend replaces every NaN and Infinity in a message's text before parsing."""
    love = await FakeLoveManager().start()
    tricky = "NaN:Infinity=-Infinity"
    alarms = {
        tricky: Alarm(
            name=tricky,
            rule_id="NaN-watch",
            severity=Severity.WARNING,
            reason="sensor reads NaN, then Infinity",
            escalate_to="NaN on call",
            escalated_id="42",
        )
    }
    producer = LoveProducer(love.url, love.password, lambda: alarms)
    task = asyncio.create_task(producer.run())
    try:
        await _until(lambda: len(love.alarm_maps()) == 1)
        (text,) = [t for t in love.texts if '"alarms"' in t]
        assert "NaN" not in text and "Infinity" not in text
        rewritten = text.replace("NaN", "null").replace("Infinity", "null")  # the frontend
        fields = json.loads(rewritten)["data"][0]["data"]["stream"]["alarms"][tricky]
        assert fields["name"]["value"] == tricky
        assert fields["reason"]["value"] == "sensor reads NaN, then Infinity"
        assert fields["escalated"] == {"value": True, "dataType": "Boolean", "units": "unitless"}
        assert fields["escalatedTo"]["value"] == "NaN on call"
        assert fields["escalateTo"]["value"] == "NaN on call"
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await love.stop()
    with pytest.raises(ValueError, match="not JSON compliant"):
        love_json({"value": float("nan")})  # a number is never NaN on the wire
    assert json.loads(love_json(alarm_map({}))) == {**alarm_map({}), "producer_snd": ANY}


async def test_the_producer_is_back_within_3_s_of_loves_return() -> None:
    """LOVE's own producers retry every 3 s; Catcher's delays never exceed that."""
    delays = [reconnect_delay(n) for n in range(10)]
    assert delays[0] == 0.5  # after a drop (a manager restart): at once
    assert max(delays) == 3.0 and delays[-1] == 3.0


async def test_failed_connections_are_retried_at_the_documented_delays() -> None:
    love = await FakeLoveManager().start()
    url = love.url
    await love.stop()  # LOVE is down
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)
        await asyncio.sleep(0)

    producer = LoveProducer(url, "pass", dict, sleep=sleep)
    task = asyncio.create_task(producer.run())
    try:
        await _until(lambda: len(slept) >= 6)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    assert slept[:6] == [1.0, 2.0, 3.0, 3.0, 3.0, 3.0]
