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

import faust
import structlog
from pydantic import ValidationError

from .config import Config, KafkaSecurityProtocol
from .constants import LEDGER_TABLE, SERIES_STATE_TABLE
from .exceptions import RecordError, SchemaRegistryUnavailableError
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
from .services.guard import Backoff, Guard, Unprocessable, describe, keep_trying
from .services.planner import plan
from .services.publisher import Publisher
from .services.runner import ActionRunner
from .storage.ledger import Ledger
from .storage.tables import DurableTable, Ownership

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


def _json(value: Any) -> Any:
    if not isinstance(value, bytes):
        raise RecordError("The record has no value (a tombstone?).")
    try:
        return json.loads(value)
    except ValueError as exc:
        raise RecordError(f"The record is not JSON: {exc}") from None


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
            producer_max_request_size=config.producer_max_request_size,
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
        self.series_state = DurableTable(self.series_table)
        self._topics = {
            t.get_topic_name(): t
            for t in (
                self.triggers_topic,
                self.actions_topic,
                self.deadletter_topic,
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
            dead_letter=self._action_dead_letter,
            owns=self._owns,
            limits=config.concurrency,
        )
        self.ownership.on_revoke(self._revoked)
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

    async def _send_json(self, topic: str, key: str, value: Any) -> None:
        await self._send(topic, key.encode(), json.dumps(value).encode())

    def _owns(self, entry: LedgerEntry) -> bool:
        return self._owns_partition(entry.partition)

    def _owns_partition(self, partition: int) -> bool:
        return self.ownership.owns(self.config.action_requests_topic, partition)

    def _revoked(self, topic: str, partitions: set[int]) -> None:
        if topic == self.config.action_requests_topic:
            self.runner.release(partitions)

    def _ready(self) -> bool:
        recovery = self.faust.tables.recovery  # type: ignore[attr-defined]
        return not self.faust.rebalancing and recovery.completed.is_set()

    async def _action_dead_letter(self, letter: DeadLetter, entry: LedgerEntry) -> None:
        async def write() -> None:
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

        await keep_trying("Writing the dead letter of a failed action", write)

    # -- agents -----------------------------------------------------------------------------

    def _wire(self) -> None:
        self._wire_agents()
        self._wire_lifecycle()
        self._wire_ownership()

    def _wire_ownership(self) -> None:
        app = self.faust

        @app.on_partitions_assigned.connect  # type: ignore[arg-type]
        async def assigned(_app: Any, assigned: set[Any], **_kwargs: Any) -> None:
            self.ownership.assign((tp.topic, tp.partition) for tp in assigned)

        @app.on_partitions_revoked.connect  # type: ignore[arg-type]
        async def revoked(_app: Any, revoked: set[Any], **_kwargs: Any) -> None:
            self.ownership.revoke((tp.topic, tp.partition) for tp in revoked)

        @app.on_rebalance_complete.connect  # type: ignore[arg-type]
        async def rewind_uncommitted(_app: Any, **_kwargs: Any) -> None:
            await self._rewind_uncommitted()

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
            async for event in stream.events():
                await self.guard.run(
                    event.message, stage, functools.partial(handler, event.message)
                )

        self.faust.agent(topic, name=name)(consume)

    def _wire_agents(self) -> None:
        self._agent(
            self.triggers_topic, "catcher.triggers", DeadLetterStage.decode, self._on_trigger
        )
        self._agent(self.series_topic, "catcher.series", DeadLetterStage.plan, self._on_series)
        self._agent(
            self.requests_topic, "catcher.requests", DeadLetterStage.execute, self._on_request
        )

    def _wire_lifecycle(self) -> None:
        app = self.faust

        @app.task
        async def register_schemas() -> None:
            ids = await keep_trying("Registering the Avro schemas", self.context.codec.register)
            logger.info("Registered schemas", subjects=ids, rules=len(self.rules))

        if self.config.mirror_enabled:

            @app.task
            async def run_mirror() -> None:
                from .services.mirror import Mirror  # noqa: PLC0415

                async def start() -> Mirror:
                    return Mirror.from_config(
                        self.config, self.context.codec, self._send, self.context.http
                    )

                mirror = await keep_trying("Starting the mirror", start)
                await mirror.run(self.config.mirror_interval, asyncio.Event())

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

    # -- handlers ---------------------------------------------------------------------------

    async def _on_trigger(self, message: Any) -> None:
        if not isinstance(message.value, bytes):
            raise Unprocessable(
                DeadLetterStage.decode,
                "Cannot decode the trigger: the record has no value (a tombstone?).",
                "RecordError",
            )
        try:
            trigger = Trigger.from_avro(await self.context.codec.decode("triggers", message.value))
        except SchemaRegistryUnavailableError:
            raise  # not the record's fault: the guard retries it in place
        except RecordError as exc:
            raise Unprocessable(
                DeadLetterStage.decode, f"Cannot decode the trigger: {exc}", type(exc).__name__
            ) from exc
        except ValidationError as exc:
            raise Unprocessable(
                DeadLetterStage.decode,
                f"The trigger is not valid: {describe(exc)}",
                "ValidationError",
            ) from exc
        if self.rules.get(trigger.rule_id) is None:
            raise Unprocessable(
                DeadLetterStage.plan,
                f"No rule with id {trigger.rule_id!r} is loaded (rules from"
                f" {self.config.rules_path}).",
                "UnknownRule",
                rule_id=trigger.rule_id,
                trigger_id=trigger.trigger_id,
            )
        await self._send_json(self.config.series_topic, trigger.series, trigger.to_json())

    async def _on_series(self, message: Any) -> None:
        trigger = Trigger.model_validate(_json(message.value))
        rule = self.rules.get(trigger.rule_id)
        if rule is None:  # checked upstream; rules are fixed for the life of the process
            return
        raw = self.series_state.get(trigger.series)
        state = SeriesState.model_validate(raw) if raw else None
        result = plan(rule, trigger, state)
        log = logger.bind(rule_id=trigger.rule_id, trigger_id=trigger.trigger_id)
        if result.out_of_order:
            log.info("Ignored a trigger older than the last one of its series")
            return
        if result.redelivered:
            log.info("Trigger delivered again; planning the same actions", actions=result.to_run)
        else:
            await self.series_state.put(message.partition, trigger.series, result.state.to_json())
        for decision in result.decisions:
            action = rule.action(decision.action_name)
            action_id = make_action_id(
                trigger.trigger_id, decision.action_name, trigger.generation
            )
            if decision.run:
                request = ActionRequest(
                    action_id=action_id, action_name=decision.action_name, trigger=trigger
                )
                await self._send_json(
                    self.config.action_requests_topic, action_id, request.to_json()
                )
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

    async def _on_request(self, message: Any) -> None:
        value = _json(message.value)
        if isinstance(value, dict) and value.get("cancel"):
            self._on_cancel(CancelRequest.model_validate(value))
            return
        request = ActionRequest.model_validate(value)
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
            partition=message.partition,
            state=ActionState.queued,
            message=f"Started by a {request.trigger.severity.name} trigger"
            f" ({request.trigger.source.value}).",
        )
        max_age = (action.max_age if action else None) or self.config.max_trigger_age
        age = utcnow() - request.trigger.time
        if age > max_age:
            entry = entry.model_copy(
                update={
                    "state": ActionState.expired,
                    "message": f"Not run: its trigger is {_rounded(age)} old, older than the"
                    f" maximum age of {max_age} (max_age or CATCHER_MAX_TRIGGER_AGE).",
                }
            )
            logger.warning("Expired an action whose trigger is too old", action_id=entry.action_id)
        entry = await self.ledger.put(entry)
        self.runner.ensure(entry)

    def _on_cancel(self, cancel: CancelRequest) -> None:
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


def _rounded(age: timedelta) -> timedelta:
    return timedelta(seconds=round(age.total_seconds()))


def create_app(config: Config, rules: RuleSet) -> CatcherApp:
    """Build the worker application; nothing connects until it runs."""
    return CatcherApp(config, rules)
