"""Where Catcher's objects are built: one process context, one factory.

:class:`ProcessContext` holds what a process shares (the HTTP client, the Avro codec, the
retry policy); :class:`Factory` builds everything else from it: the executors, the escalator
and the LOVE producer, the worker's services (:meth:`Factory.worker`), and for the command
line the clients it needs (:meth:`Factory.standalone`). The Faust wiring (``app.py``) and
the commands build nothing themselves.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import os
import signal
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import httpx
from aiokafka import AIOKafkaConsumer

from .actions import EXECUTORS, Executor, executor_class
from .aio import together
from .avro import AvroCodec
from .config import Config
from .exceptions import BacktestError, ConfigError
from .kafka import offsets_at
from .models.actions import WebhookAction
from .models.alarms import Alarm, AlarmCommand, AlarmCommandBatch, RuleState, Silence
from .models.records import LedgerEntry, Trigger, utcnow
from .models.rules import RuleSet
from .retry import RetryPolicy
from .services.alarms.engine import AlarmEngine
from .services.alarms.escalation import Escalator
from .services.alarms.love import LoveProducer
from .services.alarms.view import AlarmView, TopicView
from .services.evaluation.stream import StreamOwner, TelemetryReader
from .services.execution.admission import Admission
from .services.execution.history import OperatorTopics, latest_states
from .services.execution.publisher import Publisher
from .services.execution.runner import ActionRunner
from .services.guard import Backoff, Guard, keep_trying
from .services.influx.mirror import Mirror
from .services.planning.intake import Intake
from .services.planning.series import SeriesOwner
from .services.singletons import SingletonJobs
from .storage.influxdb import InfluxQL
from .storage.ledger import Ledger
from .storage.tables import ChangelogTable, DurableTable, Ownership
from .topics import ALARM_TABLE, SERIES_STATE_TABLE, STREAM_STATE_TABLE
from .types import Send, SendSoon
from .web.alarms import AlarmApi

if TYPE_CHECKING:
    import faust

__all__ = [
    "Factory",
    "ProcessContext",
    "WorkerServices",
    "check_rules_against_config",
    "create_faust_app",
    "rule_secrets",
]


def check_rules_against_config(rules: RuleSet, config: Config) -> None:
    """Refuse to start when a rule needs something the configuration lacks."""
    problems = [
        f"rule {rule.id!r} action {action.name!r}: {message}"
        for rule in rules.rules.values()
        for action in rule.actions
        for message in executor_class(action.type).missing_settings(
            action, config.service(action.type)
        )
    ]
    if problems:
        raise ConfigError(
            "The rules need settings that are missing:\n  " + "\n  ".join(dict.fromkeys(problems))
        )
    longest = longest_max_age(rules)
    if config.ledger_retention is not None and longest and config.ledger_retention <= longest:
        raise ConfigError(
            f"Set CATCHER_LEDGER_RETENTION longer than {longest}, the longest max_age of the"
            " rules' actions: a trigger delivered again after its finished action left the"
            " ledger would run it twice."
        )


def longest_max_age(rules: RuleSet) -> timedelta | None:
    """The longest ``max_age`` of the rules' actions, if any sets one."""
    ages = [a.max_age for r in rules.rules.values() for a in r.actions if a.max_age]
    return max(ages, default=None)


def rule_secrets(rules: RuleSet) -> list[str]:
    """The secret values the rules point at: webhook URLs and tokens.

    They come from the environment or mounted files; the worker registers them with
    :mod:`catcher.redact` so that they are never logged.
    """
    found: list[str] = []
    for rule in rules.rules.values():
        for action in rule.actions:
            if isinstance(action, WebhookAction):
                found += [os.environ.get(n or "", "") for n in (action.url_env, action.token_env)]
                if action.url_file is not None:
                    with contextlib.suppress(OSError):
                        found.append(action.url_file.read_text().strip())
    return [value for value in found if value]


@dataclass(frozen=True)
class ProcessContext:
    """The shared HTTP client, the Avro codec and the executors of one process."""

    config: Config
    http: httpx.AsyncClient
    codec: AvroCodec
    policy: RetryPolicy

    @classmethod
    def from_config(cls, config: Config) -> ProcessContext:
        """Build the context; nothing connects until first use."""
        policy = RetryPolicy.from_settings(config.retry)
        http = httpx.AsyncClient(
            timeout=httpx.Timeout(
                policy.attempt_timeout, connect=min(10.0, policy.attempt_timeout)
            ),
            follow_redirects=False,
            headers={"User-Agent": "catcher"},
        )
        codec = AvroCodec(config.schema_registry_url, config.topic_prefix)
        return cls(config=config, http=http, codec=codec, policy=policy)

    async def aclose(self) -> None:
        """Close the HTTP client."""
        await self.http.aclose()


async def _decode_silence(value: bytes) -> Silence:
    return Silence.model_validate_json(value)


async def _decode_rule_state(value: bytes) -> RuleState:
    return RuleState.model_validate_json(value)


ACTIONS_SHOWN_SINCE = timedelta(days=1)
"""How far back the operator page looks for an alarm's actions."""
ACTIONS_SHOWN = 20
"""Most actions the operator page shows for one alarm."""


class _Outbox:
    """How the worker's services write to Catcher's own topics (each write acknowledged)."""

    def __init__(self, config: Config, codec: AvroCodec, send: Send, send_soon: SendSoon) -> None:
        self._config = config
        self._codec = codec
        self._send = send
        self._send_soon = send_soon

    async def json(self, topic: str, key: str, value: dict[str, Any]) -> None:
        """A JSON record (the internal topics, silences)."""
        await self._send(topic, key.encode(), json.dumps(value).encode())

    async def alarm_changed(self, alarm: Alarm, command: AlarmCommand | None) -> None:
        """An alarm's new state, with the command that changed it."""
        value = await self._codec.encode("alarms", alarm.to_avro(command))
        await self._send(self._config.alarms_topic, alarm.name.encode(), value)

    async def triggers(self, triggers: list[Trigger]) -> None:
        """The stream engine's triggers, in order, all acknowledged (one round trip)."""
        deliveries = []
        for trigger in triggers:
            value = await self._codec.encode("triggers", trigger.to_avro())
            topic = self._config.triggers_topic
            deliveries.append(await self._send_soon(topic, trigger.key, value, None))
        await together(*deliveries)

    async def silence(self, silence: Silence) -> None:
        """A silence, new or expired."""
        await self.json(self._config.silences_topic, silence.id, silence.to_json())

    async def rule_state(self, state: RuleState) -> None:
        """A rule's alarms disabled or enabled."""
        await self.json(self._config.rule_states_topic, state.rule_id, state.to_json())

    async def commands(self, commands: list[AlarmCommand]) -> None:
        """An operator's commands: one record, so the request is durable whole or not at all."""
        first = commands[0]
        if len(commands) == 1:
            await self.json(self._config.series_topic, first.series, first.to_json())
            return
        batch = AlarmCommandBatch(commands=commands)
        await self.json(self._config.series_topic, first.series, batch.to_json())


@dataclass
class WorkerServices:
    """The worker's services, wired to each other; the Faust app calls them."""

    ownership: Ownership
    publisher: Publisher
    guard: Guard
    ledger: Ledger
    runner: ActionRunner
    admission: Admission
    view: AlarmView
    silences: TopicView[Silence]
    rule_states: TopicView[RuleState]
    alarms: AlarmEngine
    series: SeriesOwner
    intake: Intake
    telemetry: TelemetryReader | None
    stream: StreamOwner | None
    love: LoveProducer | None
    api: AlarmApi
    singletons: SingletonJobs


class Factory:
    """Builds Catcher's objects for one process."""

    def __init__(self, context: ProcessContext) -> None:
        self.context = context
        self.config = context.config

    @classmethod
    @contextlib.asynccontextmanager
    async def standalone(cls, config: Config) -> AsyncIterator[Factory]:
        """A factory for one command-line command; its HTTP client is closed after."""
        context = ProcessContext.from_config(config)
        try:
            yield cls(context)
        finally:
            await context.aclose()

    def executors(self) -> dict[str, Executor[Any, Any]]:
        """One executor per action type."""
        return {
            executor.type: executor.create(self.context.http, self.config.service(executor.type))
            for executor in EXECUTORS
        }

    def escalator(self) -> Escalator | None:
        """The pager of unacknowledged CRITICAL alarms, when one is configured."""
        if not self.config.escalation_url:
            return None
        key = self.config.escalation_key
        return Escalator(
            self.config.escalation_url, key.get_secret_value() if key else "", self.context.http
        )

    def love_producer(self, alarms: Callable[[], dict[str, Alarm]]) -> LoveProducer | None:
        """The producer that shows ``alarms()`` in LOVE, when LOVE is configured."""
        if not self.config.love_url:
            return None
        password = self.config.love_password
        return LoveProducer(
            self.config.love_url, password.get_secret_value() if password else "", alarms
        )

    def operator_topics(self) -> OperatorTopics:
        """What the command line reads from and sends to Catcher's topics."""
        return OperatorTopics(self.config, self.context.codec)

    async def actions_of(self, rule_id: str, tags: dict[str, str]) -> list[dict[str, Any]]:
        """The latest state of each action the last day's triggers of a series started."""
        topics = self.operator_topics()
        since = utcnow() - ACTIONS_SHOWN_SINCE
        triggers = await topics.read_triggers(since)
        ids = {t.trigger_id for t in triggers if t.rule_id == rule_id and t.tags == tags}
        events = [e for e in await topics.read_history(since) if e.trigger_id in ids]
        return [
            {
                "time": e.time.isoformat(),
                "action": e.action_name,
                "type": e.action_type,
                "state": e.state.value,
                "severity": e.severity,
                "message": e.message or "",
                "link": e.link or "",
            }
            for e in latest_states(events)[-ACTIONS_SHOWN:]
        ]

    def efd(self) -> InfluxQL:
        """The EFD's InfluxDB 1.x (backtests)."""
        config = self.config
        auth = None
        if config.efd_username:
            password = config.efd_password.get_secret_value() if config.efd_password else ""
            auth = httpx.BasicAuth(config.efd_username, password)
        return InfluxQL(
            self.context.http,
            config.efd_url,
            config.efd_database,
            what="the EFD",
            error=BacktestError,
            auth=auth,
            timeout=120.0,
        )

    def mirror(self, send: Send) -> Mirror:
        """The mirror of the trigger bucket, publishing with ``send``."""
        return Mirror.from_config(self.config, self.context.codec, send, self.context.http)

    def worker(
        self,
        rules: RuleSet,
        send_soon: SendSoon,
        table: Callable[[str], ChangelogTable],
        ledger_log: ChangelogTable,
    ) -> WorkerServices:
        """The worker's services; their tables and topics come from the Faust wiring."""

        async def send_to(topic: str, key: bytes, value: bytes, partition: int | None) -> None:
            await (await send_soon(topic, key, value, partition))

        async def send(topic: str, key: bytes, value: bytes) -> None:
            await send_to(topic, key, value, None)

        config, codec = self.config, self.context.codec

        out = _Outbox(config, codec, send, send_soon)

        async def start_mirror() -> Mirror:
            return self.mirror(send)

        async def run_mirror() -> None:
            mirror = await keep_trying("Starting the mirror", start_mirror)
            await mirror.run(config.mirror_interval, asyncio.Event())

        ownership = Ownership()
        publisher = Publisher(
            codec,
            send,
            config.actions_topic,
            config.deadletter_topic,
            max_record_size=config.producer_max_request_size,
            triggers_topic=config.triggers_topic,
        )
        guard = Guard(publisher.dead_letter, Backoff)
        ledger = Ledger(
            ledger_log,
            publisher.entry_changed,
            written=_crash_hook(),
            sent_events=self.operator_topics().sent_events,
        )
        runner = ActionRunner(
            ledger=ledger,
            rules=rules,
            executors=self.executors(),
            policy=self.context.policy,
            poll_interval=config.poll_interval,
            poll_timeout=config.poll_timeout,
            failures=publisher,
            ownership=ownership,
            topic=config.action_requests_topic,
            limits=config.concurrency,
        )
        view = AlarmView(config, codec)
        silences: TopicView[Silence] = TopicView(config, config.silences_topic, _decode_silence)
        rule_states: TopicView[RuleState] = TopicView(
            config, config.rule_states_topic, _decode_rule_state
        )
        alarms = AlarmEngine(
            rules,
            DurableTable(table(ALARM_TABLE)),
            out.alarm_changed,
            escalator=self.escalator(),
            policy=self.context.policy,
            silences=silences,
            partitions=config.topic_partitions,
            rule_states=rule_states,
        )
        series = SeriesOwner(
            rules,
            DurableTable(table(SERIES_STATE_TABLE)),
            out.json,
            publisher.action_event,
            config.action_requests_topic,
            alarms=alarms,
        )
        stream_rules = rules.by_engine("stream", config.default_engine)
        telemetry, stream = None, None
        if stream_rules:
            telemetry = TelemetryReader(
                stream_rules,
                decode=codec.decode_any,
                guard=guard,
                send=send_to,
                samples_topic=config.samples_topic,
                partitions=config.topic_partitions,
                grace=timedelta(seconds=config.stream_grace),
                offsets_at=functools.partial(offsets_at, config),
                topic_prefix=config.telemetry_topic_prefix,
            )
            stream = StreamOwner(
                stream_rules,
                DurableTable(table(STREAM_STATE_TABLE)),
                out.triggers,
                timedelta(seconds=config.stream_grace),
            )
        love = self.love_producer(lambda: view.alarms)
        if love is not None:
            view.on_change(love.changed)
        return WorkerServices(
            ownership=ownership,
            publisher=publisher,
            guard=guard,
            ledger=ledger,
            runner=runner,
            admission=Admission(rules, ledger, runner, config.max_trigger_age),
            view=view,
            silences=silences,
            rule_states=rule_states,
            alarms=alarms,
            series=series,
            intake=Intake(codec, rules, out.json, config.series_topic, config.rules_path, series),
            telemetry=telemetry,
            stream=stream,
            love=love,
            api=AlarmApi(
                view,
                out.commands,
                silences=silences,
                save_silence=out.silence,
                prefix=config.path_prefix,
                rules=rules,
                rule_states=rule_states,
                save_rule_state=out.rule_state,
                frame_ancestors=config.frame_ancestors,
                actions_of=self.actions_of,
            ),
            singletons=SingletonJobs(
                lambda: ownership.owns(config.triggers_topic, 0),
                {
                    "love-producer": love.run if love is not None else None,
                    "mirror": run_mirror if config.mirror_enabled else None,
                },
            ),
        )


CRASH_ENV = "CATCHER_TEST_CRASH_AFTER_CHANGELOG"
"""For fault tests only: a state name; the worker SIGKILLs itself right after the ledger
write of that state is acknowledged, before its history event is sent."""


def _crash_hook() -> Callable[[LedgerEntry], None]:
    """The ledger's after-write hook: nothing, unless a fault test asks for a crash."""
    state = os.environ.get(CRASH_ENV)

    def crash(entry: LedgerEntry) -> None:
        if entry.state.value == state:
            os.kill(os.getpid(), signal.SIGKILL)

    return crash if state else lambda _entry: None


def ledger_consumer(config: Config) -> AIOKafkaConsumer:
    """A consumer outside any group, for reading the ledger's partitions when assigned."""
    return AIOKafkaConsumer(
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_partition_fetch_bytes=8 * 1024 * 1024,
        **config.kafka.aiokafka_params(),
    )


def create_faust_app(config: Config) -> faust.App:
    """The worker's Faust application: Catcher's settings, idempotent producers."""
    import faust  # noqa: PLC0415 - heavy; only the worker needs it, not the command line

    from .faust_transport import IdempotentTransport  # noqa: PLC0415 - imports Faust

    app = faust.App(
        config.app_id,
        broker=config.kafka.faust_broker_url(),
        broker_credentials=config.kafka.faust_credentials(),
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
    if config.producer_idempotence:
        app.transport = IdempotentTransport(app.conf.broker_consumer, app)
    return app
