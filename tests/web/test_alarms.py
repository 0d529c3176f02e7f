"""The alarm API on a real HTTP server: users, validation, expansion, silences."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import pytest_asyncio
from aiohttp import web
from aiohttp.test_utils import TestServer

from catcher.config import load_config
from catcher.models.alarms import Alarm, AlarmCommand, Silence
from catcher.models.enums import Severity
from catcher.services.alarms.view import AlarmView, TopicView
from catcher.web.alarms import AlarmApi, user_middleware

pytestmark = pytest.mark.asyncio


class Api:
    def __init__(self, url: str, commands: list[AlarmCommand], saved: list[Silence]) -> None:
        self.url = url
        self.commands = commands
        self.saved = saved

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
    commands: list[AlarmCommand] = []
    saved: list[Silence] = []

    async def send(command: AlarmCommand) -> None:
        commands.append(command)

    async def save(silence: Silence) -> None:
        saved.append(silence)

    app = web.Application(middlewares=[user_middleware(None)])
    app.add_routes(AlarmApi(view, send, silences=silences, save_silence=save).routes())
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        yield Api(str(server.make_url("")).rstrip("/"), commands, saved)
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


async def test_a_regex_becomes_one_command_per_alarm_and_refusals_are_listed(api: Api) -> None:
    answer = await api.call(
        "POST", "/alarms/acknowledge", json={"name": "m1m3-.*", "severity": "SERIOUS"}
    )
    assert answer.status_code == httpx.codes.ACCEPTED
    assert answer.json()["alarms"] == ["m1m3-temperature:salIndex=2"]
    assert answer.json()["refused"][0]["name"] == "m1m3-temperature:salIndex=1"
    (command,) = api.commands
    assert (command.user, command.series) == ("ana", "m1m3-temperature|salIndex=2")
    assert (await api.call("POST", "/alarms/unmute", json={"name": "x"})).status_code == 404
    assert (await api.call("POST", "/alarms/shout", json={"name": ".*"})).status_code == 404


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


async def test_the_openapi_document_lists_every_route(api: Api) -> None:
    document = (await api.call("GET", "/openapi.json", user=None)).json()
    assert sorted(document["paths"]) == [
        "/alarms",
        "/alarms/{command}",
        "/alarms/{name}",
        "/silences",
        "/silences/{id}",
    ]
