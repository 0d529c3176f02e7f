"""A recording, fault-injecting HTTP server on loopback."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Self

from aiohttp import web

__all__ = ["FakeService", "Fault", "RecordedRequest"]


@dataclass(frozen=True)
class RecordedRequest:
    """One request a fake received."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        """The body parsed as JSON."""
        return json.loads(self.body)


@dataclass
class Fault:
    """What to do instead of (or before) answering normally."""

    method: str | None
    path_prefix: str | None
    status: int | None = None
    body: str = ""
    delay: float = 0.0
    times: int = 1

    def matches(self, request: web.Request) -> bool:
        """Whether this fault applies to the request."""
        return (self.method is None or self.method == request.method) and (
            self.path_prefix is None or request.path.startswith(self.path_prefix)
        )


@dataclass
class FakeService:
    """Base of the fakes: start/stop, request log and fault injection."""

    host: str = "127.0.0.1"
    port: int = 0
    requests: list[RecordedRequest] = field(default_factory=list)
    _faults: list[Fault] = field(default_factory=list)
    _runner: web.AppRunner | None = None

    def routes(self) -> list[web.RouteDef]:
        """The service's routes; subclasses define them."""
        raise NotImplementedError

    @property
    def url(self) -> str:
        """Base URL of the running server."""
        return f"http://{self.host}:{self.port}"

    async def start(self) -> Self:
        """Start serving on loopback (port 0 picks a free port)."""
        app = web.Application(middlewares=[self._middleware])
        app.add_routes(self.routes())
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        # A request stalled on purpose must not hold up stopping the fake.
        site = web.TCPSite(self._runner, self.host, self.port, shutdown_timeout=1.0)
        await site.start()
        server = site._server  # noqa: SLF001 - the only way to learn the chosen port
        if server is not None and self.port == 0:
            sockets = getattr(server, "sockets", [])
            self.port = sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        """Stop serving."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> Self:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def inject(
        self,
        *,
        status: int | None = None,
        body: str = "",
        delay: float = 0.0,
        times: int = 1,
        method: str | None = None,
        path_prefix: str | None = None,
    ) -> None:
        """Make the next ``times`` matching requests wait ``delay`` s, then answer ``status``.

        With ``status`` None the request is answered normally after the delay (a slow
        answer, or a stall when the delay outlasts the client's timeout).
        """
        self._faults.append(Fault(method, path_prefix, status, body, delay, times))

    def count(self, method: str, path_prefix: str = "") -> int:
        """How many requests with this method and path prefix were received."""
        return sum(
            1 for r in self.requests if r.method == method and r.path.startswith(path_prefix)
        )

    @web.middleware
    async def _middleware(
        self,
        request: web.Request,
        handler: Callable[[web.Request], Awaitable[web.StreamResponse]],
    ) -> web.StreamResponse:
        body = await request.read()
        self.requests.append(
            RecordedRequest(
                request.method, request.path, dict(request.query), dict(request.headers), body
            )
        )
        fault = next((f for f in self._faults if f.matches(request)), None)
        if fault is not None:
            fault.times -= 1
            if fault.times <= 0:
                self._faults.remove(fault)
            if fault.delay:
                await asyncio.sleep(fault.delay)
            if fault.status is not None:
                return web.Response(status=fault.status, text=fault.body)
        return await handler(request)
