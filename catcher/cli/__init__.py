"""The ``catcher`` command line: the group, the worker, the mirror and the demo.

The other commands live in one module per group.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from pathlib import Path

import click
import structlog

from .. import topics
from ..config import Config, LogProfile
from ..exceptions import CatcherError
from ..logs import configure_logging, stdlib_logging_config
from ..models.rules import Rule
from ..redact import secrets
from ._common import CONTEXT_SETTINGS, load_rules, rules_option, run, settings
from .actions import actions, history, replay, trigger
from .alarms import alarms
from .backtest import backtest
from .rules import rules, tasks

logger = structlog.get_logger("catcher")

__all__ = ["main"]


@click.group(context_settings=CONTEXT_SETTINGS)
@click.version_option(package_name="catcher")
def main() -> None:
    """Catcher: act on rules over the Rubin EFD (alarms, pipelines, notebooks).

    Settings come from CATCHER_* and KAFKA_* environment variables; see the README.
    """
    # Commands print their results on stdout; logs go to stderr (the worker reconfigures).
    # A command reports a Kafka failure as one error of its own, without the client's logs.
    configure_logging(LogProfile.development, "WARNING")
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)


@main.command()
@rules_option()
def worker(rules_path: Path | None) -> None:
    """Run the worker: consume triggers and carry out the rules' actions."""
    import faust  # noqa: PLC0415 - heavy; only the worker needs it

    from ..app import create_app  # noqa: PLC0415
    from ..factory import check_rules_against_config, rule_secrets  # noqa: PLC0415
    from ..kafka import ensure_topics  # noqa: PLC0415

    config = settings(**({"rules_path": rules_path} if rules_path else {}))
    rules = load_rules(config.rules_path)
    try:
        check_rules_against_config(rules, config)
    except CatcherError as exc:
        raise click.ClickException(str(exc)) from None
    secrets.register(*rule_secrets(rules))
    configure_logging(config.log_profile, config.log_level)
    try:
        config.data_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise click.ClickException(
            f"Cannot create CATCHER_DATA_DIR {config.data_dir}: {exc.strerror}."
        ) from None
    stream_rules = rules.by_engine("stream", config.default_engine)
    own = config.worker_topics(stream=bool(stream_rules))
    if config.create_topics:  # before Faust subscribes, so that none is missed at first
        run(ensure_topics(config, own))
    run(_check_topics(config, own, stream_rules))
    app = create_app(config, rules)
    worker = faust.Worker(
        app.faust,
        app.web_service(),
        loglevel=config.log_level.lower(),
        redirect_stdouts=False,
        quiet=True,
        logging_config=stdlib_logging_config(config.log_profile, config.log_level),
    )
    # Faust's terminal spinner sets the root logger to DEBUG at WARNING and above, so that
    # every debug call of aiokafka and Faust builds a record only to drop it.
    worker.spinner = None
    worker.execute_from_commandline()


async def _check_topics(config: Config, own: list[topics.Topic], rules: list[Rule]) -> None:
    """The worker's own topics exist as configured, and so do the stream rules' topics.

    The telemetry topics' registered schemas must have the rules' fields.
    """
    from ..avro import AvroCodec  # noqa: PLC0415
    from ..kafka import existing_topics, own_topic_problems  # noqa: PLC0415
    from ..services.evaluation.fields import field_problems  # noqa: PLC0415

    existing = await existing_topics(config)
    problems = own_topic_problems(config, own, existing)
    if problems:
        hint = (
            "Create them as the Sasquatch subchart declares them (CATCHER_CREATE_TOPICS is"
            " false); those read beside the tables need CATCHER_TOPIC_PARTITIONS partitions."
            if not config.create_topics
            else "A topic's partition count cannot be changed in place: set"
            " CATCHER_TOPIC_PARTITIONS to the count the topics have."
        )
        raise click.ClickException(
            "The worker cannot run on the broker's topics:\n  "
            + "\n  ".join(problems)
            + f"\n{hint}"
        )
    if not rules:
        return
    measurements = sorted({r.condition.source.measurement for r in rules if r.condition})
    topic_of = {m: config.telemetry_topic(m) for m in measurements}
    missing = sorted(set(topic_of.values()) - set(existing))
    if missing:
        prefix = config.telemetry_topic_prefix
        raise click.ClickException(
            "The stream rules read telemetry topics the broker does not have: "
            + ", ".join(missing)
            + " (check each rule's source.measurement"
            + (f", CATCHER_TELEMETRY_TOPIC_PREFIX ({prefix!r})" if prefix else "")
            + " and KAFKA_BOOTSTRAP_SERVERS)."
        )
    codec = AvroCodec(config.schema_registry_url, config.topic_prefix)
    schemas = {m: await codec.latest(f"{topic}-value") for m, topic in topic_of.items()}
    for measurement, schema in schemas.items():
        if schema is None:
            logger.warning(
                "No schema registered for a telemetry topic: fields not checked",
                topic=topic_of[measurement],
            )
    problems = field_problems(rules, schemas)
    if problems:
        raise click.ClickException(
            "The stream rules name fields their topics do not have:\n  " + "\n  ".join(problems)
        )


@main.command()
@click.option("--once", is_flag=True, help="Poll once and exit (for cron jobs and tests).")
def mirror(once: bool) -> None:
    """Carry trigger rows from the trigger bucket to the triggers topic."""
    from ..factory import Factory  # noqa: PLC0415 - only this command needs the mirror
    from ..kafka import ensure_topics, make_producer  # noqa: PLC0415

    config = settings()
    configure_logging(config.log_profile, config.log_level)

    async def poll() -> int:
        if config.create_topics:
            await ensure_topics(config, [topics.TRIGGERS, topics.MIRROR])
        producer = make_producer(config)
        await producer.start()

        async def send(topic: str, key: bytes, value: bytes) -> None:
            await producer.send_and_wait(topic, value, key=key)

        try:
            async with Factory.standalone(config) as factory:
                runner = factory.mirror(send)
                if once:
                    return await runner.poll_once()
                stop = asyncio.Event()
                loop = asyncio.get_running_loop()
                for signum in (signal.SIGINT, signal.SIGTERM):
                    loop.add_signal_handler(signum, stop.set)
                await runner.run(config.mirror_interval, stop)
                return 0
        finally:
            await producer.stop()

    published = run(poll())
    if once:
        click.echo(f"Published {published} trigger(s).")


@main.command()
@click.option(
    "--duration",
    type=float,
    default=120.0,
    show_default=True,
    help="Longest run in seconds; the demo ends sooner once its actions have finished.",
)
@click.option(
    "--serve",
    is_flag=True,
    help="Then keep everything running and print the operator page's URL, until Ctrl-C.",
)
def demo(duration: float, serve: bool) -> None:
    """Run Catcher on an embedded broker with fake services and example rules."""
    from ..demo import run_demo  # noqa: PLC0415

    sys.exit(run_demo(duration, serve=serve))


for command in (actions, alarms, backtest, history, replay, rules, tasks, trigger):
    main.add_command(command)
