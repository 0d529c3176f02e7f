"""The worker's operations endpoints and its HTTP server.

``/health`` answers while the process runs; ``/ready`` answers 503 with the reason until
partitions are assigned and the tables recovered; ``/metrics`` is Prometheus' text. The
server starts before the group join, so that the probes answer while the worker recovers.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

import structlog
from aiohttp import web

from ..metrics import METRICS
from ..models.alarms import Alarm, DisplayState
from ..storage.ledger import Ledger

__all__ = ["HttpServer", "consumer_lag", "operations_routes", "register_gauges"]

logger = structlog.get_logger("catcher")


def operations_routes(not_ready: Callable[[], str]) -> list[web.RouteDef]:
    """``/health``, ``/ready`` (``not_ready`` says why not, or "") and ``/metrics``."""

    async def health(_request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def ready(_request: web.Request) -> web.Response:
        reason = not_ready()
        if reason:
            return web.json_response({"ready": False, "reason": reason}, status=503)
        return web.json_response({"ready": True})

    async def metrics(_request: web.Request) -> web.Response:
        return web.Response(body=METRICS.render(), content_type="text/plain", charset="utf-8")

    return [web.get("/health", health), web.get("/ready", ready), web.get("/metrics", metrics)]


class HttpServer:
    """One aiohttp server on every interface; the port may be 0 (one is chosen)."""

    def __init__(
        self, routes: Iterable[web.RouteDef], middlewares: Iterable[Any], port: int
    ) -> None:
        self._app = web.Application(middlewares=list(middlewares))
        self._app.add_routes(list(routes))
        self._runner: web.AppRunner | None = None
        self.port = port

    async def start(self) -> bool:
        """Serve; False (and a log line) when the port cannot be had: the worker goes on."""
        self._runner = web.AppRunner(self._app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "0.0.0.0", self.port)  # noqa: S104 - in a pod
        try:
            await site.start()
        except OSError as exc:  # alarms and actions go on without the API
            logger.error(  # noqa: TRY400 - the reason is enough, no traceback
                "Cannot serve the HTTP API", port=self.port, error=str(exc)
            )
            return False
        server = site._server  # noqa: SLF001 - the port chosen when the port is 0
        sockets = getattr(server, "sockets", None) or []
        self.port = sockets[0].getsockname()[1] if sockets else self.port
        logger.info("Serving the HTTP API", port=self.port)
        return True

    async def stop(self) -> None:
        """Stop serving (answers in progress are finished)."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None


def register_gauges(
    ledger: Ledger,
    alarms: Callable[[], Mapping[str, Alarm]],
    lag: Callable[[], dict[tuple[str, ...], float]],
) -> None:
    """The worker's gauges: ledger sizes, alarms by display state, consumer lag."""
    METRICS.gauge(
        "catcher_ledger_entries",
        "Ledger entries this worker holds.",
        lambda: {(): float(ledger.sizes()[0])},
    )
    METRICS.gauge(
        "catcher_unfinished_actions",
        "Actions this worker holds that have not finished.",
        lambda: {(): float(ledger.sizes()[1])},
    )

    def alarm_counts() -> dict[tuple[str, ...], float]:
        counts: dict[tuple[str, ...], float] = {(s.value,): 0.0 for s in DisplayState}
        for alarm in list(alarms().values()):
            counts[(alarm.display_state.value,)] += 1
        return counts

    METRICS.gauge(
        "catcher_alarms",
        "Alarms by display state (from the alarms topic).",
        alarm_counts,
        labels=("state",),
    )
    METRICS.gauge(
        "catcher_consumer_lag",
        "Records not yet read, by topic and partition.",
        lag,
        labels=("topic", "partition"),
    )


def consumer_lag(consumer: Any, topics: set[str]) -> dict[tuple[str, ...], float]:
    """Records of ``topics`` that Faust's consumer has not read yet, by topic and partition."""
    lags: dict[tuple[str, ...], float] = {}
    for tp in list(consumer.assignment()):
        if tp.topic not in topics:
            continue
        try:
            end = consumer.highwater(tp)
        except Exception:  # noqa: BLE001, S112 - no fetch yet: no figure
            continue
        read = consumer._read_offset.get(tp)  # noqa: SLF001 - Faust keeps no public one
        done = read + 1 if read is not None else consumer._committed_offset.get(tp) or 0  # noqa: SLF001
        if end is not None:
            lags[(tp.topic, str(tp.partition))] = float(max(end - done, 0))
    return lags
