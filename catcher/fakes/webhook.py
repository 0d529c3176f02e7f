"""A fake webhook receiver (as a Slack incoming webhook answers: 200 ``ok``)."""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp import web

from .base import FakeService

__all__ = ["FakeWebhook"]


@dataclass
class FakeWebhook(FakeService):
    """Accepts POSTs of JSON on any path and records them."""

    def routes(self) -> list[web.RouteDef]:
        """Any path."""
        return [web.post("/{tail:.*}", self._receive)]

    async def _receive(self, request: web.Request) -> web.Response:
        try:
            await request.json()
        except ValueError:
            return web.Response(status=400, text="invalid_payload")
        return web.Response(text="ok")

    def bodies(self, path_prefix: str = "/") -> list[object]:
        """JSON bodies of the POSTs received on a path prefix."""
        return [
            r.json()
            for r in self.requests
            if r.method == "POST" and r.path.startswith(path_prefix)
        ]
