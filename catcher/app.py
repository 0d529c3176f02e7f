"""The Faust worker: triggers in, actions out, exactly once through the ledger.

Topology::

    <prefix>.triggers (Avro, key trigger_id)
        └─ triggers agent: decode, check the rule ─► dead letter on failure
             └─► <prefix>.internal.series (JSON, key rule|series)
                   └─ series agent: plan with the series-state table (edge, severity, cooldown)
                        └─► <prefix>.internal.action-requests (JSON, key action_id)
                              └─ requests agent: ledger entry ``queued`` (or ``expired``)
                                   ─► runner (background)
    runner ─► ledger table (changelog) ─► <prefix>.actions (Avro history)
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
from datetime import timedelta
from typing import Any

import mode
import structlog

from .config import Config
from .exceptions import RecordError
from .factory import ProcessContext, create_faust_app
from .metrics import METRICS
from .models.alarms import Alarm, AlarmCommand, Silence
from .models.enums import DeadLetterStage
from .models.messages import parse_internal
from .models.records import ActionRequest, CancelRequest, Trigger, TriggerMessage
from .models.rules import RuleSet
from .services.alarms.engine import AlarmEngine
from .services.alarms.view import AlarmView, TopicView
from .services.evaluation.stream import StreamEngine
from .services.execution.admission import Admission
from .services.execution.publisher import Publisher
from .services.execution.runner import ActionRunner
from .services.guard import Backoff, Guard, keep_trying
from .services.planning.intake import Intake
from .services.planning.series import SeriesOwner
from .services.singletons import SingletonJobs
from .storage.ledger import Ledger
from .storage.tables import DurableTable, Ownership
from .topics import ALARM_TABLE, LEDGER_TABLE, SERIES_STATE_TABLE, STREAM_STATE_TABLE
from .web.alarms import AlarmApi, user_middleware
from .web.operations import HttpServer, consumer_lag, operations_routes, register_gauges

__all__ = ["CatcherApp", "create_app"]

logger = structlog.get_logger("catcher")


async def _decode_silence(value: bytes) -> Silence:
    return Silence.model_validate_json(value)


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
        self.actions_topic = self._topic(config.actions_topic)
        self.deadletter_topic = self._topic(config.deadletter_topic)
        self.alarms_topic = self._topic(config.alarms_topic)
        self.silences_topic = self._topic(config.silences_topic)
        self.series_topic = self._topic(config.series_topic, internal=True)
        self.requests_topic = self._topic(config.action_requests_topic, internal=True)
        self.series_table = self._table(SERIES_STATE_TABLE)
        self.ledger_table = self._table(LEDGER_TABLE)
        self.alarm_table = self._table(ALARM_TABLE)
        self.series_state = DurableTable(self.series_table)
        self._topics = {
            t.get_topic_name(): t
            for t in (
                self.triggers_topic,
                self.actions_topic,
                self.deadletter_topic,
                self.alarms_topic,
                self.silences_topic,
                self.series_topic,
                self.requests_topic,
            )
        }
        self.publisher = Publisher(
            self.context.codec,
            self._send,
            config.actions_topic,
            config.deadletter_topic,
            max_record_size=config.producer_max_request_size,
            triggers_topic=config.triggers_topic,
        )
        self.guard = Guard(self.publisher.dead_letter, Backoff)
        self.ownership = Ownership()
        self.ledger = Ledger(self.ledger_table, self.publisher.entry_changed)
        self.runner = ActionRunner(
            ledger=self.ledger,
            rules=rules,
            executors=self.context.executors(),
            policy=self.context.policy,
            poll_interval=config.poll_interval,
            poll_timeout=config.poll_timeout,
            failures=self.publisher,
            ownership=self.ownership,
            topic=config.action_requests_topic,
            limits=config.concurrency,
        )
        self.view = AlarmView(config, self.context.codec)
        self.silences: TopicView[Silence] = TopicView(
            config, config.silences_topic, _decode_silence
        )
        self.alarms = AlarmEngine(
            rules,
            DurableTable(self.alarm_table),
            self._alarm_changed,
            escalator=self.context.escalator(),
            policy=self.context.policy,
            silences=self.silences,
        )
        self.planning = SeriesOwner(
            rules,
            self.series_state,
            self._send_json,
            self.publisher.action_event,
            config.action_requests_topic,
            alarms=self.alarms,
        )
        self.intake = Intake(
            self.context.codec,
            rules,
            self._send_json,
            config.series_topic,
            config.rules_path,
            self.planning,
        )
        self.admission = Admission(rules, self.ledger, self.runner, config.max_trigger_age)
        self.stream: StreamEngine | None = None
        stream_rules = rules.by_engine("stream", config.default_engine)
        if stream_rules:
            self.stream = StreamEngine(
                stream_rules,
                DurableTable(self._table(STREAM_STATE_TABLE)),
                self._emit_trigger,
                timedelta(seconds=config.stream_grace),
            )
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
        """A changelog-backed table of JSON values keyed by text, in memory."""
        return self.faust.Table(
            name, default=None, partitions=self.config.topic_partitions, key_type=str
        )

    async def _send(self, topic: str, key: bytes, value: bytes) -> None:
        delivery = await self._topics[topic].send(key=key, value=value)
        await delivery

    async def _send_json(self, topic: str, key: str, value: dict[str, Any]) -> None:
        await self._send(topic, key.encode(), json.dumps(value).encode())

    async def _alarm_changed(self, alarm: Alarm, command: AlarmCommand | None) -> None:
        value = await self.context.codec.encode("alarms", alarm.to_avro(command))
        await self._send(self.config.alarms_topic, alarm.name.encode(), value)

    def _owns_series(self, partition: int) -> bool:
        return self.ownership.owns(self.config.triggers_topic, partition) or self.ownership.owns(
            self.config.series_topic, partition
        )

    def _owns_partition(self, partition: int) -> bool:
        return self.ownership.owns(self.config.action_requests_topic, partition)

    def _ready(self) -> bool:
        recovery = self.faust.tables.recovery  # type: ignore[attr-defined]
        return not self.faust.rebalancing and recovery.completed.is_set()

    # -- agents -----------------------------------------------------------------------------

    def _wire(self) -> None:
        self._wire_agents()
        self._wire_lifecycle()
        self._wire_alarms()
        self._wire_stream()
        register_gauges(self.ledger, lambda: self.view.alarms, self._lag)
        self._wire_ownership()

    def _wire_ownership(self) -> None:
        app = self.faust

        @app.on_partitions_assigned.connect  # type: ignore[arg-type]
        async def assigned(_app: Any, assigned: set[Any], **_kwargs: Any) -> None:
            self.ownership.assign((tp.topic, tp.partition) for tp in assigned)
            logger.info(
                "Partitions assigned",
                triggers=sorted(
                    tp.partition for tp in assigned if tp.topic == self.config.triggers_topic
                ),
            )

        @app.on_partitions_revoked.connect  # type: ignore[arg-type]
        async def revoked(_app: Any, revoked: set[Any], **_kwargs: Any) -> None:
            self.ownership.revoke((tp.topic, tp.partition) for tp in revoked)
            self.singletons.place()

        @app.on_rebalance_complete.connect  # type: ignore[arg-type]
        async def rewind_uncommitted(_app: Any, **_kwargs: Any) -> None:
            await self._rewind_uncommitted()
            self.singletons.place()

    async def _rewind_uncommitted(self) -> None:
        """Read from the beginning the input partitions that have no committed offset.

        During a rebalance Faust drops the records it has fetched and reads them again from
        the committed offset; a partition with none (a new group, or an owner killed before
        its first commit) would otherwise lose them. Reading it again is harmless: the
        planner and the ledger absorb redeliveries.
        """
        consumer: Any = self.faust.consumer  # the transport's consumer: seek_to_committed
        committed = await consumer.seek_to_committed()
        inputs = {
            t.get_topic_name()
            for t in (self.triggers_topic, self.series_topic, self.requests_topic)
        }
        for tp, offset in committed.items():
            if offset is None and tp.topic in inputs:
                logger.info(
                    "Reading a partition with no committed offset from its beginning",
                    topic=tp.topic,
                    partition=tp.partition,
                )
                await consumer.seek(tp, 0)

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
                await self.guard.run(message, stage, functools.partial(handler, message))

        await asyncio.gather(*(in_order(messages) for messages in by_key.values()))

    async def _emit_trigger(self, trigger: Trigger) -> None:
        value = await self.context.codec.encode("triggers", trigger.to_avro())
        await self._send(self.config.triggers_topic, trigger.key, value)

    async def _on_telemetry(self, message: Any) -> None:
        if self.stream is None or not isinstance(message.value, bytes):
            raise RecordError("A telemetry record has no value.")
        record = await self.context.codec.decode_any(message.value)
        await self.stream.on_record(message.topic, record, message.partition)

    def _wire_stream(self) -> None:
        stream = self.stream
        if stream is None:
            return
        telemetry = self.faust.topic(*stream.topics, key_serializer="raw", value_serializer="raw")
        self._agent(telemetry, "catcher.telemetry", DeadLetterStage.decode, self._on_telemetry)

        @self.faust.timer(1.0)
        async def close_windows() -> None:
            if self._ready():
                await keep_trying("Closing stream windows", self._stream_tick)

    async def _stream_tick(self) -> None:
        if self.stream is not None:
            await self.stream.tick(self.ownership.owns)

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
        self.view.start()
        self.silences.start()
        await self._web.start()
        self.http_port = self._web.port
        if self.love is None:
            logger.info("No LOVE producer: CATCHER_LOVE_URL is not set")

    def web_service(self) -> mode.Service:
        """The HTTP server as a service for ``faust.Worker`` (started after the app)."""
        catcher = self

        class WebServer(mode.Service):
            async def on_start(self) -> None:
                await catcher.start_web()

        return WebServer()

    def _wire_alarms(self) -> None:
        self.api = AlarmApi(
            self.view,
            self._send_command,
            silences=self.silences,
            save_silence=self._save_silence,
        )
        self._web = HttpServer(
            [*self.api.routes(), *operations_routes(self._not_ready)],
            [user_middleware(self.config.api_anonymous_user)],
            self.config.http_port,
        )
        self.http_port = self.config.http_port
        self.love = self.context.love_producer(lambda: self.view.alarms)
        if self.love is not None:
            self.view.on_change(self.love.changed)
        self.singletons = SingletonJobs(
            lambda: self.ownership.owns(self.config.triggers_topic, 0),
            {
                "love-producer": self.love.run if self.love is not None else None,
                "mirror": self._run_mirror if self.config.mirror_enabled else None,
            },
        )

        @self.faust.on_before_shutdown.connect  # type: ignore[arg-type]
        async def stop_api(_app: Any, *_args: Any, **_kwargs: Any) -> None:
            self.singletons.place(stop=True)
            await self.view.stop()
            await self.silences.stop()
            await self._web.stop()

        @self.alarm_table.on_recover
        async def index_alarms() -> None:
            self.alarms.rebuild_index()

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

        @self.ledger_table.on_recover
        async def index_ledger() -> None:
            self.ledger.rebuild_index()

        @app.timer(self.config.resume_interval)
        async def resume_unfinished() -> None:
            if self._ready():
                await keep_trying("Scanning the ledger", self._scan)

        @app.on_before_shutdown.connect  # type: ignore[arg-type]
        async def stop_runner(_app: Any, *_args: Any, **_kwargs: Any) -> None:
            await self.runner.stop()
            await self.context.aclose()

    async def _scan(self) -> None:
        """Periodic work on the ledger's indexes (never the whole table)."""
        await self.ledger.republish(self._owns_partition)
        self.runner.resume()
        await self.ledger.prune(self.config.ledger_retention, self._owns_partition)

    # -- operations: readiness, lag ---------------------------------------------------------

    def _lag(self) -> dict[tuple[str, ...], float]:
        inputs = {
            t.get_topic_name()
            for t in (self.triggers_topic, self.series_topic, self.requests_topic)
        }
        return consumer_lag(self.faust.consumer, inputs)

    def _not_ready(self) -> str:
        """Why the worker is not ready, or an empty string."""
        if self.faust.rebalancing:
            return "Rebalancing: partitions are being assigned."
        if not self.ownership.assigned():
            return "No partitions assigned yet."
        recovery = self.faust.tables.recovery  # type: ignore[attr-defined]
        if not recovery.completed.is_set():
            return "Recovering the tables from their changelogs."
        return ""

    async def _save_silence(self, silence: Silence) -> None:
        await self._send_json(self.config.silences_topic, silence.id, silence.to_json())

    async def _run_mirror(self) -> None:
        from .services.influx.mirror import Mirror  # noqa: PLC0415

        async def start() -> Mirror:
            return Mirror.from_config(
                self.config, self.context.codec, self._send, self.context.http
            )

        mirror = await keep_trying("Starting the mirror", start)
        await mirror.run(self.config.mirror_interval, asyncio.Event())

    async def _send_command(self, command: AlarmCommand) -> None:
        await self._send_json(self.config.series_topic, command.series, command.to_json())

    async def _alarm_scan(self) -> None:
        await self.alarms.scan(self._owns_series)

    # -- handlers: decode, then ask a service -------------------------------------------------

    async def _on_trigger(self, message: Any) -> None:
        await self.intake.handle(message.key, message.value, message.partition)

    async def _on_series(self, message: Any) -> None:
        internal = parse_internal(_json(message.value))
        if isinstance(internal, AlarmCommand):
            await self.planning.command(internal, message.partition)
        elif isinstance(internal, TriggerMessage):
            await self.planning.handle(internal.trigger, message.partition)
        else:
            raise RecordError(f"A {internal.kind} message does not belong on the series topic.")

    async def _on_request(self, message: Any) -> None:
        internal = parse_internal(_json(message.value))
        if isinstance(internal, CancelRequest):
            self.admission.cancel(internal)
        elif isinstance(internal, ActionRequest):
            await self.admission.request(internal, message.partition)
        else:
            raise RecordError(f"A {internal.kind} message does not belong on the request topic.")


def create_app(config: Config, rules: RuleSet) -> CatcherApp:
    """Build the worker application; nothing connects until it runs."""
    return CatcherApp(config, rules)
