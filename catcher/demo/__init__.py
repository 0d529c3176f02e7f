"""``catcher demo``: the whole spine on an embedded broker, with fake services.

It starts the embedded broker and, on loopback, fakes of the Schema Registry, the OCPS
execution service, Times Square, noteburst and a webhook receiver, and the worker as a
child process with the example rules. It then fires example triggers (WARNING, CRITICAL,
recovery), prints the history as it arrives and, once every expected action has finished
(or ``--duration`` has passed, or on Ctrl-C), the history table. Every process it started
is stopped before it returns.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
from importlib import resources
from pathlib import Path

import click

from ..broker import EmbeddedBroker, stop_process
from ..config import KafkaConnectionSettings, load_config
from ..fakes.noteburst import FakeNoteburst
from ..fakes.registry import FakeSchemaRegistry
from ..fakes.times_square import FakePage, FakeTimesSquare
from ..fakes.uws import FakeUws
from ..fakes.webhook import FakeWebhook
from ..models.enums import Severity, TriggerSource
from ..models.records import ActionEvent, Trigger
from ..services.operator import (
    HISTORY_HEADERS,
    format_table,
    history_rows,
    publish_trigger,
    read_history,
)

__all__ = ["EXPECTED_FINISHED", "run_demo", "worker_environment"]

RULE_ID = "demo-hexapod-temperature"
SCRIPT: list[tuple[Severity, float, str]] = [
    (Severity.WARNING, 61.5, "Actuator 3 temperature 61.5 C is above the 60 C warning level."),
    (Severity.CRITICAL, 72.0, "Actuator 3 temperature 72.0 C is above the 70 C critical level."),
    (Severity.NONE, 48.0, "Actuator 3 temperature 48.0 C is back below the warning level."),
]
EXPECTED_FINISHED = 6
"""notify on WARNING, CRITICAL and the recovery; report, reprocess and page on CRITICAL."""
TAGS = {"salIndex": "1", "day_obs": "20261123"}


def _copy_rules(target: Path) -> Path:
    source = resources.files("catcher").joinpath("demo")
    for name in ("hexapod.yaml", "hexapod-report.ipynb"):
        (target / name).write_text(source.joinpath(name).read_text())
    return target


def worker_environment(
    bootstrap: str, registry_url: str, rules_path: Path, **extra: str
) -> dict[str, str]:
    """Environment for a worker on the embedded broker (also used by the tests)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CATCHER_", "KAFKA_"))}
    env.update(
        KAFKA_BOOTSTRAP_SERVERS=bootstrap,
        CATCHER_SCHEMA_REGISTRY_URL=registry_url,
        CATCHER_RULES_PATH=str(rules_path),
        CATCHER_PRODUCER_MAX_BATCH_SIZE="16",
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


async def _demo(duration: float, workdir: Path) -> int:
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
    worker: subprocess.Popen[bytes] | None = None
    worker_log = (workdir / "worker.log").open("wb")
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
        )
        click.echo(f"Embedded broker on {broker.bootstrap_servers}; logs in {workdir}")
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
        )
        for severity, value, reason in SCRIPT:
            trigger = Trigger.create(
                RULE_ID,
                severity,
                reason=reason,
                source=TriggerSource.manual,
                tags=TAGS,
                value=value,
            )
            await publish_trigger(config, trigger)
            click.echo(f"Fired {severity.name:<8} trigger {trigger.trigger_id}")
            await asyncio.sleep(0.5)
        seen: list[ActionEvent] = []
        while loop.time() - started < duration:
            if worker.poll() is not None:
                click.echo(
                    f"The worker exited with code {worker.returncode}; see {workdir}/worker.log",
                    err=True,
                )
                return 1
            with contextlib.suppress(ConnectionError, TimeoutError):
                events = await read_history(config)
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
        click.echo("\nAction history (catcher history):")
        click.echo(format_table(HISTORY_HEADERS, history_rows(seen)))
        click.echo(
            f"\nThe fake OCPS received {uws.count('PUT')} job(s); the fake Times Square computed"
            f" {sum(times_square.executions.values())} page(s); the fake noteburst received"
            f" {noteburst.count('POST')} notebook(s); the fake webhook received"
            f" {webhook.count('POST')} POST(s)."
        )
        return 0
    finally:
        if worker is not None:
            await loop.run_in_executor(None, stop_process, worker)
        worker_log.close()
        for fake in (times_square, uws, webhook, noteburst, registry):
            await fake.stop()
        broker.stop()


def run_demo(duration: float) -> int:
    """Run the demo; returns the exit code."""
    workdir = Path(tempfile.mkdtemp(prefix="catcher-demo-"))
    try:
        return asyncio.run(_demo(duration, workdir))
    except KeyboardInterrupt:
        click.echo("Interrupted; everything the demo started has been stopped.", err=True)
        return 0
    finally:
        if os.environ.get("CATCHER_DEMO_KEEP") != "1":
            shutil.rmtree(workdir, ignore_errors=True)
