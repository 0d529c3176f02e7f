"""A fake SquadCast incident webhook (``POST /v2/incidents/api/{key}``, 202 when accepted).

Like SquadCast, it deduplicates by ``event_id``: a second ``trigger`` with the same id is
the same incident. It records every request, so tests count POSTs and incidents exactly.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from .base import FakeService

__all__ = ["FakeSquadCast"]


@dataclass
class FakeSquadCast(FakeService):
    """Incidents by event_id, with their status."""

    key: str = "squadcast-key-0123"
    incidents: dict[str, dict[str, Any]] = field(default_factory=dict)

    def routes(self) -> list[web.RouteDef]:
        """The incident webhook."""
        return [web.post("/v2/incidents/api/{key}", self._incident)]

    async def _incident(self, request: web.Request) -> web.Response:
        if request.match_info["key"] != self.key:
            return web.json_response({"message": "invalid key"}, status=401)
        try:
            body = await request.json()
        except ValueError:
            return web.json_response({"message": "invalid JSON"}, status=400)
        event_id = body.get("event_id") if isinstance(body, dict) else None
        status = body.get("status") if isinstance(body, dict) else None
        if not event_id or status not in ("trigger", "resolve"):
            return web.json_response({"message": "event_id and status needed"}, status=400)
        if status == "trigger":
            self.incidents.setdefault(event_id, {**body, "resolved": False})
        elif event_id in self.incidents:
            self.incidents[event_id]["resolved"] = True
        return web.json_response({"message": "accepted"}, status=202)

    def posts(self, status: str) -> list[dict[str, Any]]:
        """Bodies of the POSTs with this status (trigger or resolve), in order."""
        return [
            body
            for r in self.requests
            if r.method == "POST"
            and isinstance(body := _json(r.body), dict)
            and body.get("status") == status
        ]


def _json(data: bytes) -> Any:
    try:
        return json.loads(data)
    except ValueError:
        return None
