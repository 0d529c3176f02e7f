"""The alarm API on a real HTTP server: users, validation, expansion, silences."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import httpx
import pytest
import pytest_asyncio
from aiohttp import web
from aiohttp.test_utils import TestServer

from catcher.config import load_config
from catcher.models.alarms import Alarm, AlarmCommand, RuleState, Silence
from catcher.models.enums import Severity
from catcher.models.patterns import compile_pattern
from catcher.models.records import utcnow
from catcher.models.rules import Rule, RuleSet
from catcher.services.alarms.view import AlarmView, TopicView
from catcher.web.alarms import AlarmApi, names_matching, user_middleware

pytestmark = pytest.mark.asyncio


class Api:
    def __init__(self, url: str, batches: list[list[AlarmCommand]], saved: list[Silence]) -> None:
        self.states: list[RuleState] = []
        """Rule states written."""
        self.url = url
        self.batches = batches
        """What each request wrote (one write per request)."""
        self.saved = saved

    @property
    def commands(self) -> list[AlarmCommand]:
        return [command for batch in self.batches for command in batch]

    async def call(self, method: str, path: str, user: str | None = "ana", **kw: Any) -> Any:
        headers = {"X-Auth-Request-User": user} if user else {}
        async with httpx.AsyncClient() as client:
            return await client.request(method, f"{self.url}{path}", headers=headers, **kw)


async def _decode(_value: bytes) -> Silence:
    raise NotImplementedError


@pytest_asyncio.fixture
async def api() -> AsyncIterator[Api]:
    config = load_config()
    view = AlarmView(config, codec=None)  # type: ignore[arg-type]  # never started here
    for n, severity in ((1, Severity.CRITICAL), (2, Severity.WARNING)):
        name = f"m1m3-temperature:salIndex={n}"
        view.values[name] = Alarm(
            name=name,
            rule_id="m1m3-temperature",
            tags={"salIndex": str(n)},
            severity=severity,
            max_severity=severity,
        )
    silences: TopicView[Silence] = TopicView(config, "silences", _decode)
    batches: list[list[AlarmCommand]] = []
    saved: list[Silence] = []

    async def send(commands: list[AlarmCommand]) -> None:
        batches.append(commands)

    async def save(silence: Silence) -> None:
        saved.append(silence)

    states: list[RuleState] = []

    async def save_state(state: RuleState) -> None:
        states.append(state)

    rules = RuleSet([Rule.model_validate({"id": "m1m3-temperature", "description": "d"})])
    app = web.Application(middlewares=[user_middleware(None)])
    api_ = AlarmApi(
        view,
        send,
        silences=silences,
        save_silence=save,
        rules=rules,
        rule_states=TopicView(config, "rule-states", _decode),  # type: ignore[arg-type]
        save_rule_state=save_state,
    )
    app.add_routes(api_.routes())
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        served = Api(str(server.make_url("")).rstrip("/"), batches, saved)
        served.states = states
        yield served
    finally:
        await server.close()


async def test_a_request_without_a_user_is_refused(api: Api) -> None:
    for method, path in (
        ("GET", "/alarms"),
        ("GET", "/alarms/some-alarm"),
        ("POST", "/alarms/unmute"),
        ("GET", "/silences"),
        ("POST", "/silences"),
        ("DELETE", "/silences/some-id"),
    ):
        answer = await api.call(method, path, user=None, json={"name": ".*"})
        assert answer.status_code == httpx.codes.UNAUTHORIZED, path
        assert "X-Auth-Request-User" in answer.json()["detail"]
    assert api.commands == []
    assert api.saved == []
    described = await api.call("GET", "/openapi.json", user=None)  # open to read
    assert described.status_code == httpx.codes.OK


async def test_reads_filter_by_state_rule_and_name(api: Api) -> None:
    names = [a["name"] for a in (await api.call("GET", "/alarms?name=.*=2")).json()["alarms"]]
    assert names == ["m1m3-temperature:salIndex=2"]
    assert (await api.call("GET", "/alarms?rule=other")).json() == {"alarms": []}
    one = (await api.call("GET", "/alarms/m1m3-temperature:salIndex=1")).json()
    assert (one["severity"], one["state"]) == ("CRITICAL", "active")
    assert (await api.call("GET", "/alarms/nope")).status_code == httpx.codes.NOT_FOUND
    bad = await api.call("GET", "/alarms?name=(")
    assert bad.status_code == httpx.codes.UNPROCESSABLE_ENTITY


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/alarms/acknowledge", {"name": ".*"}, "severity"),
        ("/alarms/acknowledge", {"name": ".*", "severity": "LOUD"}, "severity"),
        ("/alarms/mute", {"name": ".*", "severity": "SERIOUS"}, "duration"),
        ("/alarms/mute", {"name": ".*", "severity": "SERIOUS", "duration": "soon"}, "duration"),
        ("/alarms/unmute", {"name": "("}, "name"),
        ("/alarms/unmute", {"name": ".*", "extra": 1}, "extra"),
        ("/silences", {"duration": "1h", "comment": "x"}, None),
        ("/silences", {"name": ".*", "comment": "x"}, "duration"),
        ("/silences", {"name": ".*", "duration": "1h"}, "comment"),
    ],
)
async def test_invalid_input_names_the_field(
    api: Api, path: str, body: dict[str, Any], field: str | None
) -> None:
    answer = await api.call("POST", path, json=body)
    assert answer.status_code == httpx.codes.UNPROCESSABLE_ENTITY, answer.text
    detail = answer.json()["detail"]
    if field is not None:
        assert field in detail[0]["loc"], detail
    assert api.commands == [] and api.saved == []


async def test_a_regex_command_is_all_or_nothing(api: Api) -> None:
    answer = await api.call(
        "POST", "/alarms/acknowledge", json={"name": "m1m3-.*", "severity": "SERIOUS"}
    )
    assert answer.status_code == httpx.codes.CONFLICT  # salIndex=1 was CRITICAL
    assert answer.json()["alarms"] == []
    assert [r["name"] for r in answer.json()["refused"]] == ["m1m3-temperature:salIndex=1"]
    assert api.batches == []  # nothing sent
    answer = await api.call(
        "POST", "/alarms/acknowledge", json={"name": "m1m3-.*", "severity": "CRITICAL"}
    )
    assert answer.status_code == httpx.codes.ACCEPTED
    assert answer.json() == {
        "command": "acknowledge",
        "alarms": ["m1m3-temperature:salIndex=1", "m1m3-temperature:salIndex=2"],
        "refused": [],
    }
    (batch,) = api.batches  # one write for the whole request
    assert [(c.user, c.series) for c in batch] == [
        ("ana", "m1m3-temperature|salIndex=1"),
        ("ana", "m1m3-temperature|salIndex=2"),
    ]
    assert (await api.call("POST", "/alarms/unmute", json={"name": "x"})).status_code == 404
    assert (await api.call("POST", "/alarms/shout", json={"name": ".*"})).status_code == 404


async def test_commands_match_names_from_their_start_as_the_watcher(api: Api) -> None:
    """ts_watcher's commands use re.match: a prefix names every alarm it begins."""
    prefix = await api.call("POST", "/alarms/unmute", json={"name": "m1m3"})
    assert prefix.json()["alarms"] == [
        "m1m3-temperature:salIndex=1",
        "m1m3-temperature:salIndex=2",
    ]
    whole = await api.call("POST", "/alarms/unmute", json={"name": "m1m3-temperature:salIndex=1$"})
    assert whole.json()["alarms"] == ["m1m3-temperature:salIndex=1"]
    inside = await api.call("POST", "/alarms/unmute", json={"name": "temperature"})
    assert inside.status_code == httpx.codes.NOT_FOUND  # not from the start: nothing named
    assert len(api.batches) == 2


async def test_silences_are_created_listed_and_expired(api: Api) -> None:
    created = await api.call(
        "POST", "/silences", json={"tags": {"salIndex": "1"}, "duration": "2h", "comment": "M1M3"}
    )
    assert created.status_code == httpx.codes.CREATED, created.text
    silence = created.json()
    assert (silence["state"], silence["created_by"]) == ("active", "ana")
    listed = (await api.call("GET", "/silences?state=active")).json()["silences"]
    assert [s["id"] for s in listed] == [silence["id"]]
    expired = await api.call("DELETE", f"/silences/{silence['id']}")
    assert expired.json()["state"] == "expired"
    again = await api.call("DELETE", f"/silences/{silence['id']}")
    assert again.status_code == httpx.codes.CONFLICT
    assert (await api.call("DELETE", "/silences/nope")).status_code == httpx.codes.NOT_FOUND
    assert [s.expired_at is None for s in api.saved] == [True, False]


async def test_hostile_patterns_times_durations_and_users_are_refused_at_the_edge(
    api: Api,
) -> None:
    for pattern in ("(a+)+$", "(.*.*)*!", "(x+x+)+y"):  # would hang Python's re
        listed = await api.call("GET", "/alarms", params={"name": pattern})
        assert listed.status_code == httpx.codes.OK
        assert listed.json() == {"alarms": []}
    for pattern, why in (("(?=m)m1m3.*", "lookaround"), ("x" * 501, "at most 500"), ("(", "")):
        refused = await api.call("GET", "/alarms", params={"name": pattern})
        assert refused.status_code == httpx.codes.UNPROCESSABLE_ENTITY
        assert refused.json()["detail"][0]["loc"] == ["query", "name"]
        assert why in refused.json()["detail"][0]["msg"]
        command = await api.call("POST", "/alarms/unmute", json={"name": pattern})
        assert command.status_code == httpx.codes.UNPROCESSABLE_ENTITY
        assert command.json()["detail"][0]["loc"] == ["body", "name"]
        silence = await api.call(
            "POST", "/silences", json={"name": pattern, "duration": "1h", "comment": "x"}
        )
        assert silence.status_code == httpx.codes.UNPROCESSABLE_ENTITY
        assert silence.json()["detail"][0]["loc"] == ["body", "name"]
    for duration in ("999999999d", 1e300, "nan", float("inf"), -5, 0):
        body = {"name": "m1m3-.*", "severity": "CRITICAL", "duration": duration}
        mute = await api.call("POST", "/alarms/mute", content=json.dumps(body))  # NaN, Infinity
        assert mute.status_code == httpx.codes.UNPROCESSABLE_ENTITY, (duration, mute.text)
    too_long = await api.call(
        "POST", "/silences", json={"name": "m1m3-.*", "duration": "400d", "comment": "x"}
    )
    assert too_long.status_code == httpx.codes.UNPROCESSABLE_ENTITY
    far = await api.call(
        "POST",
        "/silences",
        json={"name": "x", "starts_at": "9999-01-01T00:00:00Z", "duration": "1h", "comment": "x"},
    )
    assert far.status_code == httpx.codes.UNPROCESSABLE_ENTITY
    naive = await api.call(
        "POST",
        "/silences",
        json={"name": "x", "ends_at": "2099-01-01T00:00:00", "comment": "read as UTC"},
    )
    assert naive.status_code == httpx.codes.UNPROCESSABLE_ENTITY  # more than 366 days
    soon = (utcnow() + timedelta(hours=2)).replace(tzinfo=None, microsecond=0)
    naive = await api.call(
        "POST", "/silences", json={"name": "x", "ends_at": soon.isoformat(), "comment": "UTC"}
    )
    assert naive.status_code == httpx.codes.CREATED, naive.text
    assert naive.json()["ends_at"] == soon.isoformat() + "Z"
    assert api.batches == []
    async with httpx.AsyncClient() as client:
        for user in (b"\xff\xfe", b"a" * 300, b"ana\x07"):
            answer = await client.get(f"{api.url}/alarms", headers={"X-Auth-Request-User": user})
            assert answer.status_code == httpx.codes.BAD_REQUEST, user
            if user != b"ana\x07":  # a control character: aiohttp's parser refuses it first
                assert answer.json()["detail"][0]["loc"] == ["header", "X-Auth-Request-User"]


async def test_the_openapi_document_lists_every_route(api: Api) -> None:
    document = (await api.call("GET", "/openapi.json", user=None)).json()
    assert sorted(document["paths"]) == [
        "/alarms",
        "/alarms/{name}",
        "/rules",
        "/rules/{rule_id}/{action}",
        "/silences",
        "/silences/{id}",
    ]
    assert sorted(document["paths"]["/alarms/{name}"]) == ["get", "post"]  # one URL shape

    def refs(node: object) -> list[str]:
        if isinstance(node, dict):
            found = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
            return found + [r for value in node.values() for r in refs(value)]
        if isinstance(node, list):
            return [r for value in node for r in refs(value)]
        return []

    schemas = document["components"]["schemas"]
    assert refs(document)
    for ref in refs(document):  # every $ref resolves
        assert ref.startswith("#/components/schemas/") and ref.rsplit("/", 1)[1] in schemas
    body = schemas["CommandBody"]["properties"]
    assert "NONE" in str(body["severity"]) and "30s" in str(body["duration"])


async def test_a_rules_alarms_are_disabled_and_enabled_at_run_time(api: Api) -> None:
    (rule,) = (await api.call("GET", "/rules")).json()["rules"]
    assert rule == {
        "rule_id": "m1m3-temperature",
        "alarms_enabled": True,
        "configured": True,
        "by": "",
        "at": None,
        "comment": "",
    }
    path = "/rules/m1m3-temperature/disable"
    answer = await api.call("POST", path, json={"comment": "sensor replaced tonight"})
    assert answer.status_code == httpx.codes.ACCEPTED
    assert answer.json()["alarms_enabled"] is False and answer.json()["by"] == "ana"
    assert [(s.rule_id, s.alarms_enabled, s.comment) for s in api.states] == [
        ("m1m3-temperature", False, "sensor replaced tonight")
    ]
    listed = (await api.call("GET", "/rules")).json()["rules"][0]
    assert listed["alarms_enabled"] is False and listed["comment"] == "sensor replaced tonight"
    again = await api.call("POST", "/rules/m1m3-temperature/enable")  # no body: no comment
    assert again.status_code == httpx.codes.ACCEPTED and again.json()["alarms_enabled"]
    for path, status in (
        ("/rules/nope/disable", httpx.codes.NOT_FOUND),
        ("/rules/m1m3-temperature/toggle", httpx.codes.NOT_FOUND),
    ):
        assert (await api.call("POST", path)).status_code == status
    long = await api.call("POST", "/rules/m1m3-temperature/disable", json={"comment": "x" * 1001})
    assert long.status_code == httpx.codes.UNPROCESSABLE_ENTITY
    junk = await api.call("POST", "/rules/m1m3-temperature/disable", content=b"{")
    assert junk.status_code == httpx.codes.UNPROCESSABLE_ENTITY
    unknown = await api.call("POST", "/rules/m1m3-temperature/disable", json={"why": "x"})
    assert unknown.status_code == httpx.codes.UNPROCESSABLE_ENTITY
    assert (await api.call("GET", "/rules", user=None)).status_code == httpx.codes.UNAUTHORIZED
    assert len(api.states) == 2  # refused requests wrote nothing


async def test_the_watchers_own_command_scenarios_name_the_same_alarms() -> None:
    """ts_watcher tests/test_model.py test_acknowledge_regex and test_mute_regex."""
    names = ["Enabled.ScriptQueue:1", "Enabled.ScriptQueue:2", "Enabled.Test:62"]
    for pattern in ("Enabled.ScriptQueue:*", "Enabled.ScriptQueue.*"):
        assert names_matching(compile_pattern(pattern), names) == names[:2]
    # test_acknowledge_full_name: a whole name names that alarm (and any it begins).
    assert names_matching(compile_pattern("Enabled.Test:62"), names) == ["Enabled.Test:62"]
