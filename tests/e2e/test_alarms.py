"""Alarms end to end: triggers raise them, the API and the CLI acknowledge and mute them."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from catcher import topics
from catcher.broker import free_port
from catcher.fakes.love import FakeLoveManager
from catcher.fakes.squadcast import FakeSquadCast
from catcher.kafka import ensure_topics, read_topic
from catcher.models.enums import Severity
from catcher.models.records import utcnow
from tests.support import DATA
from tests.support.stack import Stack

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio]

RULES = """
rules:
  - id: m1m3-temperature
    description: M1M3 temperature, one alarm per salIndex.
    alarm:
      auto_acknowledge_delay: 2s
"""

NAME = "m1m3-temperature:salIndex=1"


async def _alarm(api: str, name: str = NAME, **headers: str) -> dict[str, Any] | None:
    async with httpx.AsyncClient() as client:
        try:
            response = await client.get(f"{api}/alarms/{name}", headers=headers)
        except httpx.ConnectError:  # the worker is still starting
            return None
    return response.json() if response.status_code == httpx.codes.OK else None


async def test_an_alarm_is_raised_acknowledged_muted_and_recorded(stack: Stack) -> None:
    port = free_port()
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
        port = free_port()
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
        assert len(love.subscriptions()) == 4  # two groups per connection
        assert await love.ask_initial_state(legacy=True) == 1  # a legacy manager's request
        asked = len(love.alarm_maps())

        async def answered() -> bool:
            return len(love.alarm_maps()) > asked

        await stack.wait_for(answered, what="the answer to a legacy manager")

        async def beating() -> bool:
            return bool(love.heartbeats())

        await stack.wait_for(beating, timeout=10, what="a heartbeat (every 2 s)")
        assert love.heartbeats()[-1]["csc"] == "Catcher"
        assert "No LOVE producer" not in stack.workers[0].log
    finally:
        await love.stop()


TIMED = """
rules:
  - id: m1m3-temperature
    description: M1M3 temperature, one alarm per salIndex.
    alarm:
      auto_acknowledge_delay: 3s
      escalate: {responder: m1m3-team, delay: 3s}
"""


def _api(stack: Stack) -> str:
    port = free_port()
    stack.extra_env.update(CATCHER_HTTP_PORT=str(port), CATCHER_API_URL=f"http://127.0.0.1:{port}")
    return f"http://127.0.0.1:{port}"


async def _serving(stack: Stack, api: str) -> None:
    """Wait until the worker's API answers."""

    async def up() -> bool:
        async with httpx.AsyncClient() as client:
            try:
                return (await client.get(f"{api}/alarms")).status_code == httpx.codes.OK
            except httpx.ConnectError:
                return False

    await stack.wait_for(up, what="the API")


def _looks(api: str, check: Callable[[dict[str, Any]], bool], name: str = NAME) -> Any:
    async def look() -> dict[str, Any] | None:
        alarm = await _alarm(api, name)
        return alarm if alarm is not None and check(alarm) else None

    return look


async def test_timers_and_escalation_survive_a_sigkill_and_page_exactly_once(
    stack: Stack,
) -> None:
    squadcast = await FakeSquadCast().start()
    try:
        api = _api(stack)
        stack.extra_env.update(
            CATCHER_ESCALATION_URL=squadcast.url, CATCHER_ESCALATION_KEY=squadcast.key
        )
        stack.write_rules(TIMED)
        await stack.start_worker()
        one, two = {"salIndex": "1"}, {"salIndex": "2"}
        await stack.publish("m1m3-temperature", Severity.CRITICAL, tags=one, reason="25 C")
        await stack.publish("m1m3-temperature", Severity.SERIOUS, tags=two, reason="18 C")
        await stack.publish("m1m3-temperature", Severity.NONE, tags=two, reason="10 C")
        other = "m1m3-temperature:salIndex=2"
        await stack.wait_for(_looks(api, lambda a: a["state"] == "stale", other), what="stale")
        await stack.wait_for(_looks(api, lambda a: a["escalate_at"] is not None), what="timer")
        # Killed with both timers pending; they fire on the next worker.
        stack.workers[0].kill()
        await stack.start_worker()
        await stack.wait_for(
            _looks(api, lambda a: a["state"] == "nominal", other),
            what="the stale alarm auto-acknowledged after the restart",
        )
        paged = await stack.wait_for(
            _looks(api, lambda a: bool(a["escalated_id"])), what="the page after the restart"
        )
        assert list(squadcast.incidents) == [paged["escalated_id"]]
        assert len(squadcast.posts("trigger")) == 1
        incident = squadcast.incidents[paged["escalated_id"]]
        assert incident["tags"] == {"responder": "m1m3-team", "alarm_name": NAME}
        # Acknowledging resolves the incident once; a second kill pages nobody again.
        code, _, err = await stack.cli("alarms", "ack", NAME, "--severity", "CRITICAL")
        assert code == 0, err
        await stack.wait_for(
            _looks(api, lambda a: a["acknowledged"] and not a["escalated_id"]), what="resolved"
        )

        async def resolved() -> bool:
            return bool(squadcast.posts("resolve"))

        await stack.wait_for(resolved, what="the resolve")
        stack.workers[1].kill()
        await stack.start_worker()
        await stack.wait_for(_looks(api, lambda a: a["acknowledged"]), what="the restart")
        await asyncio.sleep(4)  # longer than the escalation delay: nothing may be paged
        assert len(squadcast.posts("trigger")) == 1
        assert squadcast.posts("resolve") == [
            {"status": "resolve", "event_id": paged["escalated_id"]}
        ]
    finally:
        await squadcast.stop()


async def test_a_mute_ends_after_a_restart_and_a_silence_covers_a_later_alarm(
    stack: Stack,
) -> None:
    api = _api(stack)
    stack.write_rules(RULES)
    await stack.start_worker()
    await _serving(stack, api)
    code, out, err = await stack.cli(
        "alarms",
        "silence",
        "add",
        "--name",
        "m1m3-temperature:.*",
        "--duration",
        "1h",
        "--comment",
        "M1M3 maintenance",
    )
    assert code == 0, err
    silence_id = out.split()[0]
    assert " active until " in out
    await stack.publish("m1m3-temperature", Severity.WARNING, tags={"salIndex": "1"})
    alarm = await stack.wait_for(
        _looks(api, lambda a: a["silence_id"] == silence_id), what="the silence applied"
    )
    assert (alarm["muted_severity"], alarm["muted_by"]) == ("CRITICAL", "silence by local")
    code, out, err = await stack.cli("alarms", "silence", "expire", silence_id)
    assert (code, out.strip()) == (0, f"{silence_id} expired"), err
    await stack.wait_for(_looks(api, lambda a: not a["silence_id"]), what="the silence lifted")
    code, out, _ = await stack.cli("alarms", "silence", "list", "--state", "expired")
    assert silence_id in out
    # A short mute, then a clean stop: the next worker ends it.
    code, _, err = await stack.cli(
        "alarms", "mute", NAME, "--duration", "3s", "--severity", "SERIOUS"
    )
    assert code == 0, err
    await stack.wait_for(_looks(api, lambda a: a["muted_by"] == "local"), what="the mute")
    stack.workers[0].stop()
    await asyncio.sleep(3)
    await stack.start_worker()
    alarm = await stack.wait_for(
        _looks(api, lambda a: a["muted_severity"] == "NONE"), what="unmuted after the restart"
    )
    assert alarm["unmute_at"] is None


async def test_two_workers_either_answers_reads_and_commands_reach_the_owners(
    stack: Stack,
) -> None:
    stack.partitions = 2
    stack.write_rules(RULES)
    apis = []
    for _ in range(2):
        apis.append(_api(stack))
        await stack.start_worker()

    def triggers_partitions(log: str) -> str:
        lines = [line for line in log.splitlines() if "Partitions assigned" in line]
        return lines[-1].split("triggers=")[-1] if lines else ""

    async def both_own_one() -> bool:
        return all(triggers_partitions(w.log) in ("[0]", "[1]") for w in stack.workers)

    await stack.wait_for(both_own_one, timeout=90, what="one partition for each worker")
    names = [f"m1m3-temperature:salIndex={n}" for n in range(1, 7)]
    for n in range(1, 7):
        await stack.publish("m1m3-temperature", Severity.SERIOUS, tags={"salIndex": str(n)})

    async def everywhere(check: Callable[[dict[str, Any]], bool]) -> bool:
        for api in apis:
            for name in names:
                alarm = await _alarm(api, name)
                if alarm is None or not check(alarm):
                    return False
        return True

    await stack.wait_for(
        lambda: everywhere(lambda a: a["severity"] == "SERIOUS"), what="all alarms on both"
    )
    # One command through the first worker; the owners of both partitions apply it.
    async with httpx.AsyncClient() as client:
        answer = await client.post(
            f"{apis[0]}/alarms/acknowledge",
            json={"name": "m1m3-temperature:.*", "severity": "SERIOUS"},
            headers={"X-Auth-Request-User": "ana"},
        )
    assert answer.status_code == httpx.codes.ACCEPTED, answer.text
    assert sorted(answer.json()["alarms"]) == names
    await stack.wait_for(
        lambda: everywhere(lambda a: a["acknowledged_by"] == "ana"), what="acked everywhere"
    )
    config = stack.config
    records = [
        await stack.codec.decode("alarms", m.value)
        for m in await read_topic(config, config.alarms_topic)
    ]
    assert sorted(r["name"] for r in records if r["command"] == "acknowledge") == names
    applied = [w.log.count("Applied an alarm command") for w in stack.workers]
    assert sum(applied) == len(names)
    assert all(applied), applied  # each worker applied the commands of its own alarms


async def _ready(api: str) -> bool:
    """At work: partitions assigned and tables recovered (/ready is only the API's)."""
    async with httpx.AsyncClient(timeout=2) as client:
        try:
            return bool((await client.get(f"{api}/status")).json()["working"])
        except (httpx.HTTPError, ValueError):
            return False


async def test_hostile_patterns_and_stored_silences_never_stall_the_worker(stack: Stack) -> None:
    """A silence no worker can compile is skipped; hostile patterns are matched in linear time."""
    port = free_port()
    api = f"http://127.0.0.1:{port}"
    stack.extra_env.update(CATCHER_HTTP_PORT=str(port))
    stack.write_rules(RULES)
    config = stack.config
    await ensure_topics(config, [topics.SILENCES])
    now = utcnow()
    stored = {  # as an older version, or anyone with write access to the topic, left them
        "catastrophic": {"tags": {"salIndex": "(a+)+$"}},  # Python's re: 2**40 steps below
        "lookahead": {"name": "(?=m1m3)m1m3.*"},  # not RE2: skipped, with a log line
    }
    records = [
        (
            key.encode(),
            json.dumps(
                {
                    "id": key,
                    **fields,
                    "starts_at": now.isoformat(),
                    "ends_at": (now + timedelta(hours=1)).isoformat(),
                    "comment": "stored",
                    "created_by": "someone",
                    "created_at": now.isoformat(),
                }
            ).encode(),
        )
        for key, fields in stored.items()
    ]
    await stack.operator.send(config.silences_topic, [*records, (b"junk", b"not json")])
    worker = await stack.start_worker()
    await stack.wait_for(lambda: _ready(api), what="the worker ready with hostile silences")
    await stack.publish(
        "m1m3-temperature", Severity.CRITICAL, tags={"salIndex": "a" * 40 + "!"}, reason="hot"
    )
    await stack.publish("m1m3-temperature", Severity.CRITICAL, tags={"salIndex": "1"})
    assert await stack.wait_for(lambda: _alarm(api), what="an alarm")

    async def hostile_reads() -> list[int]:
        async with httpx.AsyncClient(timeout=10) as client:
            answers = await asyncio.gather(
                *(
                    client.get(
                        f"{api}/alarms",
                        params={"name": pattern},
                        headers={"X-Auth-Request-User": "mallory"},
                    )
                    for pattern in ["(a+)+$", "(.*.*)*!", "(x+x+)+y"] * 20
                )
            )
        return [a.status_code for a in answers]

    reads = asyncio.create_task(hostile_reads())
    async with httpx.AsyncClient(timeout=2) as client:  # /health answers within 2 s
        while not reads.done():
            assert (await client.get(f"{api}/health")).status_code == httpx.codes.OK
            await asyncio.sleep(0.05)
    assert set(await reads) == {httpx.codes.OK}
    async with httpx.AsyncClient(timeout=10) as client:
        listed = await client.get(f"{api}/silences", headers={"X-Auth-Request-User": "ana"})
    assert sorted(s["id"] for s in listed.json()["silences"]) == ["catastrophic"]
    assert "lookahead" in worker.log  # skipped, and said so
    worker.stop()
    restarted = await stack.start_worker()  # reads the same silences back at start-up
    await stack.wait_for(lambda: _ready(api), what="the restarted worker ready")
    restarted.assert_alive()


async def test_the_api_answers_as_its_openapi_document_says(stack: Stack) -> None:
    """Schemathesis checks real answers of a worker against the document, all checks on."""
    port = free_port()
    api = f"http://127.0.0.1:{port}"
    # As deployed: no anonymous user, so a request without the header is refused.
    stack.extra_env.update(CATCHER_HTTP_PORT=str(port), CATCHER_API_ANONYMOUS_USER="")
    stack.write_rules(RULES)
    await stack.start_worker()
    for n, severity in ((1, Severity.CRITICAL), (2, Severity.WARNING)):
        await stack.publish("m1m3-temperature", severity, tags={"salIndex": str(n)})
    user = {"X-Auth-Request-User": "ana"}
    await stack.wait_for(lambda: _alarm(api, "m1m3-temperature:salIndex=2", **user), what="alarms")
    settings = DATA / "schemathesis" / "schemathesis.toml"
    for headers in (["-H", "X-Auth-Request-User: ana"], []):  # with the user, and without
        process = await asyncio.create_subprocess_exec(
            str(Path(sys.executable).parent / "st"),
            "--config-file",
            str(settings),
            "run",
            f"{api}/openapi.json",
            "--checks",
            "all",
            "--max-examples",
            "15",
            "--seed",
            "20261130",
            "--no-color",
            *headers,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        out, _ = await process.communicate()
        assert process.returncode == 0, out.decode()[-6000:]


async def test_a_command_on_several_alarms_is_one_record_applied_once_by_each_owner(
    stack: Stack,
) -> None:
    port = free_port()
    api = f"http://127.0.0.1:{port}"
    stack.partitions = 3
    stack.extra_env.update(CATCHER_HTTP_PORT=str(port))
    stack.write_rules(RULES)
    await stack.start_worker()
    names = [f"m1m3-temperature:salIndex={n}" for n in range(1, 7)]
    for n in range(1, 7):
        await stack.publish("m1m3-temperature", Severity.CRITICAL, tags={"salIndex": str(n)})
    for name in names:
        await stack.wait_for(lambda name=name: _alarm(api, name), what=f"alarm {name}")
    config = stack.config
    before = len(await read_topic(config, config.series_topic))
    async with httpx.AsyncClient() as client:
        answer = await client.post(
            f"{api}/alarms/acknowledge",
            json={"name": "m1m3-temperature:.*", "severity": "CRITICAL", "comment": "all"},
            headers={"X-Auth-Request-User": "ana"},
        )
    assert answer.status_code == httpx.codes.ACCEPTED, answer.text
    assert answer.json()["alarms"] == names

    async def all_acknowledged() -> bool:
        alarms = [await _alarm(api, name) for name in names]
        return all(a and a["acknowledged_by"] == "ana" for a in alarms)

    await stack.wait_for(all_acknowledged, what="every alarm acknowledged")
    series = [
        json.loads(m.value) for m in (await read_topic(config, config.series_topic))[before:]
    ]
    kinds = [s["kind"] for s in series]
    assert kinds.count("alarm_commands") == 1  # the request: one record
    assert sorted(s["name"] for s in series if s["kind"] == "alarm_command") == names
    records = [
        await stack.codec.decode("alarms", m.value)
        for m in await read_topic(config, config.alarms_topic)
    ]
    acknowledgements = [r["name"] for r in records if r["command"] == "acknowledge"]
    assert sorted(acknowledgements) == names  # each alarm once


SERIESLESS = """
rules:
  - id: dome-wind
    description: Dome wind speed, one alarm for the dome.
    condition:
      source: {measurement: lsst.sal.MTDome.apertureShutter, field: windSpeed}
      aggregate: max
      window: 1m
      thresholds: {warning: 10, critical: 20}
"""


async def test_an_alarm_exists_from_start_up_and_can_be_muted_before_it_fires(
    stack: Stack,
) -> None:
    """Before maintenance, as with the Watcher: mute the dome's alarm, then let it fire."""
    api = _api(stack)
    stack.write_rules(SERIESLESS)
    await stack.start_worker()
    nominal = await stack.wait_for(
        _looks(api, lambda a: a["state"] == "nominal", "dome-wind"),
        what="the rule's alarm, nominal, with no trigger yet",
    )
    assert nominal["severity"] == "NONE" and nominal["muted_severity"] == "NONE"
    code, out, err = await stack.cli(
        "alarms",
        "mute",
        "dome-wind$",
        "--duration",
        "2h",
        "--severity",
        "CRITICAL",
        "--comment",
        "dome maintenance",
    )
    assert code == 0, err
    assert "dome-wind" in out
    await stack.wait_for(
        _looks(
            api,
            lambda a: a["muted_severity"] == "CRITICAL" and a["state"] == "nominal",
            "dome-wind",
        ),
        what="the nominal alarm muted",
    )
    await stack.publish("dome-wind", Severity.CRITICAL, reason="gusts of 25 m/s")
    fired = await stack.wait_for(
        _looks(api, lambda a: a["severity"] == "CRITICAL", "dome-wind"), what="the alarm fired"
    )
    assert fired["muted_severity"] == "CRITICAL" and fired["muted_by"], fired
    assert fired["comment"] == "dome maintenance" and fired["state"] == "active"


async def test_a_rules_alarms_disabled_at_run_time_ignore_its_triggers(stack: Stack) -> None:
    api = _api(stack)
    stack.write_rules(RULES + "  - id: control\n    description: Another rule, still enabled.\n")
    await stack.start_worker()
    await stack.publish("m1m3-temperature", Severity.WARNING, tags={"salIndex": "1"})
    await stack.wait_for(_looks(api, lambda a: a["severity"] == "WARNING"), what="the alarm")
    code, out, err = await stack.cli(
        "alarms", "disable", "m1m3-temperature", "--comment", "sensor replaced tonight"
    )
    assert code == 0, err
    assert "Alarms of m1m3-temperature disabled by" in out
    code, out, err = await stack.cli("alarms", "rules")
    assert code == 0, err
    assert "DISABLED" in out and "sensor replaced tonight" in out
    await stack.publish("m1m3-temperature", Severity.CRITICAL, tags={"salIndex": "1"})
    await stack.publish("m1m3-temperature", Severity.SERIOUS, tags={"salIndex": "2"})
    # One partition: once the control rule's later trigger has its alarm, those before it
    # were handled.
    await stack.publish("control", Severity.WARNING)
    await stack.wait_for(
        _looks(api, lambda a: a["severity"] == "WARNING", "control"), what="the control"
    )
    assert (await _alarm(api))["severity"] == "WARNING"  # type: ignore[index]
    assert await _alarm(api, "m1m3-temperature:salIndex=2") is None
    code, _, err = await stack.cli("alarms", "enable", "m1m3-temperature")
    assert code == 0, err
    await stack.publish("m1m3-temperature", Severity.CRITICAL, tags={"salIndex": "1"})
    await stack.wait_for(
        _looks(api, lambda a: a["severity"] == "CRITICAL"), what="the alarm following again"
    )
    config = stack.config
    states = [json.loads(m.value) for m in await read_topic(config, config.rule_states_topic)]
    assert [(s["alarms_enabled"], s["comment"]) for s in states] == [
        (False, "sensor replaced tonight"),
        (True, ""),
    ]
