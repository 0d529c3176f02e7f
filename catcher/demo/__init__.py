"""``catcher demo``: the whole spine on an embedded broker, with fake services.

It starts the embedded broker and, on loopback, fakes of the Schema Registry, the OCPS
execution service, Times Square, noteburst, a webhook receiver and LOVE-manager, and the
worker as a child process with the example rules. It then fires example triggers
(WARNING, CRITICAL, recovery), acknowledges the CRITICAL alarm through the worker's API as
an operator would, prints the history as it arrives and, once every expected action has
finished (or ``--duration`` has passed, or on Ctrl-C), the history table and the alarm's
life as LOVE was sent it. Every process it started is stopped before it returns.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import time
from importlib import resources
from pathlib import Path
from typing import Any

import click
import fastavro
import httpx

from ..broker import EmbeddedBroker, free_port, stop_process
from ..config import KafkaConnectionSettings, load_config
from ..factory import Factory
from ..fakes.love import FakeLoveManager
from ..fakes.noteburst import FakeNoteburst
from ..fakes.registry import FakeSchemaRegistry
from ..fakes.times_square import FakePage, FakeTimesSquare
from ..fakes.uws import FakeUws
from ..fakes.webhook import FakeWebhook
from ..kafka import ensure_topics, make_producer
from ..models.enums import Severity, TriggerSource
from ..models.records import ActionEvent, Trigger
from ..output import HISTORY_HEADERS, format_table, history_rows
from ..services.execution.history import OperatorTopics

__all__ = ["EXPECTED_FINISHED", "run_demo", "worker_environment"]

RULE_ID = "demo-hexapod-temperature"
SCRIPT: list[tuple[Severity, float, str]] = [
    (Severity.WARNING, 61.5, "Actuator 3 temperature 61.5 C is above the 60 C warning level."),
    (Severity.CRITICAL, 72.0, "Actuator 3 temperature 72.0 C is above the 70 C critical level."),
    (Severity.NONE, 48.0, "Actuator 3 temperature 48.0 C is back below the warning level."),
]
EXPECTED_FINISHED = 7
"""notify on WARNING, CRITICAL and the recovery; report, reprocess and page on CRITICAL;
the stream rule's notify on its first WARNING window."""
STREAM_TOPIC = "lsst.sal.MTHexapod.electrical"
STREAM_ALARM = "demo-hexapod-stream:salIndex=1"
TELEMETRY_SCHEMA = {
    "type": "record",
    "name": "electrical",
    "namespace": "lsst.sal.MTHexapod",
    "doc": "Synthetic hexapod telemetry for the demo, shaped as SAL's (arrays per motor).",
    "fields": [
        {"name": "private_efdStamp", "type": "double", "doc": "UTC unix seconds."},
        {"name": "private_kafkaStamp", "type": "double", "doc": "TAI unix seconds."},
        {"name": "salIndex", "type": "long", "doc": "SAL index of the hexapod."},
        {
            "name": "motorCurrent",
            "type": {"type": "array", "items": "double"},
            "doc": "Current of each of the six motors (A).",
        },
        {
            "name": "motorVoltage",
            "type": {"type": "array", "items": "double"},
            "doc": "Voltage of each of the six motors (V).",
        },
    ],
}
# Motor 2's current at 4 Hz for 8 s: normal, then past 2 A (WARNING), then normal again.
PROFILE = [1.6, 1.7, 2.3, 2.5, 1.9, 1.7, 1.6, 1.6]
TAGS = {"salIndex": "1", "day_obs": "20261123"}


ALARM = f"{RULE_ID}:day_obs=20261123,salIndex=1"
OPERATOR = "demo-operator"


async def _acknowledge(
    api: str, worker: subprocess.Popen[bytes], elapsed: float, duration: float
) -> None:
    """Acknowledge the CRITICAL alarm as an operator does (``catcher alarms ack``)."""
    deadline = asyncio.get_running_loop().time() + max(duration - elapsed, 1)
    async with httpx.AsyncClient(timeout=10) as client:
        while asyncio.get_running_loop().time() < deadline and worker.poll() is None:
            with contextlib.suppress(httpx.HTTPError):
                alarm = (await client.get(f"{api}/alarms/{ALARM}")).json()
                if alarm.get("max_severity") == "CRITICAL":
                    answer = await client.post(
                        f"{api}/alarms/acknowledge",
                        json={"name": ALARM, "severity": "CRITICAL", "comment": "On it."},
                        headers={"X-Auth-Request-User": OPERATOR},
                    )
                    if answer.status_code == httpx.codes.ACCEPTED:
                        click.echo(f"Acknowledged the CRITICAL alarm {ALARM} as {OPERATOR}")
                        await _until_acknowledged(client, api, deadline)
                        return
            await asyncio.sleep(0.5)
    click.echo("The alarm was not CRITICAL in time; not acknowledged.", err=True)


async def _until_acknowledged(client: httpx.AsyncClient, api: str, deadline: float) -> None:
    while asyncio.get_running_loop().time() < deadline:
        with contextlib.suppress(httpx.HTTPError):
            if (await client.get(f"{api}/alarms/{ALARM}")).json().get("acknowledged"):
                return
        await asyncio.sleep(0.3)


async def _shown_in_love(
    love: FakeLoveManager,
    severity: Severity,
    worker: subprocess.Popen[bytes],
    limit: float,
    name: str = ALARM,
) -> None:
    """Wait until LOVE was sent the alarm at ``severity`` (so each step is seen)."""
    deadline = asyncio.get_running_loop().time() + max(limit, 5)
    while asyncio.get_running_loop().time() < deadline and worker.poll() is None:
        maps = love.alarm_maps()
        fields = maps[-1].get(name) if maps else None
        if fields is not None and fields["severity"]["value"] == int(severity):
            return
        await asyncio.sleep(0.2)


def _alarm_life(love: FakeLoveManager, name: str = ALARM) -> list[str]:
    """One line per distinct state of an alarm in the maps LOVE received."""
    lines: list[str] = []
    for alarm_map in love.alarm_maps():
        fields = alarm_map.get(name)
        if fields is None:
            continue
        severity = Severity(fields["severity"]["value"]).name
        maximum = Severity(fields["maxSeverity"]["value"]).name
        acked = (
            f"acknowledged by {fields['acknowledgedBy']['value']}"
            if fields["acknowledged"]["value"]
            else "not acknowledged"
        )
        line = f"severity {severity:<8} max {maximum:<8} {acked}"
        if not lines or lines[-1] != line:
            lines.append(line)
    return lines


async def _feed_telemetry(config: Any, registry_url: str) -> None:
    """Synthetic telemetry for the stream rule, in the Confluent wire format, near now."""
    async with httpx.AsyncClient(timeout=10) as client:
        answer = await client.post(
            f"{registry_url}/subjects/{STREAM_TOPIC}-value/versions",
            json={"schema": json.dumps(TELEMETRY_SCHEMA)},
        )
    schema_id = int(answer.json()["id"])
    parsed = fastavro.parse_schema(TELEMETRY_SCHEMA)
    producer = make_producer(config)
    await producer.start()
    try:
        start = (time.time() // 2) * 2 + 2
        for second, value in enumerate(PROFILE):
            for quarter in range(4):
                stamp = start + second + quarter / 4
                body = io.BytesIO()
                body.write(struct.pack(">bI", 0, schema_id))
                currents = [1.5, 1.4, value, 1.6, 1.5, 1.4]
                record = {
                    "private_efdStamp": stamp,
                    "private_kafkaStamp": stamp + 37,
                    "salIndex": 1,
                    "motorCurrent": currents,
                    "motorVoltage": [24.0] * 6,
                }
                fastavro.schemaless_writer(body, parsed, record)
                await producer.send_and_wait(STREAM_TOPIC, body.getvalue(), key=b"")
    finally:
        await producer.stop()
    click.echo(
        f"Fed {len(PROFILE) * 4} telemetry samples to {STREAM_TOPIC} for the stream rule"
        " demo-hexapod-stream (motor 2's current peaking at 2.5 A)"
    )


def _copy_rules(target: Path) -> Path:
    source = resources.files("catcher").joinpath("demo")
    for name in ("hexapod.yaml", "hexapod-report.ipynb"):
        (target / name).write_text(source.joinpath(name).read_text())
    return target


EMBEDDED_BROKER_ENV = {
    # The embedded broker has no idempotent producers and misreports a partition's end
    # offset after batched writes, so the demo sends one record per batch without them.
    "CATCHER_PRODUCER_MAX_BATCH_SIZE": "16",
    "CATCHER_PRODUCER_IDEMPOTENCE": "false",
}


def worker_environment(
    bootstrap: str, registry_url: str, rules_path: Path, **extra: str
) -> dict[str, str]:
    """Environment for a worker on a local broker with quick group settings (and the tests')."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CATCHER_", "KAFKA_"))}
    env.update(
        KAFKA_BOOTSTRAP_SERVERS=bootstrap,
        CATCHER_SCHEMA_REGISTRY_URL=registry_url,
        CATCHER_RULES_PATH=str(rules_path),
        CATCHER_BROKER_SESSION_TIMEOUT="10",
        CATCHER_BROKER_HEARTBEAT_INTERVAL="1",
        CATCHER_POLL_INTERVAL="0.5",
        CATCHER_RESUME_INTERVAL="1",
        CATCHER_LOG_PROFILE="development",
        CATCHER_HTTP_PORT="0",
        CATCHER_API_ANONYMOUS_USER="local",
    )
    env.update(extra)
    return env


def _report(
    seen: list[ActionEvent],
    love: FakeLoveManager,
    fakes: tuple[FakeUws, FakeTimesSquare, FakeNoteburst, FakeWebhook],
) -> None:
    """The history table, the alarm's life in LOVE, and what each fake received."""
    uws, times_square, noteburst, webhook = fakes
    click.echo("\nAction history (catcher history):")
    click.echo(format_table(HISTORY_HEADERS, history_rows(seen)))
    click.echo(f"\nThe alarm {ALARM}, as LOVE was sent it (csc Catcher, stream 'stream'):")
    for line in _alarm_life(love):
        click.echo(f"  {line}")
    click.echo(f"\nThe alarm {STREAM_ALARM}, raised from the telemetry stream:")
    for line in _alarm_life(love, STREAM_ALARM):
        click.echo(f"  {line}")
    click.echo(
        f"  ({len(love.alarm_maps())} alarm maps and {len(love.heartbeats())} heartbeats in all)"
    )
    click.echo(
        f"\nThe fake OCPS received {uws.count('PUT')} job(s); the fake Times Square computed"
        f" {sum(times_square.executions.values())} page(s); the fake noteburst received"
        f" {noteburst.count('POST')} notebook(s); the fake webhook received"
        f" {webhook.count('POST')} POST(s)."
    )


async def _fire_script(
    operator: OperatorTopics,
    api: str,
    worker: subprocess.Popen[bytes],
    love: FakeLoveManager,
    duration: float,
) -> None:
    """Publish the scripted triggers, each once the previous one shows in LOVE."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    for severity, value, reason in SCRIPT:
        if severity == Severity.NONE:
            await _acknowledge(api, worker, loop.time() - started, duration)
        trigger = Trigger.create(
            RULE_ID, severity, reason=reason, source=TriggerSource.manual, tags=TAGS, value=value
        )
        await operator.publish_trigger(trigger)
        click.echo(f"Fired {severity.name:<8} trigger {trigger.trigger_id}")
        await _shown_in_love(love, severity, worker, duration - (loop.time() - started))


async def _serve(api: str, worker: subprocess.Popen[bytes], workdir: Path) -> int:
    """Keep everything running for the operator page until Ctrl-C."""
    click.echo(f"\nOperator page: {api}/  (alarm board, live; the API: {api}/openapi.json)")
    click.echo("Serving until Ctrl-C.", err=True)
    await asyncio.get_running_loop().run_in_executor(None, worker.wait)
    click.echo(
        f"The worker exited with code {worker.returncode}; see {workdir}/worker.log", err=True
    )
    return 1


async def _demo(duration: float, workdir: Path, *, serve: bool = False) -> int:
    loop = asyncio.get_running_loop()
    started = loop.time()
    broker = EmbeddedBroker(log_path=workdir / "broker.log").start()
    registry = await FakeSchemaRegistry().start()
    noteburst = await FakeNoteburst(queue_time=1.0, run_time=2.0).start()
    webhook = await FakeWebhook().start()
    uws = await FakeUws(run_time=2.0).start()
    times_square = await FakeTimesSquare(
        pages={
            "hexapod-temperature": FakePage(
                parameters={"trigger_id": {"type": "string"}, "sal_index": {"type": "integer"}},
                run_time=1.5,
            )
        }
    ).start()
    love = await FakeLoveManager().start()
    port = free_port()
    api = f"http://127.0.0.1:{port}"
    worker: subprocess.Popen[bytes] | None = None
    worker_log = (workdir / "worker.log").open("wb")
    exits = contextlib.AsyncExitStack()
    try:
        env = worker_environment(
            broker.bootstrap_servers,
            registry.url,
            _copy_rules(workdir),
            CATCHER_NOTEBURST_URL=noteburst.url,
            CATCHER_NOTEBURST_TOKEN=noteburst.token,
            CATCHER_DEMO_WEBHOOK_URL=f"{webhook.url}/services/demo",
            CATCHER_OCPS_URL=uws.url,
            CATCHER_OCPS_USERNAME=uws.username,
            CATCHER_OCPS_PASSWORD=uws.password,
            CATCHER_TIMES_SQUARE_URL=times_square.url,
            CATCHER_TIMES_SQUARE_TOKEN=times_square.token,
            CATCHER_LOG_LEVEL="INFO",
            CATCHER_HTTP_PORT=str(port),
            CATCHER_LOVE_URL=love.url,
            CATCHER_LOVE_PASSWORD=love.password,
            CATCHER_STREAM_GRACE="1",
            **EMBEDDED_BROKER_ENV,
        )
        click.echo(f"Embedded broker on {broker.bootstrap_servers}; logs in {workdir}")
        # The telemetry topic exists before the worker subscribes to it, with one partition.
        await ensure_topics(
            load_config(kafka=KafkaConnectionSettings(bootstrap_servers=broker.bootstrap_servers)),
            [STREAM_TOPIC],
        )
        worker = subprocess.Popen(  # noqa: ASYNC220 - starting it does not block
            [sys.executable, "-m", "catcher", "worker"],
            env=env,
            stdout=worker_log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        config = load_config(
            kafka=KafkaConnectionSettings(bootstrap_servers=broker.bootstrap_servers),
            schema_registry_url=registry.url,
            producer_max_batch_size=16,
            producer_idempotence=False,
        )
        factory = await exits.enter_async_context(Factory.standalone(config))
        operator = factory.operator_topics()
        await _fire_script(operator, api, worker, love, duration - (loop.time() - started))
        await _feed_telemetry(config, registry.url)
        seen: list[ActionEvent] = []
        while loop.time() - started < duration:
            if worker.poll() is not None:
                click.echo(
                    f"The worker exited with code {worker.returncode}; see {workdir}/worker.log",
                    err=True,
                )
                return 1
            with contextlib.suppress(ConnectionError, TimeoutError):
                events = await operator.read_history()
                for event in events[len(seen) :]:
                    click.echo(
                        f"  {event.action_name:<9} {event.state.value:<10} {event.message or ''}"
                    )
                seen = events
            if sum(1 for e in seen if e.state.terminal) >= EXPECTED_FINISHED:
                break
            await asyncio.sleep(1.0)
        else:
            click.echo(f"Stopped after {duration:g} s; not every action has finished.", err=True)
        # The stream's alarm: WARNING while hot, back to NONE once the cool windows close.
        await _shown_in_love(
            love, Severity.NONE, worker, duration - (loop.time() - started), STREAM_ALARM
        )
        _report(seen, love, (uws, times_square, noteburst, webhook))
        return await _serve(api, worker, workdir) if serve else 0
    finally:
        await exits.aclose()
        if worker is not None:
            await loop.run_in_executor(None, stop_process, worker)
        worker_log.close()
        await love.stop()
        for fake in (times_square, uws, webhook, noteburst, registry):
            await fake.stop()
        broker.stop()


def run_demo(duration: float, *, serve: bool = False) -> int:
    """Run the demo (then, with ``serve``, keep serving until Ctrl-C); the exit code."""
    workdir = Path(tempfile.mkdtemp(prefix="catcher-demo-"))
    try:
        return asyncio.run(_demo(duration, workdir, serve=serve))
    except KeyboardInterrupt:
        click.echo("Interrupted; everything the demo started has been stopped.", err=True)
        return 0
    finally:
        if os.environ.get("CATCHER_DEMO_KEEP") != "1":
            shutil.rmtree(workdir, ignore_errors=True)
