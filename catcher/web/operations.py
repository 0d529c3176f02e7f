"""The worker's operations endpoints and its HTTP server.

``/ready`` (readiness) answers 200 once the API can answer: the alarms and silences are
read. It does not depend on partitions, so that a worker without any, or every worker
during a rebalance, keeps serving the API. ``/health`` (liveness) answers 503 when a
partition has had records waiting for ``CATCHER_STALL_TIMEOUT`` with none of them done (a
wedged consumer or agent); a wedged event loop answers nothing, which fails the probe as
well. ``/status`` says whether the worker does work: partitions assigned and tables
recovered. ``/metrics`` is Prometheus' text. The server starts before the group join, so
that the probes answer while the worker recovers.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import structlog
from aiohttp import web

from ..metrics import METRICS
from ..models.alarms import Alarm, DisplayState
from ..storage.ledger import Ledger

__all__ = [
    "HttpServer",
    "StallWatch",
    "WorkerProbes",
    "consumer_lag",
    "consumer_positions",
    "metrics_routes",
    "operations_routes",
    "register_gauges",
]

logger = structlog.get_logger("catcher")

Reason = Callable[[], str]
"""Why a probe fails, or an empty string."""


def metrics_routes() -> list[web.RouteDef]:
    """``/metrics``: Prometheus' text."""

    async def metrics(_request: web.Request) -> web.Response:
        return web.Response(body=METRICS.render(), content_type="text/plain", charset="utf-8")

    return [web.get("/metrics", metrics)]


def operations_routes(
    not_ready: Reason, not_working: Reason, stalled: Reason, *, metrics: bool = True
) -> list[web.RouteDef]:
    """``/health``, ``/ready``, ``/status`` and (with ``metrics``) ``/metrics``."""

    def answer(key: str, reason: str) -> web.Response:
        if reason:
            return web.json_response({key: False, "reason": reason}, status=503)
        return web.json_response({key: True})

    async def health(_request: web.Request) -> web.Response:
        reason = stalled()
        if reason:
            return web.json_response({"status": "stalled", "reason": reason}, status=503)
        return web.json_response({"status": "ok"})

    async def ready(_request: web.Request) -> web.Response:
        return answer("ready", not_ready())

    async def status(_request: web.Request) -> web.Response:
        reason = not_working()
        return web.json_response({"working": not reason, "reason": reason})

    return [
        web.get("/health", health),
        web.get("/ready", ready),
        web.get("/status", status),
        *(metrics_routes() if metrics else []),
    ]


class StallWatch:
    """Whether a partition has had records waiting, and none of them done, for too long.

    ``check`` takes, per partition, (offset done, end offset); a partition is stalled when
    its end is past what is done and what is done has not moved for ``limit`` seconds.
    """

    def __init__(self, limit: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._limit = limit
        self._clock = clock
        self._since: dict[Any, tuple[int, float]] = {}

    def check(self, positions: Mapping[Any, tuple[int, int]]) -> str:
        """Why the consumer is stalled, or an empty string."""
        now = self._clock()
        stalled = []
        for tp, (done, end) in positions.items():
            seen = self._since.get(tp)
            if end <= done:
                self._since.pop(tp, None)
            elif seen is None or seen[0] != done:
                self._since[tp] = (done, now)
            elif now - seen[1] >= self._limit:
                stalled.append(f"{tp} ({end - done} waiting, none done for {now - seen[1]:.0f} s)")
        for tp in set(self._since) - set(positions):  # revoked
            del self._since[tp]
        return f"Records wait and none are done: {', '.join(stalled)}." if stalled else ""


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
        # Open event streams (the operator page) must not hold a shutdown for a minute.
        site = web.TCPSite(self._runner, "0.0.0.0", self.port, shutdown_timeout=2)  # noqa: S104
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


class WorkerProbes:
    """The worker's probes: readiness (the API), liveness (a stall), work (``/status``)."""

    def __init__(
        self,
        faust: Any,
        services: Any,
        inputs: set[str],
        stall_timeout: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._faust = faust
        self._services = services
        self._inputs = inputs
        self._stall = StallWatch(stall_timeout, clock)
        self._limit = stall_timeout
        self._clock = clock
        self._unsettled_since: float | None = None

    def routes(self, *, metrics: bool = True) -> list[web.RouteDef]:
        """The probes' routes, and ``/metrics`` unless it is served on a port of its own."""
        return operations_routes(self.not_ready, self.not_working, self.stalled, metrics=metrics)

    def not_ready(self) -> str:
        """Why the API cannot answer yet, or an empty string."""
        if not self._services.view.loaded.is_set():
            return "Reading the alarms topic."
        if not self._services.silences.loaded.is_set():
            return "Reading the silences topic."
        if not self._services.rule_states.loaded.is_set():
            return "Reading the rule-states topic."
        return ""

    def not_working(self) -> str:
        """Why the worker does no work (no partitions, a rebalance, recovery), or ""."""
        if self._faust.rebalancing:
            return "Rebalancing: partitions are being assigned."
        ownership = self._services.ownership
        if not ownership.assigned():
            if ownership.assignments:
                return "No partitions assigned (more workers than partitions?)."
            return "Not in the consumer group yet."
        if not self._faust.tables.recovery.completed.is_set():
            return "Recovering the tables from their changelogs."
        return ""

    def stalled(self) -> str:
        """Why the consumer looks wedged, or an empty string (checked at each probe).

        A rebalance or a recovery of the tables that has not finished within the stall
        timeout, once the worker has joined its group, is a stall too: Faust's recovery can
        wait forever for changelog records it has paused (its stream buffers full).
        """
        settled = not self._faust.rebalancing and self._faust.tables.recovery.completed.is_set()
        if not settled:
            if not self._services.ownership.assignments:
                return ""  # not in the group yet: a broker away is not a stall
            now = self._clock()
            if self._unsettled_since is None:
                self._unsettled_since = now
            waited = now - self._unsettled_since
            if waited >= self._limit:
                return f"A rebalance or the tables' recovery has not finished in {waited:.0f} s."
            return ""
        self._unsettled_since = None
        consumer = self._faust.consumer
        return self._stall.check(consumer_positions(consumer, self._inputs, committed=True))

    def lag(self) -> dict[tuple[str, ...], float]:
        """Records of the input topics not read yet, by topic and partition."""
        return consumer_lag(self._faust.consumer, self._inputs)


def consumer_positions(
    consumer: Any, topics: set[str], *, committed: bool = False
) -> dict[Any, tuple[int, int]]:
    """(offset done, end offset) of each assigned partition of ``topics``.

    Done is the next offset to read (or with ``committed``, the committed one: records
    handled); a partition not fetched yet has no end and is left out.
    """
    positions: dict[Any, tuple[int, int]] = {}
    for tp in list(consumer.assignment()):
        if tp.topic not in topics:
            continue
        try:
            end = consumer.highwater(tp)
        except Exception:  # noqa: BLE001, S112 - no fetch yet: no figure
            continue
        read = None if committed else consumer._read_offset.get(tp)  # noqa: SLF001 - no public one
        done = read + 1 if read is not None else consumer._committed_offset.get(tp) or 0  # noqa: SLF001
        if end is not None:
            positions[tp] = (done, end)
    return positions


def consumer_lag(consumer: Any, topics: set[str]) -> dict[tuple[str, ...], float]:
    """Records of ``topics`` that Faust's consumer has not read yet, by topic and partition."""
    return {
        (tp.topic, str(tp.partition)): float(max(end - done, 0))
        for tp, (done, end) in consumer_positions(consumer, topics).items()
    }
