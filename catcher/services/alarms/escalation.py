"""Paging a responder: SquadCast-compatible incidents for unacknowledged CRITICAL alarms.

``POST {CATCHER_ESCALATION_URL}/v2/incidents/api/{key}`` with
``{"status": "trigger", "event_id", "message", "description", "tags": {...}}``, answered
202; resolved with ``{"status": "resolve", "event_id"}`` (external-apis.md §6). The
``event_id`` is derived from the alarm and its escalation, so sending again after a crash
names the same incident, which SquadCast deduplicates.

It calls the service as the executors do (:func:`catcher.actions.base.request`), so its
failures are :class:`~catcher.exceptions.ActionError` s, retryable by the same rule.
"""

from __future__ import annotations

import httpx

from ...actions.base import request
from ...models.alarms import Alarm

__all__ = ["Escalator"]


class Escalator:
    """Sends and resolves incidents."""

    def __init__(self, url: str, key: str, http: httpx.AsyncClient) -> None:
        self._endpoint = f"{url.rstrip('/')}/v2/incidents/api/{key}"
        self._http = http

    async def trigger(self, alarm: Alarm, event_id: str, responder: str) -> None:
        """Open the incident for an alarm."""
        await self._post(
            {
                "status": "trigger",
                "event_id": event_id,
                "message": f"Catcher alarm {alarm.name} is CRITICAL",
                "description": alarm.reason or f"{alarm.name} is CRITICAL and unacknowledged.",
                "tags": {"responder": responder, "alarm_name": alarm.name},
            }
        )

    async def resolve(self, event_id: str) -> None:
        """Resolve an incident opened before."""
        await self._post({"status": "resolve", "event_id": event_id})

    async def _post(self, body: dict[str, object]) -> None:
        await request(
            self._http,
            "SquadCast",
            "POST",
            self._endpoint,
            expect={httpx.codes.ACCEPTED},
            json=body,
            timeout=30,
        )
