"""The Faust worker: triggers in, actions out, exactly once through the ledger.

Topology::

    <prefix>.triggers (Avro, key trigger_id)
        └─ triggers agent: decode, check the rule ─► dead letter on failure
             └─► <prefix>.internal.series (JSON, key rule|series)
                   └─ series agent: plan with the series-state table (edge, severity, cooldown)
                        └─► <prefix>.internal.action-requests (JSON, key action_id)
                              └─ requests agent: ledger entry ``queued`` ─► runner (background)
    runner ─► ledger table (changelog) ─► <prefix>.actions (Avro history)
           └► <prefix>.deadletter (Avro) for actions that failed
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import faust
import structlog
from faust.types import TP
from pydantic import ValidationError

from .config import Config, KafkaSecurityProtocol
from .constants import LEDGER_TABLE, SERIES_STATE_TABLE
from .exceptions import RecordError, SchemaRegistryError
from .factory import ProcessContext
from .models.enums import ActionState, DeadLetterStage
from .models.records import (
    ActionEvent,
    ActionRequest,
    CancelRequest,
    DeadLetter,
    LedgerEntry,
    SeriesState,
    Trigger,
    make_action_id,
    utcnow,
)
from .models.rules import RuleSet
from .services.planner import plan
from .services.publisher import Publisher
from .services.runner import ActionRunner
from .storage.ledger import Ledger

__all__ = ["CatcherApp", "create_app"]

logger = structlog.get_logger("catcher")


def _credentials(config: Config) -> Any:
    kafka = config.kafka
    context = kafka.ssl_context()
    if kafka.security_protocol in (
        KafkaSecurityProtocol.SASL_PLAINTEXT,
        KafkaSecurityProtocol.SASL_SSL,
    ):
        return faust.SASLCredentials(
            username=kafka.sasl_username,
            password=kafka.sasl_password.get_secret_value() if kafka.sasl_password else None,
            mechanism=kafka.sasl_mechanism.value,
            ssl_context=context,
        )
    if context is not None:
        return faust.SSLCredentials(context)
    return None


class CatcherApp:
    """The Faust application with Catcher's agents, tables and background runner."""

    def __init__(self, config: Config, rules: RuleSet) -> None:
        self.config = config
        self.rules = rules
        self.context = ProcessContext.from_config(config)
        self.faust = faust.App(
            config.app_id,
            broker=config.kafka.faust_broker_url(),
            broker_credentials=_credentials(config),
            store="memory://",
            processing_guarantee="at_least_once",
            autodiscover=False,
            producer_max_batch_size=config.producer_max_batch_size,
            broker_session_timeout=config.broker_session_timeout,
            broker_heartbeat_interval=config.broker_heartbeat_interval,
            topic_partitions=config.topic_partitions,
            topic_replication_factor=config.topic_replication_factor,
            topic_allow_declare=config.create_topics,
            consumer_auto_offset_reset="earliest",
            web_enabled=False,
            datadir=str(config.data_dir / config.app_id),
        )
        self.triggers_topic = self._topic(config.triggers_topic)
        self.actions_topic = self._topic(config.actions_topic)
        self.deadletter_topic = self._topic(config.deadletter_topic)
        self.series_topic = self._topic(config.series_topic, internal=True)
        self.requests_topic = self._topic(config.action_requests_topic, internal=True)
        self.series_table = self._table(SERIES_STATE_TABLE)
        self.ledger_table = self._table(LEDGER_TABLE)
        self._topics = {
            t.get_topic_name(): t
            for t in (self.triggers_topic, self.actions_topic, self.deadletter_topic)
        }
        self.publisher = Publisher(
            self.context.codec, self._send, config.actions_topic, config.deadletter_topic
        )
        self.ledger = Ledger(self.ledger_table, self.publisher.entry_changed)
        self.runner = ActionRunner(
            ledger=self.ledger,
            rules=rules,
            executors=self.context.executors(),
            policy=self.context.policy,
            poll_interval=config.poll_interval,
            poll_timeout=config.poll_timeout,
            dead_letter=self._action_dead_letter,
            owns=self._owns,
        )
        self._wire()

    # -- plumbing ---------------------------------------------------------------------------

    def _topic(self, name: str, *, internal: bool = False) -> Any:
        """Raw bytes for Avro topics; JSON for internal topics, which Faust creates."""
        return self.faust.topic(
            name,
            partitions=self.config.topic_partitions,
            key_serializer="raw",
            value_serializer="json" if internal else "raw",
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

    def _owns(self, entry: LedgerEntry) -> bool:
        assigned = self.faust.consumer.assignment()
        return TP(self.config.action_requests_topic, entry.partition) in assigned

    def _ready(self) -> bool:
        recovery = self.faust.tables.recovery  # type: ignore[attr-defined]
        return not self.faust.rebalancing and recovery.completed.is_set()

    async def _action_dead_letter(self, letter: DeadLetter, entry: LedgerEntry) -> None:
        value = await self.context.codec.encode("triggers", entry.trigger.to_avro())
        await self.publisher.dead_letter(
            letter.model_copy(
                update={
                    "topic": self.config.triggers_topic,
                    "key": entry.trigger.trigger_id.encode(),
                    "value": value,
                }
            )
        )

    async def _decode_trigger(self, value: Any) -> Trigger:
        if not isinstance(value, bytes):
            raise RecordError("The record has no value (a tombstone?).")
        delay = 1.0
        while True:
            try:
                record = await self.context.codec.decode("triggers", value)
            except SchemaRegistryError as exc:
                # The registry being down is not the record's fault: wait, do not dead-letter.
                logger.warning("Schema Registry unavailable; retrying", error=str(exc))
                await asyncio.sleep(delay)
                delay = min(delay * 2, 30.0)
                continue
            return Trigger.from_avro(record)

    # -- agents -----------------------------------------------------------------------------

    def _wire(self) -> None:
        self._wire_agents()
        self._wire_lifecycle()

    def _wire_agents(self) -> None:
        app = self.faust

        @app.agent(self.triggers_topic, name="catcher.triggers")
        async def on_triggers(stream: Any) -> None:
            async for event in stream.events():
                await self._on_trigger(event)

        @app.agent(self.series_topic, name="catcher.series")
        async def on_series(stream: Any) -> None:
            async for event in stream.events():
                await self._guarded(event, DeadLetterStage.plan, self._on_series)

        @app.agent(self.requests_topic, name="catcher.requests")
        async def on_requests(stream: Any) -> None:
            async for event in stream.events():
                await self._guarded(event, DeadLetterStage.execute, self._on_request)

    def _wire_lifecycle(self) -> None:
        app = self.faust

        @app.task
        async def register_schemas() -> None:
            ids = await self.context.codec.register()
            logger.info("Registered schemas", subjects=ids, rules=len(self.rules))

        if self.config.mirror_enabled:

            @app.task
            async def run_mirror() -> None:
                from .services.mirror import Mirror  # noqa: PLC0415

                mirror = Mirror.from_config(
                    self.config, self.context.codec, self._send, self.context.http
                )
                await mirror.run(self.config.mirror_interval, asyncio.Event())

        @app.timer(self.config.resume_interval)
        async def resume_unfinished() -> None:
            if not self._ready():
                return
            try:
                self.runner.resume()
            except Exception:  # the scan runs again at the next tick
                logger.exception("Could not scan the ledger for unfinished actions")

        @app.on_before_shutdown.connect  # type: ignore[arg-type]
        async def stop_runner(_app: Any, *_args: Any, **_kwargs: Any) -> None:
            await self.runner.stop()
            await self.context.aclose()

    async def _guarded(
        self, event: Any, stage: DeadLetterStage, handler: Callable[[Any], Awaitable[None]]
    ) -> None:
        """Run a handler of an internal topic; a record it cannot read is dead-lettered."""
        try:
            await handler(event)
        except (ValidationError, ValueError, KeyError, TypeError) as exc:
            message = event.message
            await self.publisher.dead_letter(
                DeadLetter(
                    stage=stage,
                    reason=f"Cannot handle a record of {message.topic}: {type(exc).__name__}:"
                    f" {exc}",
                    error_type=type(exc).__name__,
                    topic=message.topic,
                    partition=message.partition,
                    offset=message.offset,
                    key=message.key if isinstance(message.key, bytes) else None,
                    value=message.value if isinstance(message.value, bytes) else None,
                )
            )

    async def _on_trigger(self, event: Any) -> None:
        message = event.message
        original = {
            "topic": message.topic,
            "partition": message.partition,
            "offset": message.offset,
            "key": event.key if isinstance(event.key, bytes) else None,
            "value": event.value if isinstance(event.value, bytes) else None,
        }
        try:
            trigger = await self._decode_trigger(event.value)
        except (RecordError, ValidationError) as exc:
            reason = f"Cannot decode the trigger: {exc}"
            if isinstance(exc, ValidationError):
                reason = (
                    f"The trigger is not valid: {exc.errors()[0]['msg']} at"
                    f" {'.'.join(str(p) for p in exc.errors()[0]['loc'])}"
                )
            await self.publisher.dead_letter(
                DeadLetter(
                    stage=DeadLetterStage.decode,
                    reason=reason,
                    error_type=type(exc).__name__,
                    **original,
                )
            )
            return
        if self.rules.get(trigger.rule_id) is None:
            await self.publisher.dead_letter(
                DeadLetter(
                    stage=DeadLetterStage.plan,
                    reason=f"No rule with id {trigger.rule_id!r} is loaded (rules from"
                    f" {self.config.rules_path}).",
                    error_type="UnknownRule",
                    rule_id=trigger.rule_id,
                    trigger_id=trigger.trigger_id,
                    **original,
                )
            )
            return
        delivery = await self.series_topic.send(
            key=trigger.series.encode(), value=trigger.to_json()
        )
        await delivery

    async def _on_series(self, event: Any) -> None:
        trigger = Trigger.model_validate(event.value)
        rule = self.rules.get(trigger.rule_id)
        if rule is None:  # checked upstream; rules are fixed for the life of the process
            return
        raw = self.series_table.get(trigger.series)
        state = SeriesState.model_validate(raw) if raw else None
        result = plan(rule, trigger, state)
        log = logger.bind(rule_id=trigger.rule_id, trigger_id=trigger.trigger_id)
        if result.out_of_order:
            log.info("Ignored a trigger older than the last one of its series")
            return
        if result.redelivered:
            log.info("Trigger delivered again; planning the same actions", actions=result.to_run)
        else:
            self.series_table[trigger.series] = result.state.to_json()
        for decision in result.decisions:
            action = rule.action(decision.action_name)
            action_id = make_action_id(
                trigger.trigger_id, decision.action_name, trigger.generation
            )
            if decision.run:
                request = ActionRequest(
                    action_id=action_id, action_name=decision.action_name, trigger=trigger
                )
                delivery = await self.requests_topic.send(
                    key=action_id.encode(), value=request.to_json()
                )
                await delivery
            else:
                await self.publisher.action_event(
                    ActionEvent(
                        action_id=action_id,
                        trigger_id=trigger.trigger_id,
                        rule_id=trigger.rule_id,
                        action_name=decision.action_name,
                        action_type=action.type if action else "unknown",
                        state=ActionState.suppressed,
                        attempt=0,
                        time=utcnow(),
                        severity=trigger.severity.name,
                        message=decision.reason,
                        generation=trigger.generation,
                    )
                )
        if result.decisions:
            log.info(
                "Planned actions",
                run=result.to_run,
                suppressed=[d.action_name for d in result.decisions if not d.run],
            )

    async def _on_request(self, event: Any) -> None:
        if isinstance(event.value, dict) and event.value.get("cancel"):
            cancel = CancelRequest.model_validate(event.value)
            entry = self.ledger.get(cancel.action_id)
            if entry is None or entry.state.terminal:
                logger.warning(
                    "Ignored a cancel request for an action that is not running",
                    action_id=cancel.action_id,
                    state=entry.state.value if entry else None,
                )
                return
            logger.info("Cancelling an action", action_id=cancel.action_id, by=cancel.requested_by)
            self.runner.cancel(cancel.action_id, cancel.requested_by)
            return
        request = ActionRequest.model_validate(event.value)
        entry = self.ledger.get(request.action_id)
        if entry is not None:
            if entry.state.terminal:
                self.runner.skipped += 1
                logger.info(
                    "Skipped an action that has already finished",
                    action_id=request.action_id,
                    state=entry.state.value,
                    skipped_total=self.runner.skipped,
                )
            else:
                logger.info(
                    "Continuing an unfinished action from the ledger",
                    action_id=request.action_id,
                    state=entry.state.value,
                )
                self.runner.ensure(entry)
            return
        rule = self.rules.get(request.trigger.rule_id)
        action = rule.action(request.action_name) if rule else None
        entry = LedgerEntry(
            action_id=request.action_id,
            action_name=request.action_name,
            action_type=action.type if action else "unknown",
            trigger=request.trigger,
            partition=event.message.partition,
            state=ActionState.queued,
            message=f"Started by a {request.trigger.severity.name} trigger"
            f" ({request.trigger.source.value}).",
        )
        entry = await self.ledger.put(entry)
        self.runner.ensure(entry)


def create_app(config: Config, rules: RuleSet) -> CatcherApp:
    """Build the worker application; nothing connects until it runs."""
    return CatcherApp(config, rules)
