"""The ``catcher`` command line."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import sys
from collections.abc import Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import click
from aiokafka.errors import KafkaError

from .avro import AvroCodec
from .cli_alarms import alarms
from .config import Config, LogProfile, load_config
from .exceptions import CatcherError, RuleError
from .kafka import TopicFollower
from .logs import configure_logging, stdlib_logging_config
from .models.enums import ActionState, Severity, TriggerSource
from .models.records import ActionEvent, Trigger, isoformat, series_key, utcnow
from .models.rules import RuleSet, parse_duration
from .redact import brief, secrets
from .services.backtest import schedule as schedule_runs
from .services.operator import (
    HISTORY_HEADERS,
    format_table,
    history_rows,
    latest_states,
    publish_trigger,
    read_history,
    request_cancel,
    wait_for_final_state,
)
from .services.replay import Only
from .services.replay import select as select_replay
from .services.replay import send as send_replay

__all__ = ["main"]

CONTEXT_SETTINGS = {"help_option_names": ["-h", "--help"]}


def _config(**overrides: Any) -> Config:
    try:
        return load_config(**overrides)
    except CatcherError as exc:
        raise click.ClickException(str(exc)) from None


def _rules(path: Path) -> RuleSet:
    try:
        return RuleSet.from_path(path)
    except RuleError as exc:
        raise click.ClickException(f"Invalid rules:\n{exc}") from None


def _run(coro: Any) -> Any:
    try:
        return asyncio.run(coro)
    except CatcherError as exc:
        raise click.ClickException(str(exc)) from None
    except (KafkaError, ConnectionError) as exc:
        raise click.ClickException(
            "Could not talk to Kafka at the configured KAFKA_BOOTSTRAP_SERVERS:"
            f" {brief(str(exc)) or type(exc).__name__}"
        ) from None
    except TimeoutError as exc:
        raise click.ClickException(
            f"Timed out waiting for Kafka or a service: {brief(str(exc)) or 'no answer'}"
        ) from None
    except OSError as exc:
        raise click.ClickException(f"{type(exc).__name__}: {brief(str(exc))}") from None


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
@click.option(
    "--rules",
    "rules_path",
    type=click.Path(path_type=Path),
    envvar="CATCHER_RULES_PATH",
    help="Rules file or directory (default: CATCHER_RULES_PATH).",
)
def worker(rules_path: Path | None) -> None:
    """Run the worker: consume triggers and carry out the rules' actions."""
    import faust  # noqa: PLC0415 - heavy; only the worker needs it

    from .app import create_app  # noqa: PLC0415
    from .factory import check_rules_against_config, rule_secrets  # noqa: PLC0415
    from .kafka import ensure_topics  # noqa: PLC0415

    config = _config(**({"rules_path": rules_path} if rules_path else {}))
    rules = _rules(config.rules_path)
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
    if config.create_topics:  # before Faust subscribes, so that none is missed at first
        plain, compacted = config.worker_topics(
            stream=bool(rules.by_engine("stream", config.default_engine))
        )
        _run(ensure_topics(config, plain, compacted=compacted))
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


def _parse_tags(values: Sequence[str]) -> dict[str, str]:
    tags = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{item!r} is not KEY=VALUE.", param_hint="--tag")
        tags[key] = value
    return tags


@main.command()
@click.argument("rule_id")
@click.option(
    "--severity",
    required=True,
    type=click.Choice([s.name for s in Severity], case_sensitive=False),
)
@click.option("--reason", default="", help="Why (default: a sentence naming the operator test).")
@click.option("--tag", "tags", multiple=True, metavar="K=V", help="Tag of the series; repeatable.")
@click.option("--value", type=float, default=None, help="Value to report, if any.")
@click.option(
    "--rules",
    "rules_path",
    type=click.Path(path_type=Path),
    envvar="CATCHER_RULES_PATH",
    help="Rules to check RULE_ID against (default: CATCHER_RULES_PATH).",
)
@click.option("--no-check", is_flag=True, help="Do not check that RULE_ID is a loaded rule.")
def trigger(
    rule_id: str,
    severity: str,
    reason: str,
    tags: Sequence[str],
    value: float | None,
    rules_path: Path | None,
    no_check: bool,
) -> None:
    """Publish a manual trigger for RULE_ID and print its trigger_id.

    This runs the rule's actions as if its condition had been met, to test them.
    """
    config = _config(**({"rules_path": rules_path} if rules_path else {}))
    if not no_check and _rules(config.rules_path).get(rule_id) is None:
        raise click.ClickException(
            f"No rule {rule_id!r} in {config.rules_path}; the worker would dead-letter the"
            " trigger. Use --no-check to send it anyway."
        )
    record = Trigger.create(
        rule_id,
        Severity[severity.upper()],
        reason=reason or f"Manual {severity.upper()} trigger sent with catcher trigger.",
        source=TriggerSource.manual,
        tags=_parse_tags(tags),
        value=value,
    )
    _run(publish_trigger(config, record))
    click.echo(record.trigger_id)


def _since(text: str, hint: str = "--since") -> datetime:
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        try:
            return utcnow() - parse_duration(text)
        except ValueError:
            raise click.BadParameter(
                f"{text!r} is neither an ISO time nor a duration such as 1h.", param_hint=hint
            ) from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=utcnow().tzinfo)


def _since_option(default: str) -> Any:
    return click.option(
        "--since",
        default=default,
        show_default=True,
        help="Read events written at or after this ISO time, or this long ago (e.g. 1h, 7d).",
    )


@main.command()
@click.option("--rule", "rule_id", help="Only this rule.")
@_since_option("1d")
@click.option("--json", "as_json", is_flag=True, help="JSON lines, for programs.")
@click.option("--follow", "-f", is_flag=True, help="Then print new events as they arrive.")
def history(rule_id: str | None, since: str, as_json: bool, follow: bool) -> None:
    """Print the action history from the actions topic."""
    config = _config()
    start = _since(since)
    if follow:
        with contextlib.suppress(KeyboardInterrupt):
            _run(_follow_history(config, start, rule_id, as_json))
        return
    events = [
        e
        for e in _run(read_history(config, start))
        if (rule_id is None or e.rule_id == rule_id) and e.time >= start
    ]
    if as_json:
        for event in events:
            click.echo(json.dumps(event.model_dump(mode="json")))
        return
    if not events:
        click.echo(f"No action history since {isoformat(start)}.", err=True)
        return
    click.echo(format_table(HISTORY_HEADERS, history_rows(events)))


async def _follow_history(
    config: Config, start: datetime, rule_id: str | None, as_json: bool
) -> None:
    """The history since ``start``, then each new event as it arrives (until Ctrl-C)."""

    def show(event: ActionEvent) -> None:
        if rule_id is not None and event.rule_id != rule_id:
            return
        if as_json:
            click.echo(json.dumps(event.model_dump(mode="json")))
        else:
            click.echo("  ".join(str(c) for c in history_rows([event])[0]).rstrip())

    codec = AvroCodec(config.schema_registry_url, config.topic_prefix)
    follower = await TopicFollower(config, config.actions_topic).start()
    try:
        for event in await read_history(config, start):
            if event.time >= start:
                show(event)
        if not as_json:
            click.echo("Following the history; Ctrl-C to stop.", err=True)
        while True:
            for message in await follower.next(1.0):
                show(ActionEvent.model_validate(await codec.decode("actions", message.value)))
    finally:
        await follower.stop()


@main.command()
@_since_option("1d")
@click.option("--until", help="Only triggers at or before this ISO time, or this long ago.")
@click.option("--rule", "rule_ids", multiple=True, help="Only this rule; repeatable.")
@click.option("--action", "action_name", help="Only the actions with this name.")
@click.option(
    "--only",
    type=click.Choice([o.value for o in Only]),
    default=Only.failed.value,
    show_default=True,
    help="Select actions by their last state.",
)
@click.option("--dry-run", is_flag=True, help="Print what would be replayed; change nothing.")
@click.option("--json", "as_json", is_flag=True, help="With --dry-run: JSON lines.")
@click.option("--force", is_flag=True, help="Run again under a new generation (.g<n>).")
@click.option("--reason", default="", help="Why (required with --force); recorded.")
@click.option("--by", "by", default=None, help="Who replays (default: $USER).")
@click.option("--yes", "-y", is_flag=True, help="Do not ask before replaying over 20 actions.")
def replay(
    *,
    since: str,
    until: str | None,
    rule_ids: tuple[str, ...],
    action_name: str | None,
    only: str,
    dry_run: bool,
    as_json: bool,
    force: bool,
    reason: str,
    by: str | None,
    yes: bool,
) -> None:
    """Re-run what happened: the actions of past triggers, by time, rule and outcome.

    Without --force, each selected action is delivered again under its own id: the
    worker skips what finished and continues what did not. With --force, they run again
    under a new generation. Edges and cooldowns are never decided again.
    """
    if force and not reason.strip() and not dry_run:
        raise click.UsageError("--force needs --reason: say why the actions run again.")
    config = _config()
    start = _since(since)
    end = _since(until, "--until") if until else None
    if end is not None and end < start:
        raise click.BadParameter("--until is before --since.", param_hint="--until")
    items = _run(
        select_replay(
            config,
            since=start,
            until=end,
            only=Only(only),
            rules=rule_ids,
            action=action_name,
            force=force,
        )
    )
    if not items:
        click.echo(f"Nothing to replay: no {only} actions of triggers since {isoformat(start)}.")
        return
    if as_json and dry_run:
        for item in items:
            click.echo(json.dumps(item.to_json(force=force)))
        return
    rows = [
        (
            isoformat(i.trigger.time) or "",
            i.trigger.rule_id,
            i.action_name,
            i.last_state.value,
            i.what(force=force),
        )
        for i in items
    ]
    click.echo(format_table(("trigger time", "rule", "action", "last state", "replay"), rows))
    if dry_run:
        click.echo(f"Dry run: {len(items)} action(s) would be replayed; nothing was sent.")
        return
    if len(items) > CONFIRM_ABOVE and not yes:
        click.confirm(f"Replay {len(items)} actions?", abort=True)
    who = by or os.environ.get("USER") or "unknown"
    with click.progressbar(
        length=len(items), label="Replaying", file=sys.stderr, show_pos=True
    ) as bar:
        last = [0]

        def advance(n: int) -> None:
            bar.update(n - last[0])
            last[0] = n

        sent = _run(
            send_replay(config, items, force=force, by=who, reason=reason, progress=advance)
        )
    click.echo(
        f"Sent {sent} action(s) to the worker"
        + (" to run again." if force else "; it skips those that finished.")
        + " Follow them with `catcher history --follow`."
    )


CONFIRM_ABOVE = 20


@main.group()
def actions() -> None:
    """Look at and control actions (from the actions topic)."""


ACTION_HEADERS = ("updated", "action_id", "rule", "action", "type", "state", "attempt", "link")


@actions.command("list")
@click.option("--rule", "rule_id", help="Only this rule.")
@click.option(
    "--state",
    type=click.Choice([s.value for s in ActionState]),
    help="Only actions in this state now.",
)
@_since_option("1d")
@click.option("--json", "as_json", is_flag=True, help="JSON lines, for programs.")
def actions_list(rule_id: str | None, state: str | None, since: str, as_json: bool) -> None:
    """List the actions active since --since, with their current state."""
    config = _config()
    latest = [
        e
        for e in latest_states(_run(read_history(config, _since(since))))
        if (rule_id is None or e.rule_id == rule_id) and (state is None or e.state == state)
    ]
    if as_json:
        for event in latest:
            click.echo(json.dumps(event.model_dump(mode="json")))
        return
    if not latest:
        click.echo("No actions.", err=True)
        return
    rows = [
        [
            isoformat(e.time.replace(microsecond=0)) or "",
            e.action_id,
            e.rule_id,
            e.action_name,
            e.action_type,
            e.state.value,
            str(e.attempt),
            e.link or "",
        ]
        for e in latest
    ]
    click.echo(format_table(ACTION_HEADERS, rows))


def _events_of(config: Config, action_id: str, since: str) -> list[ActionEvent]:
    events = [e for e in _run(read_history(config, _since(since))) if e.action_id == action_id]
    if not events:
        raise click.ClickException(
            f"No action {action_id!r} in {config.actions_topic} since {since}; an older one"
            " needs a longer --since."
        )
    return events


@actions.command("show")
@click.argument("action_id")
@_since_option("7d")
@click.option("--json", "as_json", is_flag=True, help="JSON lines, for programs.")
def actions_show(action_id: str, since: str, as_json: bool) -> None:
    """Show the whole history of one action, with its links."""
    config = _config()
    events = _events_of(config, action_id, since)
    if as_json:
        for event in events:
            click.echo(json.dumps(event.model_dump(mode="json")))
        return
    last = events[-1]
    job_ids = list(dict.fromkeys(e.job_id for e in events if e.job_id))
    links = list(dict.fromkeys(e.link for e in events if e.link))
    click.echo(f"action:   {last.action_id}")
    click.echo(f"rule:     {last.rule_id} / {last.action_name} ({last.action_type})")
    click.echo(f"trigger:  {last.trigger_id} ({last.severity})")
    click.echo(f"state:    {last.state.value} after {last.attempt} attempt(s)")
    click.echo(f"outcome:  {last.message or ''}")
    click.echo(f"job:      {', '.join(job_ids) or '-'}")
    click.echo(f"links:    {', '.join(links) or '-'}")
    click.echo("")
    rows = [
        [isoformat(e.time) or "", e.state.value, str(e.attempt), e.message or "", e.link or ""]
        for e in events
    ]
    click.echo(format_table(("time", "state", "attempt", "message", "link"), rows))


async def _cancel(config: Config, action_id: str, by: str, wait: float) -> ActionEvent | None:
    async def send() -> None:
        await request_cancel(config, action_id, by)

    if wait <= 0:
        await send()
        return None
    return await wait_for_final_state(config, action_id, send, wait)


@actions.command("cancel")
@click.argument("action_id")
@click.option(
    "--wait",
    type=float,
    default=60.0,
    show_default=True,
    help="Seconds to wait for the worker to confirm (0: do not wait).",
)
@click.option("--by", "requested_by", default=None, help="Who cancels (default: $USER).")
@_since_option("7d")
def actions_cancel(action_id: str, wait: float, requested_by: str | None, since: str) -> None:
    """Cancel an action: abort its OCPS job, stop polling, whatever its type."""
    config = _config()
    last = _events_of(config, action_id, since)[-1]
    if last.state.terminal:
        raise click.ClickException(f"Action {action_id} has already finished: {last.state.value}.")
    by = requested_by or os.environ.get("USER") or "an operator"
    final = _run(_cancel(config, action_id, by, wait))
    if final is None:
        if wait > 0:
            raise click.ClickException(
                f"The worker has not confirmed the cancel within {wait:g} s; check"
                f" `catcher actions show {action_id}`."
            )
        click.echo(f"Cancel of {action_id} requested.")
        return
    click.echo(f"{action_id}: {final.state.value}. {final.message or ''}".rstrip())


@main.group()
def rules() -> None:
    """Work with rules files."""


@rules.command("validate")
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
def rules_validate(paths: Sequence[Path]) -> None:
    """Check rules files (or directories of them) and report every problem."""
    problems = []
    count = 0
    for path in paths:
        try:
            count += len(RuleSet.from_path(path))
        except RuleError as exc:
            problems.append(str(exc))
    if problems:
        raise click.ClickException("Invalid rules:\n" + "\n".join(problems))
    click.echo(f"{count} rule(s) valid.")


def _say_skipped(stream: list[str], manual: list[str]) -> None:
    if stream:
        click.echo(
            f"Skipped {len(stream)} stream rule(s) (the worker evaluates them on the telemetry"
            f" stream): {', '.join(stream)}.",
            err=True,
        )
    if manual:
        click.echo(
            f"Skipped {len(manual)} rule(s) without a condition (they fire only by hand, with"
            f" catcher trigger): {', '.join(manual)}.",
            err=True,
        )


@rules.command("compile")
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Write <rule id>.flux files here (default: print to stdout).",
)
def rules_compile(paths: Sequence[Path], out_dir: Path | None) -> None:
    """Compile the rules that have a condition into Flux tasks."""
    from .flux import CompileOptions, compile_rule  # noqa: PLC0415

    config = _config()
    options = CompileOptions(
        source_bucket=config.source_bucket,
        trigger_bucket=config.trigger_bucket,
        trigger_measurement=config.trigger_measurement,
    )
    compiled: dict[str, str] = {}
    manual: list[str] = []
    stream: list[str] = []
    for path in paths:
        for rule in _rules(path).rules.values():
            engine = rule.engine(config.default_engine)
            if engine == "flux":
                compiled[rule.id] = compile_rule(rule, options)
            elif engine == "stream":
                stream.append(rule.id)
            else:
                manual.append(rule.id)
    _say_skipped(stream, manual)
    if not compiled:
        raise click.ClickException(
            "No rule has a condition, so there is nothing to compile. Add a `condition`"
            " (thresholds or deadman) to a rule; see examples/rules/conditions.yaml."
        )
    if out_dir is None:
        for rule_id, text in compiled.items():
            click.echo(f"// ---- {rule_id}.flux\n{text}")
        return
    out_dir.mkdir(parents=True, exist_ok=True)
    for rule_id, text in compiled.items():
        (out_dir / f"{rule_id}.flux").write_text(text)
    click.echo(f"Wrote {len(compiled)} task(s) to {out_dir}.", err=True)


@main.group()
def tasks() -> None:
    """Keep the compiled Flux tasks in step with InfluxDB or Kapacitor."""


def _sync_plan(rules_path: Path | None, prune: bool) -> tuple[Any, list[Any]]:
    from .flux import CompileOptions  # noqa: PLC0415
    from .services.tasks import TaskSync, desired_tasks  # noqa: PLC0415

    config = _config(**({"rules_path": rules_path} if rules_path else {}))
    options = CompileOptions(
        source_bucket=config.source_bucket,
        trigger_bucket=config.trigger_bucket,
        trigger_measurement=config.trigger_measurement,
    )
    rules = _rules(config.rules_path)
    desired = desired_tasks(rules, options, config.default_engine)
    stream = [r.id for r in rules.by_engine("stream", config.default_engine)]
    if stream:
        click.echo(
            f"Ignored {len(stream)} stream rule(s), which need no task: {', '.join(stream)}.",
            err=True,
        )
    sync = TaskSync(config)
    try:
        return sync, sync.plan(desired, prune=prune)
    except CatcherError as exc:
        sync.close()
        raise click.ClickException(str(exc)) from None


def _print_plan(changes: Sequence[Any], as_json: bool) -> None:
    if as_json:
        for change in changes:
            click.echo(json.dumps(change.to_json()))
        return
    rows = [[c.kind, c.name, c.rule_id or "-", c.reason] for c in changes]
    click.echo(format_table(("change", "task", "rule", "why"), rows) if rows else "No tasks.")


_RULES_OPTION = click.option(
    "--rules",
    "rules_path",
    type=click.Path(path_type=Path),
    envvar="CATCHER_RULES_PATH",
    help="Rules file or directory (default: CATCHER_RULES_PATH).",
)


@tasks.command("plan")
@_RULES_OPTION
@click.option("--prune", is_flag=True, help="Plan to delete tasks no rule compiles to.")
@click.option("--json", "as_json", is_flag=True, help="JSON lines, for programs.")
def tasks_plan(rules_path: Path | None, prune: bool, as_json: bool) -> None:
    """Show what apply would create, update or delete, and why."""
    sync, changes = _sync_plan(rules_path, prune)
    sync.close()
    _print_plan(changes, as_json)


@tasks.command("apply")
@_RULES_OPTION
@click.option("--prune", is_flag=True, help="Also delete tasks no rule compiles to.")
def tasks_apply(rules_path: Path | None, prune: bool) -> None:
    """Create, update (and with --prune delete) Catcher's tasks; other tasks are untouched."""
    sync, changes = _sync_plan(rules_path, prune)
    try:
        done = sync.apply(changes)
    except CatcherError as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        sync.close()
    _print_plan([c for c in changes if c.kind != "unchanged"], as_json=False)
    counts = {
        kind: sum(1 for c in done if c.kind == kind) for kind in ("create", "update", "delete")
    }
    click.echo(
        f"Created {counts['create']}, updated {counts['update']}, deleted {counts['delete']}"
        f" task(s); {sum(1 for c in changes if c.kind == 'unchanged')} unchanged."
    )


@main.command()
@click.option("--once", is_flag=True, help="Poll once and exit (for cron jobs and tests).")
def mirror(once: bool) -> None:
    """Carry trigger rows from the trigger bucket to the triggers topic."""
    from .services.mirror import Mirror  # noqa: PLC0415

    config = _config()
    configure_logging(config.log_profile, config.log_level)

    async def run() -> int:
        import httpx  # noqa: PLC0415

        from .kafka import ensure_topics, make_producer  # noqa: PLC0415

        if config.create_topics:
            await ensure_topics(config, [config.triggers_topic], compacted=[config.mirror_topic])
        producer = make_producer(config)
        await producer.start()

        async def send(topic: str, key: bytes, value: bytes) -> None:
            await producer.send_and_wait(topic, value, key=key)

        codec = AvroCodec(config.schema_registry_url, config.topic_prefix)
        try:
            async with httpx.AsyncClient(timeout=30.0) as client:
                runner = Mirror.from_config(config, codec, send, client)
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

    published = _run(run())
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
def demo(duration: float) -> None:
    """Run Catcher on an embedded broker with fake services and example rules."""
    from .demo import run_demo  # noqa: PLC0415

    sys.exit(run_demo(duration))


@main.command()
@click.argument("rule_id")
@click.option("--since", required=True, help="Start: an ISO time, or this long ago (e.g. 2d).")
@click.option("--until", default=None, help="End: an ISO time, or this long ago (default now).")
@_RULES_OPTION
@click.option(
    "--plot", "plot_path", type=click.Path(dir_okay=False, path_type=Path), help="Write a PNG."
)
@click.option("--json", "as_json", is_flag=True, help="JSON, for programs.")
def backtest(
    *,
    rule_id: str,
    since: str,
    until: str | None,
    rules_path: Path | None,
    plot_path: Path | None,
    as_json: bool,
) -> None:
    """Run a rule over a past interval of the EFD: when would it have fired, and what run.

    Every scheduled evaluation in the interval is computed as the rule's Flux task would,
    and the planner decides the actions (edges, severities, cooldowns) as the worker would.
    """
    config = _config()
    rules = _rules(rules_path or config.rules_path)
    rule = rules.get(rule_id)
    if rule is None:
        raise click.BadParameter(
            f"No rule {rule_id!r} in {rules_path or config.rules_path}.", param_hint="RULE_ID"
        )
    condition = rule.condition
    if condition is None:
        raise click.UsageError(f"Rule {rule_id!r} has no condition: there is nothing to backtest.")
    start = _since(since)
    end = _since(until, "--until") if until else utcnow()
    if end <= start:
        raise click.BadParameter("--until is not after --since.", param_hint="--until")
    before = condition.history_needed()
    result = _run(_backtest(config, rule, start, end, before, quiet=as_json))
    if not result.series:
        click.echo(
            f"No data for rule {rule_id!r} ({condition.source.measurement}."
            f"{condition.source.field}) between {isoformat(start)} and {isoformat(end)}."
        )
        return
    if plot_path is not None:
        from .services.backtest_plot import plot  # noqa: PLC0415 - matplotlib only here

        shown = plot(result, plot_path)
        if not as_json:
            click.echo(f"Wrote {plot_path} ({shown} series).", err=True)
    if as_json:
        click.echo(json.dumps([c.to_json() for c in result.changes], indent=2))
        return
    rows = [
        (
            isoformat(c.time) or "",
            series_key(c.tags) or "-",
            f"{c.value:g}",
            f"{c.previous.name} → {c.severity.name}"
            if c.previous != c.severity
            else c.severity.name,
            ", ".join(c.actions)
            + (f" (suppressed: {', '.join(c.suppressed)})" if c.suppressed else ""),
        )
        for c in result.changes
    ]
    if rows:
        click.echo(format_table(("time", "series", "value", "severity", "actions"), rows))
    actions = len(result.actions)
    click.echo(
        f"{len(result.series)} series, {len(result.changes)} change(s), {actions} action(s)"
        f" would have run between {isoformat(start)} and {isoformat(end)}."
    )


PROGRESS_ABOVE = 1000
"""Evaluations above which a backtest shows progress."""


async def _backtest(
    config: Config, rule: Any, start: datetime, end: datetime, before: timedelta, *, quiet: bool
) -> Any:
    import httpx  # noqa: PLC0415

    from .services.backtest import read_source, run_backtest  # noqa: PLC0415

    auth = None
    if config.efd_username:
        password = config.efd_password.get_secret_value() if config.efd_password else ""
        auth = httpx.BasicAuth(config.efd_username, password)
    async with httpx.AsyncClient(timeout=120) as http:
        series = await read_source(
            http, config.efd_url, config.efd_database, rule.condition, start - before, end, auth
        )
    total = len(series) * len(schedule_runs(start, end, rule.schedule.every))
    with click.progressbar(
        length=max(total, 1),
        label="Evaluating",
        file=sys.stderr,
        hidden=quiet or total < PROGRESS_ABOVE,
    ) as bar:
        return run_backtest(rule, series, start, end, progress=bar.update)


main.add_command(alarms)
