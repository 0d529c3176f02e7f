"""A per-test Catcher stack: fakes on loopback, unique topics and group, worker processes."""

from __future__ import annotations

import asyncio
import functools
import itertools
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from catcher import topics
from catcher.avro import AvroCodec
from catcher.broker import stop_process
from catcher.config import Config, KafkaConnectionSettings, load_config
from catcher.demo import worker_environment
from catcher.fakes.noteburst import FakeNoteburst
from catcher.fakes.registry import FakeSchemaRegistry
from catcher.fakes.times_square import FakeTimesSquare
from catcher.fakes.uws import FakeUws
from catcher.fakes.webhook import FakeWebhook
from catcher.kafka import ensure_topics, make_producer, read_topic
from catcher.models.enums import Severity, TriggerSource
from catcher.models.records import ActionEvent, DeadLetter, Trigger
from catcher.services.execution.history import OperatorTopics
from tests.support.kafka import KafkaBroker

_counter = itertools.count()

NOTEBOOK = resources.files("catcher").joinpath("demo", "hexapod-report.ipynb").read_text()


@dataclass
class WorkerProcess:
    """`catcher worker` as a child process, with its output in a log file."""

    env: dict[str, str]
    log_path: Path
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> WorkerProcess:
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "catcher", "worker"],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        log.close()
        return self

    def kill(self) -> None:
        """SIGKILL: no clean-up, no offset commit, no leaving the group."""
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()

    def stop(self) -> None:
        if self.process is not None:
            stop_process(self.process)

    @property
    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def assert_alive(self) -> None:
        assert self.process is not None
        if self.process.poll() is not None:
            raise AssertionError(
                f"The worker exited with code {self.process.returncode}:\n{self.log[-4000:]}"
            )


@dataclass
class Stack:
    """Everything one end-to-end test needs."""

    bootstrap: str
    workdir: Path
    registry: FakeSchemaRegistry
    noteburst: FakeNoteburst
    webhook: FakeWebhook
    uws: FakeUws
    times_square: FakeTimesSquare
    prefix: str = field(default_factory=lambda: f"test{os.getpid()}n{next(_counter)}.catcher")
    workers: list[WorkerProcess] = field(default_factory=list)
    extra_env: dict[str, str] = field(default_factory=dict)
    partitions: int = 1
    broker: KafkaBroker | None = None

    @property
    def config(self) -> Config:
        return load_config(
            kafka=KafkaConnectionSettings(bootstrap_servers=self.bootstrap),
            schema_registry_url=self.registry.url,
            topic_prefix=self.prefix,
            app_id=self.prefix.replace(".", "-"),
            rules_path=self.workdir / "rules",
            topic_partitions=self.partitions,
        )

    def write_rules(self, text: str) -> Path:
        rules = self.workdir / "rules"
        rules.mkdir(exist_ok=True)
        (rules / "report.ipynb").write_text(NOTEBOOK)
        (rules / "rules.yaml").write_text(text)
        return rules

    def worker_env(self) -> dict[str, str]:
        config = self.config
        return (
            worker_environment(
                self.bootstrap,
                self.registry.url,
                config.rules_path,
                CATCHER_TOPIC_PREFIX=config.topic_prefix,
                CATCHER_APP_ID=config.app_id,
                CATCHER_NOTEBURST_URL=self.noteburst.url,
                CATCHER_NOTEBURST_TOKEN=self.noteburst.token,
                CATCHER_TEST_WEBHOOK_URL=f"{self.webhook.url}/hooks/secret-path-abc123",
                CATCHER_OCPS_URL=self.uws.url,
                CATCHER_OCPS_USERNAME=self.uws.username,
                CATCHER_OCPS_PASSWORD=self.uws.password,
                CATCHER_TIMES_SQUARE_URL=self.times_square.url,
                CATCHER_TIMES_SQUARE_TOKEN=self.times_square.token,
                CATCHER_RETRY_BACKOFF_INITIAL="0.3",
                CATCHER_RETRY_BACKOFF_MAX="1",
                CATCHER_RETRY_ATTEMPT_TIMEOUT="5",
                CATCHER_POLL_INTERVAL="0.3",
                CATCHER_LOG_LEVEL="INFO",
                CATCHER_TOPIC_PARTITIONS=str(self.partitions),
            )
            | self.extra_env
        )

    async def start_worker(self) -> WorkerProcess:
        config = self.config
        await ensure_topics(config, [topics.TRIGGERS, topics.ACTIONS, topics.DEADLETTER])
        worker = WorkerProcess(self.worker_env(), self.workdir / f"worker{len(self.workers)}.log")
        self.workers.append(worker.start())
        return worker

    async def cli(self, *args: str) -> tuple[int, str, str]:
        """Run `catcher ARGS` as a user would, against this stack."""
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "catcher",
            *args,
            env=self.worker_env(),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await process.communicate()
        assert process.returncode is not None
        return process.returncode, out.decode(), err.decode()

    async def publish(self, rule_id: str, severity: Severity, **kwargs: Any) -> Trigger:
        kwargs.setdefault("reason", f"Test {severity.name} trigger.")
        trigger = Trigger.create(rule_id, severity, source=TriggerSource.manual, **kwargs)
        await self.operator.publish_trigger(trigger)
        return trigger

    async def publish_many(self, triggers: list[Trigger]) -> None:
        """Publish triggers in order, with one producer."""
        config = self.config
        await ensure_topics(config, [topics.TRIGGERS])
        producer = make_producer(config)
        await producer.start()
        try:
            for trigger in triggers:
                value = await self.encode_trigger(trigger)
                await producer.send_and_wait(config.triggers_topic, value, key=trigger.key)
        finally:
            await producer.stop()

    async def publish_raw(self, key: bytes | None, value: bytes | None) -> None:
        config = self.config
        await ensure_topics(config, [topics.TRIGGERS])
        producer = make_producer(config)
        await producer.start()
        try:
            await producer.send_and_wait(config.triggers_topic, value, key=key)
        finally:
            await producer.stop()

    async def encode_trigger(self, trigger: Trigger) -> bytes:
        return await self.codec.encode("triggers", trigger.to_avro())

    @functools.cached_property
    def codec(self) -> AvroCodec:
        return AvroCodec(self.registry.url, self.prefix)

    @functools.cached_property
    def operator(self) -> OperatorTopics:
        """Catcher's topics as the command line reads and writes them."""
        return OperatorTopics(self.config, self.codec)

    async def history(self) -> list[ActionEvent]:
        return await self.operator.read_history()

    async def dead_letters(self) -> list[DeadLetter]:
        config = self.config
        codec = AvroCodec(self.registry.url, self.prefix)
        return [
            DeadLetter.model_validate(await codec.decode("deadletter", message.value))
            for message in await read_topic(config, config.deadletter_topic)
        ]

    async def wait_for(
        self,
        check: Callable[[], Any],
        *,
        timeout: float = 60.0,
        what: str = "condition",
    ) -> Any:
        """Poll an async check until it returns something truthy; fail with the worker log."""
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            result = await check()
            if result:
                return result
            if self.workers:
                self.workers[-1].assert_alive()
            if asyncio.get_running_loop().time() > deadline:
                logs = "\n".join(w.log[-3000:] for w in self.workers)
                raise AssertionError(f"Timed out waiting for {what}. Worker logs:\n{logs}")
            await asyncio.sleep(0.5)

    async def wait_history(
        self,
        predicate: Callable[[list[ActionEvent]], bool],
        *,
        timeout: float = 60.0,
        what: str = "history",
    ) -> list[ActionEvent]:
        async def check() -> list[ActionEvent] | None:
            events = await self.history()
            return events if predicate(events) else None

        return await self.wait_for(check, timeout=timeout, what=what)

    def stop(self) -> None:
        for worker in self.workers:
            worker.stop()
        if os.environ.get("CATCHER_TEST_KEEP") != "1":
            shutil.rmtree(self.workdir / "rules", ignore_errors=True)


def states(events: list[ActionEvent], action_id: str) -> list[str]:
    """The states one action went through, in order."""
    return [e.state.value for e in events if e.action_id == action_id]


def finished(events: list[ActionEvent], action_id: str) -> bool:
    return any(e.action_id == action_id and e.state.terminal for e in events)
