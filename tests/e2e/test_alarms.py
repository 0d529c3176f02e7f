"""Alarms end to end: triggers raise them, the API and the CLI acknowledge and mute them."""

from __future__ import annotations

import socket
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from support.stack import Stack

from catcher.fakes.love import FakeLoveManager
from catcher.kafka import read_topic
from catcher.models.enums import Severity

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio]

RULES = """
rules:
  - id: m1m3-temperature
    description: M1M3 temperature, one alarm per salIndex.
    alarm:
      auto_acknowledge_delay: 2s
"""

NAME = "m1m3-temperature:salIndex=1"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def _alarm(api: str, name: str = NAME, **headers: str) -> dict[str, Any] | None:
    async with httpx.AsyncClient() as client:
        try:
            response = await client.get(f"{api}/alarms/{name}", headers=headers)
        except httpx.ConnectError:  # the worker is still starting
            return None
    return response.json() if response.status_code == httpx.codes.OK else None


async def test_an_alarm_is_raised_acknowledged_muted_and_recorded(stack: Stack) -> None:
    port = _free_port()
    api = f"http://127.0.0.1:{port}"
    stack.extra_env.update(CATCHER_HTTP_PORT=str(port), CATCHER_API_URL=api)
    stack.write_rules(RULES)
    await stack.start_worker()
    tags = {"salIndex": "1"}
    await stack.publish("m1m3-temperature", Severity.WARNING, tags=tags, reason="12 C")
    await stack.publish("m1m3-temperature", Severity.CRITICAL, tags=tags, reason="25 C")

    async def critical() -> dict[str, Any] | None:
        alarm = await _alarm(api)
        return alarm if alarm and alarm["max_severity"] == "CRITICAL" else None

    alarm = await stack.wait_for(critical, what="a CRITICAL alarm in the API")
    assert (alarm["state"], alarm["reason"], alarm["acknowledged"]) == ("active", "25 C", False)

    # Acknowledging below the maximum severity is refused, and nothing is sent.
    async with httpx.AsyncClient() as client:
        refused = await client.post(
            f"{api}/alarms/acknowledge",
            json={"name": "m1m3-temperature:.*", "severity": "WARNING"},
            headers={"X-Auth-Request-User": "ana"},
        )
        assert refused.status_code == httpx.codes.CONFLICT
        assert refused.json()["refused"][0]["reason"].startswith("cannot acknowledge at WARNING")
        invalid = await client.post(
            f"{api}/alarms/mute", json={"name": NAME, "severity": "CRITICAL"}
        )
        assert invalid.status_code == httpx.codes.UNPROCESSABLE_ENTITY
        assert invalid.json()["detail"][0]["loc"] == ["body", "duration"]

    # The CLI acknowledges through the API (as the anonymous local user).
    code, out, err = await stack.cli(
        "alarms", "ack", "m1m3-temperature:.*", "--severity", "CRITICAL", "--comment", "on it"
    )
    assert code == 0, err
    assert out.strip() == f"acknowledge: sent to {NAME}"

    async def acknowledged() -> dict[str, Any] | None:
        alarm = await _alarm(api)
        return alarm if alarm and alarm["acknowledged"] else None

    alarm = await stack.wait_for(acknowledged, what="the acknowledgement")
    assert (alarm["acknowledged_by"], alarm["comment"]) == ("local", "on it")

    # A mute by a named user, shown by `catcher alarms list`.
    async with httpx.AsyncClient() as client:
        muted = await client.post(
            f"{api}/alarms/mute",
            json={"name": NAME, "severity": "CRITICAL", "duration": "1h", "comment": "works"},
            headers={"X-Auth-Request-User": "bo"},
        )
    assert muted.status_code == httpx.codes.ACCEPTED, muted.text

    async def muted_by_bo() -> dict[str, Any] | None:
        alarm = await _alarm(api)
        return alarm if alarm and alarm["muted_by"] == "bo" else None

    await stack.wait_for(muted_by_bo, what="the mute")
    code, out, err = await stack.cli("alarms", "list")
    assert code == 0, err
    assert NAME in out and "CRITICAL by bo" in out

    # Back to NONE while acknowledged: nominal again.
    await stack.publish("m1m3-temperature", Severity.NONE, tags=tags, reason="10 C")

    async def nominal() -> dict[str, Any] | None:
        alarm = await _alarm(api)
        return alarm if alarm and alarm["state"] == "nominal" else None

    await stack.wait_for(nominal, what="the alarm back to nominal")

    # One record per change on the alarms topic, commands with who made them.
    config = stack.config
    records = [
        await stack.codec.decode("alarms", m.value)
        for m in await read_topic(config, config.alarms_topic)
    ]
    assert [(r["severity"], r["state"], r["command"], r["command_user"]) for r in records] == [
        ("WARNING", "active", None, None),
        ("CRITICAL", "active", None, None),
        ("CRITICAL", "active", "acknowledge", "local"),
        ("CRITICAL", "active", "mute", "bo"),
        ("NONE", "nominal", None, None),
    ]
    assert {m.key for m in await read_topic(config, config.alarms_topic)} == {NAME.encode()}
    assert stack.workers[0].log.count("No LOVE producer") == 1


async def test_love_is_sent_the_alarm_map_and_gets_it_again_after_a_drop(stack: Stack) -> None:
    love = await FakeLoveManager().start()
    try:
        port = _free_port()
        api = f"http://127.0.0.1:{port}"
        stack.extra_env.update(
            CATCHER_HTTP_PORT=str(port),
            CATCHER_LOVE_URL=love.url,
            CATCHER_LOVE_PASSWORD=love.password,
        )
        stack.write_rules(RULES)
        await stack.start_worker()
        tags = {"salIndex": "1"}
        await stack.publish("m1m3-temperature", Severity.CRITICAL, tags=tags, reason="25 C")

        def shown(check: Callable[[dict[str, Any]], bool]) -> Callable[[], Any]:
            async def look() -> bool:
                maps = love.alarm_maps()
                return bool(maps) and NAME in maps[-1] and check(maps[-1][NAME])

            return look

        await stack.wait_for(
            shown(lambda a: a["severity"]["value"] == 4), what="the CRITICAL alarm in LOVE"
        )
        async with httpx.AsyncClient() as client:
            answer = await client.post(
                f"{api}/alarms/acknowledge",
                json={"name": NAME, "severity": "CRITICAL"},
                headers={"X-Auth-Request-User": "ana"},
            )
        assert answer.status_code == httpx.codes.ACCEPTED, answer.text
        await stack.wait_for(
            shown(lambda a: a["acknowledgedBy"]["value"] == "ana"), what="the ack in LOVE"
        )
        before = len(love.alarm_maps())
        await love.drop()

        async def sent_again() -> bool:
            return love.connections == 2 and len(love.alarm_maps()) > before

        await stack.wait_for(sent_again, what="the whole map sent again after a drop")
        assert love.alarm_maps()[-1][NAME]["acknowledged"]["value"] is True
        assert love.refused == 0
        assert len(love.subscriptions()) == 2  # one per connection

        async def beating() -> bool:
            return bool(love.heartbeats())

        await stack.wait_for(beating, timeout=10, what="a heartbeat (every 2 s)")
        assert love.heartbeats()[-1]["csc"] == "Catcher"
        assert "No LOVE producer" not in stack.workers[0].log
    finally:
        await love.stop()
