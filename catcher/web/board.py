"""The operator page: an alarm board served by the worker, under the API's path.

LOVE's alarm views take only the Watcher's alarms, so the worker serves its own page: the
alarms as the Watcher's panel groups them, the commands with a comment and a duration,
and the silences. It is three files of this package (no CDN), behind the same user header
as the API, and follows the alarm and silence views through server-sent events, so a
change shows without a reload. Its Content-Security-Policy admits only the worker's own
files; ``frame-ancestors`` (``CATCHER_FRAME_ANCESTORS``) says which pages may embed it,
such as LOVE's ``EmbeddedView`` on the same host.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Awaitable, Callable
from importlib import resources
from typing import Any

import structlog
from aiohttp import web

from ..models.api import alarm_json, silence_json
from ..models.records import utcnow
from ..redact import brief
from ..services.alarms.view import AlarmView, TopicView

__all__ = ["Board"]

logger = structlog.get_logger("catcher")

FILES = {"page.js": "text/javascript", "page.css": "text/css"}
ActionsOf = Callable[[str, dict[str, str]], Awaitable[list[dict[str, Any]]]]
"""The latest state of each action the triggers of a rule's series started (recent ones)."""
KEEPALIVE = 15.0
"""Seconds between two comments on an idle event stream (proxies close silent streams)."""


def _file(name: str) -> bytes:
    return resources.files("catcher.web").joinpath("page", name).read_bytes()


class Board:
    """``{prefix}/`` (the page), ``{prefix}/static/{file}`` and ``{prefix}/events``."""

    def __init__(
        self,
        view: AlarmView,
        silences: TopicView[Any],
        frame_ancestors: str = "'self'",
        actions_of: ActionsOf | None = None,
    ) -> None:
        self._actions_of = actions_of
        self._view = view
        self._silences = silences
        self._changed = asyncio.Condition()
        self._version = 0
        self._csp = (
            "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self';"
            " img-src 'self'; base-uri 'none'; form-action 'self';"
            f" frame-ancestors {frame_ancestors}"
        )
        view.on_change(self.changed)
        silences.on_change(self.changed)

    def changed(self) -> None:
        """The alarms or the silences changed (called by the views; never blocks)."""
        self._version += 1
        asyncio.get_running_loop().create_task(self._notify())

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    def routes(self, prefix: str) -> list[web.RouteDef]:
        """The page's routes under the API's prefix."""
        return [
            web.get(f"{prefix}/", self.page),
            web.get(f"{prefix}/static/{{file}}", self.static),
            web.get(f"{prefix}/events", self.events),
            web.get(f"{prefix}/history/{{name}}", self.history),
        ]

    def _headers(self) -> dict[str, str]:
        return {
            "Content-Security-Policy": self._csp,
            "X-Content-Type-Options": "nosniff",
            "Cache-Control": "no-store",
        }

    async def page(self, _request: web.Request) -> web.Response:
        """The board."""
        return web.Response(
            body=_file("index.html"), content_type="text/html", headers=self._headers()
        )

    async def static(self, request: web.Request) -> web.Response:
        """The page's script and style sheet (nothing else is served from here)."""
        name = request.match_info["file"]
        if name not in FILES:
            raise web.HTTPNotFound
        return web.Response(body=_file(name), content_type=FILES[name], headers=self._headers())

    def _state(self, user: str) -> str:
        now = utcnow()
        alarms = [alarm_json(a) for a in sorted(self._view.alarms.values(), key=lambda a: a.name)]
        silences = sorted(self._silences.values.values(), key=lambda s: s.starts_at)
        data = {
            "user": user,
            "alarms": alarms,
            "silences": [silence_json(s, now) for s in silences],
        }
        return json.dumps(data, allow_nan=False)

    async def history(self, request: web.Request) -> web.Response:
        """An alarm's recent changes (as this worker read them) and its series' actions."""
        name = request.match_info["name"]
        alarm = self._view.alarms.get(name)
        if alarm is None:
            return web.json_response({"detail": f"No alarm named {name!r}."}, status=404)
        changes = list(reversed(self._view.recent.get(name, ())))
        actions: list[dict[str, Any]] = []
        problem = ""
        if self._actions_of is not None:
            try:
                actions = await self._actions_of(alarm.rule_id, alarm.tags)
            except Exception as exc:  # noqa: BLE001 - the changes are still worth showing
                problem = f"The action history could not be read: {brief(str(exc))}"
        body = {"name": name, "changes": changes, "actions": actions, "problem": problem}
        return web.json_response(body, headers=self._headers())

    async def events(self, request: web.Request) -> web.StreamResponse:
        """Server-sent events: the whole state on connect and after each change."""
        from .alarms import USER  # noqa: PLC0415 - the API's request key, set by its middleware

        response = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", "Cache-Control": "no-store"}
        )
        await response.prepare(request)
        user = request[USER]
        seen = -1
        with contextlib.suppress(ConnectionResetError, asyncio.CancelledError):
            while True:
                if seen != self._version:
                    seen = self._version
                    await response.write(f"event: state\ndata: {self._state(user)}\n\n".encode())
                async with self._changed:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._changed.wait(), KEEPALIVE)
                if seen == self._version:
                    await response.write(b": keepalive\n\n")
        return response
