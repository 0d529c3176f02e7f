"""The LOVE producer: Catcher's alarms as csc ``Catcher`` on LOVE-manager's websocket.

What LOVE expects of a producer (external-apis.md §5): connect to
``.../manager/ws/subscription?password=...``; send the whole alarm map as an ordinary data
message (``category: event``, csc ``Catcher``, salindex 0, stream ``stream`` holding
``{"alarms": {name: {field: {value, dataType, units}}}}``, severities 1 to 4, TAI
timestamps) after every change, on (re)connect and when the manager asks for the stream's
``initial_state``; subscribe to ``initial_state`` on connect and every 60 s, both to the
group of csc ``Catcher`` and to ``initial_state-all-all-all`` (a manager in
``LOVE_PRODUCER_LEGACY`` mode asks that one), as LOVE-producer does; send a heartbeat every
2 s as a data message of csc ``Heartbeat``. Catcher never poses as the Watcher: the
Watcher panel would send its buttons' commands to the Watcher CSC.

The frontend rewrites every ``NaN`` and ``Infinity`` in a message's text before it parses
it, so those words are written with a JSON escape (``\u004eaN``) wherever they occur in a
name or a reason; numbers are always finite.

The producer runs in its own task and only reads the alarm view: a slow or absent LOVE
never holds up alarm processing. It reconnects at once, then every 3 s, as LOVE's own
producers do, so it is back within 3 s of LOVE's return.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

import aiohttp
import structlog

from ...models.alarms import Alarm
from ...redact import brief

__all__ = [
    "CSC",
    "TAI_MINUS_UTC",
    "LoveProducer",
    "alarm_map",
    "love_alarm",
    "love_json",
    "reconnect_delay",
]

logger = structlog.get_logger("catcher")

CSC = "Catcher"
STREAM = "stream"
TAI_MINUS_UTC = 37.0
"""Seconds TAI is ahead of UTC (since 2017; LOVE shows TAI unix seconds)."""
HEARTBEAT_INTERVAL = 2.0
SUBSCRIBE_INTERVAL = 60.0
RECONNECT_DELAYS = (0.5, 1.0, 2.0, 3.0)
"""Seconds between connection attempts; the last repeats (LOVE-producer retries every 3 s)."""


def love_json(message: dict[str, Any]) -> str:
    """A message's text, safe from the frontend's NaN/Infinity rewrite.

    ``allow_nan=False``: no NaN or Infinity number is ever written. The words inside
    strings get a JSON escape, which parses back to the same text.
    """
    text = json.dumps(message, allow_nan=False)
    return text.replace("NaN", "\\u004eaN").replace("Infinity", "\\u0049nfinity")


def _tai(time_: datetime | None) -> float:
    return time_.timestamp() + TAI_MINUS_UTC if time_ is not None else 0.0


def _field(value: Any, data_type: str, units: str = "unitless") -> dict[str, Any]:
    return {"value": value, "dataType": data_type, "units": units}


def love_alarm(alarm: Alarm) -> dict[str, dict[str, Any]]:
    """One alarm as the Watcher's ``alarm`` event fields, each ``{value, dataType, units}``."""
    times = {
        "timestampSeverityOldest": alarm.severity_oldest,
        "timestampSeverityNewest": alarm.severity_newest,
        "timestampMaxSeverity": alarm.max_severity_time,
        "timestampAcknowledged": alarm.acknowledged_time,
        "timestampAutoAcknowledge": alarm.auto_acknowledge_at,
        "timestampAutoUnacknowledge": alarm.auto_unacknowledge_at,
        "timestampEscalate": alarm.escalate_at,
        "timestampUnmute": alarm.unmute_at,
    }
    return {
        "name": _field(alarm.name, "String"),
        "severity": _field(int(alarm.severity), "Int"),
        "maxSeverity": _field(int(alarm.max_severity), "Int"),
        "reason": _field(alarm.reason, "String"),
        "acknowledged": _field(alarm.acknowledged, "Boolean"),
        "acknowledgedBy": _field(alarm.acknowledged_by, "String"),
        "mutedSeverity": _field(int(alarm.muted_severity), "Int"),
        "mutedBy": _field(alarm.muted_by, "String"),
        "escalateTo": _field(alarm.escalate_to, "String"),
        "escalatedId": _field(alarm.escalated_id, "String"),
        # What LOVE's alarm detail panel reads:
        "escalated": _field(alarm.paged, "Boolean"),
        "escalatedTo": _field(alarm.escalate_to if alarm.paged else "", "String"),
        **{key: _field(_tai(value), "Float", "second") for key, value in times.items()},
    }


def alarm_map(alarms: dict[str, Alarm]) -> dict[str, Any]:
    """The data message carrying the whole alarm map."""
    return {
        "category": "event",
        "data": [
            {
                "csc": CSC,
                "salindex": 0,
                "data": {
                    STREAM: {"alarms": {n: love_alarm(a) for n, a in sorted(alarms.items())}}
                },
            }
        ],
        "producer_snd": time.time(),
    }


def heartbeat() -> dict[str, Any]:
    """The producer's heartbeat: an ordinary data message of csc ``Heartbeat``."""
    now = time.time()
    return {
        "category": "event",
        "data": [
            {
                "csc": "Heartbeat",
                "salindex": 0,
                "data": {
                    STREAM: {
                        "csc": CSC,
                        "salindex": 0,
                        "lost": 0,
                        "last_heartbeat_timestamp": now,
                        "max_lost_heartbeats": 5,
                    }
                },
            }
        ],
        "producer_snd": now,
    }


SUBSCRIPTIONS = [
    {
        "option": "subscribe",
        "category": "initial_state",
        "csc": csc,
        "salindex": "all",
        "stream": "all",
    }
    for csc in (CSC, "all")
]
"""``initial_state-Catcher-all-all`` and the legacy manager's ``initial_state-all-all-all``."""


def _asks_for_our_stream(message: Any) -> bool:
    """Whether a manager message asks for the initial state of Catcher's stream."""
    if not isinstance(message, dict) or message.get("category") != "initial_state":
        return False
    for item in message.get("data") or []:
        if not isinstance(item, dict) or item.get("csc") != CSC:
            continue
        wanted = item.get("data") or item.get("stream") or {}
        if isinstance(wanted, dict) and wanted.get("event_name") in (STREAM, "all"):
            return True
    return False


def reconnect_delay(failures: int) -> float:
    """Seconds before the next attempt after ``failures`` failed ones in a row (0: a drop)."""
    return RECONNECT_DELAYS[min(failures, len(RECONNECT_DELAYS) - 1)]


class LoveProducer:
    """Keeps LOVE's copy of the alarm map current."""

    def __init__(
        self,
        url: str,
        password: str,
        alarms: Callable[[], dict[str, Alarm]],
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._sleep = sleep
        self._url = url
        self._password = password
        self._alarms = alarms
        self._changed = asyncio.Event()
        self.sent_maps = 0

    def changed(self) -> None:
        """The alarm map changed (called by the view; never blocks)."""
        self._changed.set()

    async def run(self) -> None:
        """Connect, send, and reconnect (at once after a drop, then every 3 s) until cancelled."""
        failures = 0
        while True:
            try:
                await self._session()
                failures = 0
            except asyncio.CancelledError:
                raise
            except (aiohttp.ClientError, OSError, TimeoutError) as exc:
                failures += 1
                logger.warning(
                    "LOVE connection failed; will reconnect",
                    url=self._url,
                    error=brief(str(exc)) or type(exc).__name__,
                    delay=reconnect_delay(failures),
                )
            await self._sleep(reconnect_delay(failures))

    async def _session(self) -> None:
        timeout = aiohttp.ClientTimeout(total=None, connect=10)
        async with (
            aiohttp.ClientSession(timeout=timeout) as session,
            session.ws_connect(self._url, params={"password": self._password}, heartbeat=30) as ws,
        ):
            logger.info("Connected to LOVE", url=self._url)
            await self._subscribe(ws)
            await self._send_map(ws)
            tasks = [
                asyncio.create_task(self._beat(ws)),
                asyncio.create_task(self._push(ws)),
                asyncio.create_task(self._resubscribe(ws)),
            ]
            try:
                async for message in ws:
                    if message.type == aiohttp.WSMsgType.TEXT:
                        with contextlib.suppress(ValueError):
                            if _asks_for_our_stream(json.loads(message.data)):
                                await self._send_map(ws)
                    elif message.type in (aiohttp.WSMsgType.ERROR, aiohttp.WSMsgType.CLOSED):
                        break
            finally:
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
            logger.warning("LOVE closed the connection", url=self._url)

    async def _send_map(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self._changed.clear()
        await ws.send_str(love_json(alarm_map(self._alarms())))
        self.sent_maps += 1

    async def _subscribe(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        for subscription in SUBSCRIPTIONS:
            await ws.send_json(subscription)

    async def _push(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        while True:
            await self._changed.wait()
            await self._send_map(ws)

    async def _beat(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        while True:
            await asyncio.sleep(HEARTBEAT_INTERVAL)
            await ws.send_str(love_json(heartbeat()))

    async def _resubscribe(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        while True:
            await asyncio.sleep(SUBSCRIBE_INTERVAL)
            await self._subscribe(ws)
