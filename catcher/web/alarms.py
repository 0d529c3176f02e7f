"""The worker's HTTP API: alarms read from the alarms topic, commands sent to their owners.

Any worker answers reads from its :class:`AlarmView`. A command names alarms by a regular
expression matched from the start of each name, as the Watcher's commands match (``$``
ends a whole name); it is expanded against the current list into
one command per alarm, each sent on the series topic keyed like the alarm's series, so that
the owner applies it in order with the series' triggers. The answer lists the alarms the
command was sent to, and those it was refused for (acknowledging below the maximum
severity). The user is Gafaelfawr's ``X-Auth-Request-User`` header.
"""

from __future__ import annotations

import json
import unicodedata
import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any

import structlog
from aiohttp import web
from pydantic import ValidationError

from ..constants import USER_HEADER
from ..exceptions import AlarmCommandError
from ..models.alarms import (
    MAX_COMMAND_ALARMS,
    Alarm,
    AlarmCommand,
    AlarmSettings,
    CommandKind,
    DisplayState,
    RuleState,
    Silence,
    SilenceState,
)
from ..models.api import CommandBody, SilenceBody, alarm_json, silence_json
from ..models.patterns import compile_pattern
from ..models.records import utcnow
from ..models.rules import RuleSet
from ..services.alarms import machine as alarm_machine
from ..services.alarms.view import AlarmView, TopicView
from .board import ActionsOf, Board
from .openapi import openapi_document
from .rules import RuleStatesApi, SaveRuleState

__all__ = ["AlarmApi", "names_matching", "user_middleware"]

logger = structlog.get_logger("catcher")

USER = web.RequestKey("user", str)
"""The request's user, set by :func:`user_middleware`."""

PROBE_PATHS = frozenset({"/health", "/ready", "/status", "/metrics"})
"""Paths answered without a user: probes and metrics, at the root whatever the API's prefix."""

SendCommand = Callable[[list[AlarmCommand]], Awaitable[None]]
"""Write the commands of one request durably, as a whole (one record)."""
SaveSilence = Callable[[Silence], Awaitable[None]]


_NEEDS: dict[CommandKind, tuple[str, ...]] = {
    CommandKind.acknowledge: ("severity",),
    CommandKind.mute: ("severity", "duration"),
    CommandKind.unacknowledge: (),
    CommandKind.unmute: (),
}


class _Problem(Exception):  # noqa: N818 - carries an error answer out of request parsing
    def __init__(self, response: web.Response) -> None:
        super().__init__(response.status)
        self.response = response


def _errors(exc: ValidationError) -> list[dict[str, Any]]:
    return [
        {"loc": ["body", *e["loc"]], "msg": e["msg"], "type": e["type"]}
        for e in exc.errors(include_url=False, include_input=False)
    ]


def _problem(status: int, detail: Any) -> web.Response:
    return web.json_response({"detail": detail}, status=status)


def _field_error(field: str, message: str) -> web.Response:
    return _problem(422, [{"loc": ["body", field], "msg": message, "type": "value_error"}])


MAX_USER_LENGTH = 256


def _bad_user(user: str) -> str:
    """Why a user name cannot be recorded, or an empty string."""
    try:
        user.encode()
    except UnicodeEncodeError:
        return "the user name is not UTF-8"
    control = any(unicodedata.category(c) == "Cc" for c in user)
    if len(user) > MAX_USER_LENGTH or control or user != user.strip():
        return (
            f"a user name is text of at most {MAX_USER_LENGTH} characters, without control"
            " characters or surrounding spaces"
        )
    return ""


def user_middleware(anonymous_user: str | None, prefix: str = "") -> Any:
    """Answers 401 to a request without a user, but on the probes and the API's description.

    The user is Gafaelfawr's header, or the anonymous user for local use; handlers read it
    as ``request[USER]``.
    """
    open_paths = PROBE_PATHS | {f"{prefix}/openapi.json"}

    @web.middleware
    async def middleware(
        request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        if request.path in open_paths:
            return await handler(request)
        user = request.headers.get(USER_HEADER) or anonymous_user
        if not user:
            return _problem(401, f"No {USER_HEADER} header: log in through Gafaelfawr.")
        problem = _bad_user(user)
        if problem:
            return _problem(400, [{"loc": ["header", USER_HEADER], "msg": problem}])
        request[USER] = user
        return await handler(request)

    return middleware


def names_matching(regex: Any, names: list[str]) -> list[str]:
    """The names a command's pattern names, matched from their start as the Watcher does.

    The Watcher's commands use ``re.match``; a pattern ending with ``$`` names whole names.
    """
    return [name for name in names if regex.match(name) is not None]


class AlarmApi:
    """Routes of the alarm API, under ``prefix`` (the ingress path, e.g. ``/catcher``)."""

    def __init__(
        self,
        view: AlarmView,
        send: SendCommand,
        *,
        silences: TopicView[Silence],
        save_silence: SaveSilence,
        prefix: str = "",
        rules: RuleSet | None = None,
        rule_states: TopicView[RuleState] | None = None,
        save_rule_state: SaveRuleState | None = None,
        frame_ancestors: str = "'self'",
        actions_of: ActionsOf | None = None,
    ) -> None:
        self.prefix = prefix
        self._board = Board(view, silences, frame_ancestors, actions_of)
        self._rule_states = (
            RuleStatesApi(rules, rule_states, save_rule_state, USER)
            if rules is not None and rule_states is not None and save_rule_state is not None
            else None
        )
        self._view = view
        self._send = send
        self._silences = silences
        self._save_silence = save_silence

    def routes(self) -> list[web.RouteDef]:
        """The routes, for the worker's web application."""
        at = self.prefix
        return [
            web.get(f"{at}/alarms", self.list_alarms),
            web.get(f"{at}/alarms/{{name}}", self.show_alarm),
            web.post(f"{at}/alarms/{{command}}", self.command),
            web.get(f"{at}/silences", self.list_silences),
            web.post(f"{at}/silences", self.add_silence),
            web.delete(f"{at}/silences/{{id}}", self.expire_silence),
            web.get(f"{at}/openapi.json", self.openapi),
            *(self._rule_states.routes(at) if self._rule_states is not None else []),
            *self._board.routes(at),
        ]

    async def list_alarms(self, request: web.Request) -> web.Response:
        """``GET /alarms?state=&rule=&name=``."""
        state = request.query.get("state")
        if state is not None and state not in {s.value for s in DisplayState}:
            choices = ", ".join(s.value for s in DisplayState)
            return _problem(422, [{"loc": ["query", "state"], "msg": f"one of {choices}"}])
        rule = request.query.get("rule")
        pattern = request.query.get("name")
        try:
            regex = compile_pattern(pattern) if pattern else None
        except ValueError as exc:
            return _problem(422, [{"loc": ["query", "name"], "msg": str(exc)}])
        alarms = [
            alarm_json(a)
            for a in sorted(self._view.alarms.values(), key=lambda a: a.name)
            if (state is None or a.display_state.value == state)
            and (rule is None or a.rule_id == rule)
            and (regex is None or regex.fullmatch(a.name) is not None)
        ]
        return web.json_response({"alarms": alarms})

    async def show_alarm(self, request: web.Request) -> web.Response:
        """``GET /alarms/{name}``."""
        alarm = self._view.alarms.get(request.match_info["name"])
        if alarm is None:
            return _problem(404, f"No alarm named {request.match_info['name']!r}.")
        return web.json_response(alarm_json(alarm))

    async def command(self, request: web.Request) -> web.Response:
        """``POST /alarms/{acknowledge|unacknowledge|mute|unmute}``."""
        try:
            user, kind, body, regex = await self._parse(request)
        except _Problem as problem:
            return problem.response
        alarms = self._view.alarms
        matched = [alarms[n] for n in names_matching(regex, sorted(alarms))]
        if not matched:
            return _problem(404, f"No alarm matches {body.name!r}.")
        if len(matched) > MAX_COMMAND_ALARMS:
            return _field_error(
                "name",
                f"{len(matched)} alarms match; one command names at most {MAX_COMMAND_ALARMS}",
            )
        refused = [
            {"name": alarm.name, "reason": reason}
            for alarm in matched
            if (reason := _refusal(kind, body, alarm))
        ]
        if refused:  # all or nothing: one alarm that cannot take it, and none is sent
            logger.info("Refused alarm commands", command=kind.value, user=user, refused=refused)
            return web.json_response(
                {"command": kind.value, "alarms": [], "refused": refused}, status=409
            )
        await self._send([_command(kind, body, alarm, user) for alarm in matched])
        sent = [alarm.name for alarm in matched]
        logger.info("Sent alarm commands", command=kind.value, user=user, alarms=sent)
        return web.json_response(
            {"command": kind.value, "alarms": sent, "refused": []}, status=202
        )

    async def _parse(self, request: web.Request) -> tuple[str, CommandKind, CommandBody, Any]:
        user = request[USER]
        try:
            kind = CommandKind(request.match_info["command"])
        except ValueError:
            choices = ", ".join(k.value for k in CommandKind)
            raise _Problem(_problem(404, f"No such command; use one of {choices}.")) from None
        try:
            body = CommandBody.model_validate(json.loads(await request.read() or b"{}"))
        except ValidationError as exc:
            raise _Problem(_problem(422, _errors(exc))) from None
        except ValueError:
            raise _Problem(_problem(422, [{"loc": ["body"], "msg": "not JSON"}])) from None
        for field in _NEEDS[kind]:
            if getattr(body, field) is None:
                raise _Problem(_field_error(field, f"{kind.value} needs a {field}"))
        return user, kind, body, compile_pattern(body.name)  # checked by the body's model

    async def list_silences(self, request: web.Request) -> web.Response:
        """``GET /silences?state=pending|active|expired``."""
        now = utcnow()
        state = request.query.get("state")
        if state is not None and state not in {s.value for s in SilenceState}:
            choices = ", ".join(s.value for s in SilenceState)
            return _problem(422, [{"loc": ["query", "state"], "msg": f"one of {choices}"}])
        silences = [
            silence_json(s, now)
            for s in sorted(self._silences.values.values(), key=lambda s: s.starts_at)
            if state is None or s.state(now).value == state
        ]
        return web.json_response({"silences": silences})

    async def add_silence(self, request: web.Request) -> web.Response:
        """``POST /silences``: a new silence (answered 201 with it)."""
        user = request[USER]
        now = utcnow()
        try:
            silence = _new_silence(await request.read(), user, now)
        except _Problem as problem:
            return problem.response
        await self._save_silence(silence)
        self._silences.values[silence.id] = silence  # visible here at once
        logger.info("Created a silence", silence=silence.id, user=user, comment=silence.comment)
        return web.json_response(silence_json(silence, now), status=201)

    async def expire_silence(self, request: web.Request) -> web.Response:
        """``DELETE /silences/{id}``: end a silence now."""
        user = request[USER]
        silence = self._silences.values.get(request.match_info["id"])
        if silence is None:
            return _problem(404, f"No silence {request.match_info['id']!r}.")
        now = utcnow()
        if silence.state(now) == SilenceState.expired:
            return _problem(409, f"Silence {silence.id} has already expired.")
        expired = silence.model_copy(update={"expired_at": now})
        await self._save_silence(expired)
        self._silences.values[expired.id] = expired
        logger.info("Expired a silence", silence=silence.id, user=user)
        return web.json_response(silence_json(expired, now))

    async def openapi(self, _request: web.Request) -> web.Response:
        """The OpenAPI document."""
        return web.json_response(openapi_document(self.prefix))


def _new_silence(data: bytes, user: str, now: datetime) -> Silence:
    try:
        body = SilenceBody.model_validate(json.loads(data or b"{}"))
    except ValidationError as exc:
        raise _Problem(_problem(422, _errors(exc))) from None
    except ValueError:
        raise _Problem(_problem(422, [{"loc": ["body"], "msg": "not JSON"}])) from None
    starts = body.starts_at or now
    if body.ends_at is None and body.duration is None:
        raise _Problem(_field_error("duration", "give duration or ends_at"))
    ends = body.ends_at or starts + (body.duration or timedelta(0))
    if ends <= max(starts, now):
        raise _Problem(_field_error("ends_at", "the silence must end after it starts and now"))
    try:
        return Silence(
            name=body.name,
            tags=body.tags,
            starts_at=starts,
            ends_at=ends,
            comment=body.comment,
            created_by=user,
            created_at=now,
        )
    except ValidationError as exc:
        raise _Problem(_problem(422, _errors(exc))) from None


def _refusal(kind: CommandKind, body: CommandBody, alarm: Alarm) -> str:
    """Why the alarm's owner would refuse the command, by a dry run of the alarm machine.

    Only an acknowledgement below the maximum severity is refused; the rule's settings do
    not change that, so the machine's defaults serve.
    """
    if kind != CommandKind.acknowledge or body.severity is None:
        return ""
    try:
        alarm_machine.acknowledge(alarm, body.severity, "api", utcnow(), AlarmSettings())
    except AlarmCommandError as exc:
        return str(exc).removeprefix(f"{alarm.name}: ")
    return ""


def _command(kind: CommandKind, body: CommandBody, alarm: Alarm, user: str) -> AlarmCommand:
    return AlarmCommand(
        command=kind,
        name=alarm.name,
        rule_id=alarm.rule_id,
        tags=alarm.tags,
        user=user,
        severity=body.severity,
        duration=body.duration,
        comment=body.comment,
        command_id=str(uuid.uuid4()),
        time=utcnow(),
    )
