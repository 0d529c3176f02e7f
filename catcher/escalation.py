"""Paging a responder: SquadCast-compatible incidents for unacknowledged CRITICAL alarms.

``POST {CATCHER_ESCALATION_URL}/v2/incidents/api/{key}`` with
``{"status": "trigger", "event_id", "message", "description", "tags": {...}}``, answered
202; resolved with ``{"status": "resolve", "event_id"}`` (external-apis.md §6). The
``event_id`` is derived from the alarm and its escalation, so sending again after a crash
names the same incident, which SquadCast deduplicates.
"""

from __future__ import annotations

import httpx

from .exceptions import EscalationError, is_retryable_status
from .models.alarms import Alarm
from .redact import brief

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
        try:
            response = await self._http.post(self._endpoint, json=body, timeout=30)
        except httpx.HTTPError as exc:
            raise EscalationError(
                f"{type(exc).__name__}: {brief(str(exc))}".rstrip(": "), retry=True
            ) from None
        if response.status_code == httpx.codes.ACCEPTED:
            return
        raise EscalationError(
            f"HTTP {response.status_code}: {brief(response.text)}",
            retry=is_retryable_status(response.status_code),
        )
