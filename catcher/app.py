"""The Faust worker: triggers in, actions out, exactly once through the ledger.

Topology::

    <prefix>.triggers (Avro, key trigger_id)
        └─ triggers agent: decode, check the rule ─► dead letter on failure
             └─► <prefix>.internal.series (JSON, key rule|series)
                   └─ series agent: plan with the series-state table (edge, severity, cooldown)
                        └─► <prefix>.internal.action-requests (JSON, key action_id)
                              └─ requests agent: ledger entry ``queued`` (or ``expired``)
                                   ─► runner (background)
    runner ─► ledger (<app_id>-ledger-changelog, read by Catcher) ─► <prefix>.actions
           └► <prefix>.deadletter (Avro) for actions that failed

Every event of every agent runs inside the guard (:mod:`catcher.services.guard`): it is
handled, retried in place while the broker or the registry is unreachable, or
dead-lettered; it is never let go. Every table write is acknowledged by the broker before
it is visible. Only the owner of a partition acts on its actions.
"""

from __future__ import annotations

import asyncio
import functools
import json
from collections.abc import Awaitable, Callable
from typing import Any

import mode
import structlog

from .config import Config
from .exceptions import RecordError
from .factory import Factory, ProcessContext, create_faust_app, ledger_consumer, longest_max_age
from .metrics import METRICS
from .models.alarms import AlarmCommand, AlarmCommandBatch
from .models.enums import DeadLetterStage
from .models.messages import parse_internal
from .models.records import ActionRequest, CancelRequest, TriggerMessage
from .models.rules import RuleSet
from .services.evaluation.stream import MARK_INTERVAL
from .services.guard import keep_trying
from .storage.ledger_log import LedgerLog
from .topics import ALARM_TABLE, LEDGER_TABLE
from .web.alarms import user_middleware
from .web.operations import HttpServer, WorkerProbes, metrics_routes, register_gauges

__all__ = ["CatcherApp", "create_app"]

logger = structlog.get_logger("catcher")


def _json(value: Any) -> Any:
    if not isinstance(value, bytes):
        raise RecordError("The record has no value (a tombstone?).")
    try:
        return json.loads(value)
    except ValueError as exc:
        raise RecordError(f"The record is not JSON: {exc}") from None


class CatcherApp:
    """The Faust application with Catcher's agents, tables and background runner."""

    _web: HttpServer

    def __init__(self, config: Config, rules: RuleSet) -> None:
        self.config = config
        self.rules = rules
        self.context = ProcessContext.from_config(config)
        self.faust = create_faust_app(config)
        self.triggers_topic = self._topic(config.triggers_topic)
        self.series_topic = self._topic(config.series_topic, internal=True)
        self.requests_topic = self._topic(config.action_requests_topic, internal=True)
        self.samples_topic = self._topic(config.samples_topic, internal=True)
        inputs = [self.triggers_topic, self.series_topic, self.requests_topic, self.samples_topic]
        outputs = [config.actions_topic, config.deadletter_topic, config.alarms_topic]
        outputs += [config.silences_topic, config.rule_states_topic]
        self._topics = {t.get_topic_name(): t for t in [*inputs, *map(self._topic, outputs)]}
        self._tables: dict[str, Any] = {}
        ledger_topic = self._topic(config.changelog_topic(LEDGER_TABLE))
        self.ledger_log = LedgerLog(
            ledger_topic.get_topic_name(),
            lambda p, k, v: ledger_topic.send_soon(key=k, value=v, partition=p),
            functools.partial(ledger_consumer, config),
        )
        self.services = services = Factory(self.context).worker(
            rules, self._send_soon, self._table, self.ledger_log
        )
        self.http_port = config.http_port
        self._inputs = {t.get_topic_name() for t in inputs}
        watched = self._inputs | set(services.telemetry.topics if services.telemetry else ())
        self._probes = WorkerProbes(self.faust, services, watched, config.stall_timeout)
        apart = config.metrics_port  # then /metrics only there (for a NetworkPolicy)
        self._web = HttpServer(
            [*services.api.routes(), *self._probes.routes(metrics=apart is None)],
            [user_middleware(config.api_anonymous_user, config.path_prefix)],
            config.http_port,
        )
        self._metrics_web = None if apart is None else HttpServer(metrics_routes(), [], apart)
        self._wire()

    # -- plumbing ---------------------------------------------------------------------------

    def _topic(self, name: str, *, internal: bool = False) -> Any:
        """Raw bytes on every topic: the handlers decode inside the guard."""
        return self.faust.topic(
            name,
            partitions=self.config.topic_partitions,
            key_serializer="raw",
            value_serializer="raw",
            internal=internal,
        )

    def _table(self, name: str) -> Any:
        """A changelog-backed table of JSON values keyed by text, in memory (one per name)."""
        if name not in self._tables:
            self._tables[name] = self.faust.Table(
                name, default=None, partitions=self.config.topic_partitions, key_type=str
            )
        return self._tables[name]

    async def _send_soon(
        self, topic: str, key: bytes, value: bytes, partition: int | None = None
    ) -> Awaitable[None]:
        delivery: Awaitable[None] = await self._topics[topic].send(
            key=key, value=value, partition=partition
        )
        return delivery

    def _highwater(self, tp: Any) -> int | None:
        try:
            return int(self.faust.consumer.highwater(tp))
        except Exception:  # noqa: BLE001 - no fetch of the partition yet: unknown
            return None

    def _owns_series(self, partition: int) -> bool:
        return self.services.ownership.owns(
            self.config.triggers_topic, partition
        ) or self.services.ownership.owns(self.config.series_topic, partition)

    def _owns_partition(self, partition: int) -> bool:
        return self.services.ownership.owns(self.config.action_requests_topic, partition)

    def _ready(self) -> bool:
        recovery = self.faust.tables.recovery  # type: ignore[attr-defined]
        ready = not self.faust.rebalancing and recovery.completed.is_set()
        return ready and self.ledger_log.loaded.is_set()

    # -- agents -----------------------------------------------------------------------------

    def _wire(self) -> None:
        self._wire_agents()
        self._wire_lifecycle()
        self._wire_alarms()
        self._wire_stream()
        register_gauges(self.services.ledger, lambda: self.services.view.alarms, self._probes.lag)
        self._wire_ownership()

    def _wire_ownership(self) -> None:
        app, requests = self.faust, self.config.action_requests_topic

        @app.on_partitions_assigned.connect  # type: ignore[arg-type]
        async def assigned(_app: Any, assigned: set[Any], **_kwargs: Any) -> None:
            self.services.ownership.assign((tp.topic, tp.partition) for tp in assigned)
            # Faust holds new partitions' records until this returns: the ledger is read first.
            mine = {tp.partition for tp in assigned if tp.topic == requests}
            await keep_trying("Reading the ledger", lambda: self.ledger_log.assign(mine))
            self.services.ledger.rebuild_index()
            logger.info(
                "Partitions assigned",
                triggers=sorted(
                    tp.partition for tp in assigned if tp.topic == self.config.triggers_topic
                ),
            )

        @app.on_partitions_revoked.connect  # type: ignore[arg-type]
        async def revoked(_app: Any, revoked: set[Any], **_kwargs: Any) -> None:
            self.services.ownership.revoke((tp.topic, tp.partition) for tp in revoked)
            self.services.singletons.place()

        @app.on_rebalance_complete.connect  # type: ignore[arg-type]
        async def rewind_uncommitted(_app: Any, **_kwargs: Any) -> None:
            await self._rewind_uncommitted()
            self.services.singletons.place()

    async def _rewind_uncommitted(self) -> None:
        """Read from the beginning the input partitions that have no committed offset.

        During a rebalance Faust drops the records it has fetched and reads them again from
        the committed offset; a partition with none (a new group, or an owner killed before
        its first commit) would otherwise lose them. Reading it again is harmless: the
        planner and the ledger absorb redeliveries.
        """
        consumer: Any = self.faust.consumer  # the transport's consumer: seek_to_committed
        committed = await consumer.seek_to_committed()
        for tp, offset in committed.items():
            if offset is None and tp.topic in self._inputs:
                logger.info(
                    "Reading a partition with no committed offset from its beginning",
                    topic=tp.topic,
                    partition=tp.partition,
                )
                await consumer.seek(tp, 0)
        reader = self.services.telemetry
        if reader is not None:
            fresh = [
                tp for tp, at in committed.items() if at is None and tp.topic in reader.topics
            ]
            starts = await reader.first_offsets(fresh, consumer.highwaters)
            for tp, offset in starts.items():
                await consumer.seek(tp, offset)
            await reader.assigned(committed | starts, consumer.highwaters)

    def _agent(
        self,
        topic: Any,
        name: str,
        stage: DeadLetterStage,
        handler: Callable[[Any], Awaitable[None]],
    ) -> None:
        async def consume(stream: Any) -> None:
            batches = stream.take_events(self.config.batch_max, within=self.config.batch_wait)
            async for events in batches:
                await self._handle_batch(events, stage, handler)

        self.faust.agent(topic, name=name)(consume)

    async def _handle_batch(
        self,
        events: list[Any],
        stage: DeadLetterStage,
        handler: Callable[[Any], Awaitable[None]],
    ) -> None:
        """Handle a batch: records of one key in order, different keys together.

        The batch is acknowledged (and its offsets may be committed) only once every record
        in it is handled or dead-lettered.
        """
        by_key: dict[Any, list[Any]] = {}
        for event in events:
            by_key.setdefault(event.message.key, []).append(event.message)
        if events:
            METRICS.consumed.labels(events[0].message.topic).inc(len(events))

        async def in_order(messages: list[Any]) -> None:
            for message in messages:
                await self.services.guard.run(message, stage, functools.partial(handler, message))

        await asyncio.gather(*(in_order(messages) for messages in by_key.values()))

    def _wire_stream(self) -> None:
        reader = self.services.telemetry
        if reader is None:
            return
        telemetry = self.faust.topic(*reader.topics, key_serializer="raw", value_serializer="raw")

        async def read(stream: Any) -> None:
            batches = stream.take_events(self.config.batch_max, within=self.config.batch_wait)
            async for events in batches:
                await reader.read([event.message for event in events])

        self.faust.agent(telemetry, name="catcher.telemetry")(read)
        self._agent(self.samples_topic, "catcher.samples", DeadLetterStage.plan, self._on_samples)

        @self.faust.timer(MARK_INTERVAL)
        async def telemetry_marks() -> None:
            if self._ready():
                await keep_trying(
                    "Sending telemetry marks", lambda: reader.send_marks(self._highwater)
                )

        owner, owns, samples = self.services.stream, self.services.ownership.owns, self.config
        assert owner is not None

        @self.faust.timer(1.0)
        async def close_windows() -> None:
            if self._ready():
                await keep_trying(
                    "Closing stream windows", lambda: owner.tick(owns, samples.samples_topic)
                )

    def _wire_agents(self) -> None:
        self._agent(
            self.triggers_topic, "catcher.triggers", DeadLetterStage.decode, self._on_trigger
        )
        self._agent(self.series_topic, "catcher.series", DeadLetterStage.plan, self._on_series)
        self._agent(
            self.requests_topic, "catcher.requests", DeadLetterStage.execute, self._on_request
        )

    async def start_web(self) -> None:
        """Serve the HTTP API, health, readiness and metrics; follow alarms and silences.

        Started with the worker, before the group join and table recovery, so that the
        probes answer (``/ready`` with 503) while the worker recovers.
        """
        self.services.view.start()
        self.services.silences.start()
        self.services.rule_states.start()
        await self._web.start()
        self.http_port = self._web.port
        if self._metrics_web is not None:
            await self._metrics_web.start()
        if self.services.love is None:
            logger.info("No LOVE producer: CATCHER_LOVE_URL is not set")

    def web_service(self) -> mode.Service:
        """The HTTP server as a service for ``faust.Worker`` (started after the app)."""
        catcher = self

        class WebServer(mode.Service):
            async def on_start(self) -> None:
                await catcher.start_web()

        return WebServer()

    def _wire_alarms(self) -> None:
        @self.faust.on_before_shutdown.connect  # type: ignore[arg-type]
        async def stop_api(_app: Any, *_args: Any, **_kwargs: Any) -> None:
            self.services.singletons.place(stop=True)
            await self.services.view.stop()
            await self.services.silences.stop()
            await self.services.rule_states.stop()
            await self._web.stop()
            if self._metrics_web is not None:
                await self._metrics_web.stop()

        @self._table(ALARM_TABLE).on_recover
        async def index_alarms() -> None:
            self.services.alarms.rebuild_index()

        @self.faust.timer(self.config.alarm_scan_interval)
        async def alarm_timers() -> None:
            if self._ready():
                await keep_trying("Firing alarm timers", self._alarm_scan)

    def _wire_lifecycle(self) -> None:
        app = self.faust

        @app.task
        async def register_schemas() -> None:
            ids = await keep_trying("Registering the Avro schemas", self.context.codec.register)
            logger.info("Registered schemas", subjects=ids, rules=len(self.rules))

        @app.timer(self.config.resume_interval)
        async def resume_unfinished() -> None:
            if self._ready():
                await keep_trying("Scanning the ledger", self._scan)

        @app.on_before_shutdown.connect  # type: ignore[arg-type]
        async def stop_runner(_app: Any, *_args: Any, **_kwargs: Any) -> None:
            await self.services.runner.stop()
            await self.context.aclose()

    async def _scan(self) -> None:
        """Periodic work on the ledger's indexes (never the whole table)."""
        await self.services.ledger.republish(self._owns_partition)
        self.services.ledger.settle()
        self.services.runner.resume()
        retention = self.config.retention_for(longest_max_age(self.rules))
        await self.services.ledger.prune(retention, self._owns_partition)

    async def _alarm_scan(self) -> None:
        await self.services.alarms.scan(self._owns_series)

    # -- handlers: decode, then ask a service -------------------------------------------------

    async def _on_samples(self, message: Any) -> None:
        assert self.services.stream is not None
        await self.services.stream.handle(_json(message.value), message.partition)

    async def _on_trigger(self, message: Any) -> None:
        await self.services.intake.handle(message.key, message.value, message.partition)

    async def _on_series(self, message: Any) -> None:
        internal = parse_internal(_json(message.value))
        if isinstance(internal, AlarmCommand):
            await self.services.series.command(internal, message.partition)
        elif isinstance(internal, TriggerMessage):
            await self.services.series.handle(internal.trigger, message.partition)
        elif isinstance(internal, AlarmCommandBatch):
            await self.services.intake.forward(internal)
        else:
            raise RecordError(f"A {internal.kind} message does not belong on the series topic.")

    async def _on_request(self, message: Any) -> None:
        internal = parse_internal(_json(message.value))
        if isinstance(internal, CancelRequest):
            self.services.admission.cancel(internal)
        elif isinstance(internal, ActionRequest):
            await self.services.admission.request(internal, message.partition)
        else:
            raise RecordError(f"A {internal.kind} message does not belong on the request topic.")


def create_app(config: Config, rules: RuleSet) -> CatcherApp:
    """Build the worker application; nothing connects until it runs."""
    return CatcherApp(config, rules)
