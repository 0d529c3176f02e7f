"""A fake LOVE-manager: the producer websocket of ``manager/ws/subscription``.

Faithful to what a producer meets (external-apis.md §5): a wrong ``password`` query
parameter is refused before the socket is accepted; every message is recorded (and its
text); a producer joins the ``initial_state`` groups it subscribes to, and the fake asks
for an ``initial_state`` only the producers in the group a client's subscription reaches
(``initial_state-<csc>-all-all``, or ``initial_state-all-all-all`` as a manager in
``LOVE_PRODUCER_LEGACY`` mode does); it can drop every connection.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field
from typing import Any, Self

from aiohttp import WSMsgType, web

__all__ = ["FakeLoveManager"]

PATH = "/love/manager/ws/subscription"


@dataclass
class FakeLoveManager:
    """Records what producers send; refuses a wrong password."""

    password: str = "love-producer-pass"
    host: str = "127.0.0.1"
    port: int = 0
    messages: list[dict[str, Any]] = field(default_factory=list)
    arrived: list[float] = field(default_factory=list)
    """When each message arrived (UNIX seconds), beside ``messages``."""
    connections: int = 0
    refused: int = 0
    texts: list[str] = field(default_factory=list)
    """Every message's text as sent, beside ``messages``."""
    _sockets: list[web.WebSocketResponse] = field(default_factory=list)
    _groups: dict[int, set[str]] = field(default_factory=dict)
    _runner: web.AppRunner | None = None
    _arrived: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def url(self) -> str:
        """The producer URL, without the password."""
        return f"ws://{self.host}:{self.port}{PATH}"

    async def start(self) -> Self:
        """Listen on loopback."""
        app = web.Application()
        app.add_routes([web.get(PATH, self._socket)])
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port, shutdown_timeout=1)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]  # noqa: SLF001
        return self

    async def stop(self) -> None:
        """Close the connections and stop listening."""
        await self.drop()
        if self._runner is not None:
            await self._runner.cleanup()

    async def _socket(self, request: web.Request) -> web.StreamResponse:
        if request.query.get("password") != self.password:
            self.refused += 1
            return web.Response(status=403, text="wrong password")
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        self.connections += 1
        self._sockets.append(ws)
        try:
            async for message in ws:
                if message.type != WSMsgType.TEXT:
                    continue
                data = json.loads(message.data)
                self.messages.append(data)
                self.texts.append(message.data)
                self.arrived.append(time.time())
                self._arrived.set()
                if data.get("option") == "subscribe":
                    group = "-".join(
                        str(data.get(k)) for k in ("category", "csc", "salindex", "stream")
                    )
                    self._groups.setdefault(id(ws), set()).add(group)
        finally:
            self._groups.pop(id(ws), None)
            if ws in self._sockets:
                self._sockets.remove(ws)
        return ws

    async def drop(self) -> None:
        """Close every producer connection, as a manager restart does."""
        for ws in list(self._sockets):
            await ws.close()
        self._sockets.clear()

    async def ask_initial_state(
        self, csc: str = "Catcher", stream: str = "stream", *, legacy: bool = False
    ) -> int:
        """What the manager sends when a client subscribes to a stream; producers asked."""
        message = {
            "category": "initial_state",
            "data": [{"csc": csc, "salindex": 0, "data": {"event_name": stream}}],
        }
        group = "initial_state-all-all-all" if legacy else f"initial_state-{csc}-all-all"
        asked = [ws for ws in list(self._sockets) if group in self._groups.get(id(ws), set())]
        for ws in asked:
            await ws.send_json(message)
        return len(asked)

    def alarm_maps(self) -> list[dict[str, Any]]:
        """Every alarm map sent as csc ``Catcher`` stream ``stream``, in order."""
        return [
            item["data"]["stream"]["alarms"]
            for message in self.messages
            for item in message.get("data") or []
            if item.get("csc") == "Catcher"
            and "alarms" in (item.get("data") or {}).get("stream", {})
        ]

    def heartbeats(self) -> list[dict[str, Any]]:
        """Every heartbeat sent (csc ``Heartbeat``)."""
        return [
            item["data"]["stream"]
            for message in self.messages
            for item in message.get("data") or []
            if item.get("csc") == "Heartbeat"
        ]

    def subscriptions(self) -> list[dict[str, Any]]:
        """Every ``initial_state`` subscription the producers sent."""
        return [m for m in self.messages if m.get("option") == "subscribe"]
