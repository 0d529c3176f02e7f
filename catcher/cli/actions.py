"""``catcher trigger``, ``history``, ``replay`` and ``actions``: triggers in, the history out."""

from __future__ import annotations

import contextlib
import json
import math
import os
import sys
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import click

from ..config import Config
from ..models.enums import ActionState, Severity, TriggerSource
from ..models.records import ActionEvent, Trigger, isoformat
from ..output import HISTORY_HEADERS, format_table, history_rows
from ..services.execution.history import OperatorTopics, latest_states
from ..services.execution.replay import Only
from ..services.execution.replay import select as select_replay
from ..services.execution.replay import send as send_replay
from ._common import (
    load_rules,
    parse_since,
    parse_tags,
    rules_option,
    settings,
    since_option,
    with_topics,
)

__all__ = ["actions", "history", "replay", "trigger"]


class FiniteFloat(click.ParamType):
    """A finite number: actions carry the value in JSON, which has no NaN or infinity."""

    name = "number"

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> float:
        """The number, or a usage error."""
        try:
            number = float(value)
        except (TypeError, ValueError):
            self.fail(f"{value!r} is not a number.", param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number (JSON cannot carry it).", param, ctx)
        return number


FINITE = FiniteFloat()


@click.command()
@click.argument("rule_id")
@click.option(
    "--severity",
    required=True,
    type=click.Choice([s.name for s in Severity], case_sensitive=False),
)
@click.option("--reason", default="", help="Why (default: a sentence naming the operator test).")
@click.option("--tag", "tags", multiple=True, metavar="K=V", help="Tag of the series; repeatable.")
@click.option("--value", type=FINITE, default=None, help="Value to report, if any.")
@rules_option("Rules to check RULE_ID against (default: CATCHER_RULES_PATH).")
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
    config = settings(**({"rules_path": rules_path} if rules_path else {}))
    if not no_check and load_rules(config.rules_path).get(rule_id) is None:
        raise click.ClickException(
            f"No rule {rule_id!r} in {config.rules_path}; the worker would dead-letter the"
            " trigger. Use --no-check to send it anyway."
        )
    record = Trigger.create(
        rule_id,
        Severity[severity.upper()],
        reason=reason or f"Manual {severity.upper()} trigger sent with catcher trigger.",
        source=TriggerSource.manual,
        tags=parse_tags(tags),
        value=value,
    )
    with_topics(config, lambda topics: topics.publish_trigger(record))
    click.echo(record.trigger_id)


@click.command()
@click.option("--rule", "rule_id", help="Only this rule.")
@since_option("1d")
@click.option("--json", "as_json", is_flag=True, help="JSON lines, for programs.")
@click.option("--follow", "-f", is_flag=True, help="Then print new events as they arrive.")
def history(rule_id: str | None, since: str, as_json: bool, follow: bool) -> None:
    """Print the action history from the actions topic."""
    config = settings()
    start = parse_since(since)
    if follow:
        with contextlib.suppress(KeyboardInterrupt):
            with_topics(config, lambda topics: _follow_history(topics, start, rule_id, as_json))
        return
    events = [
        e
        for e in with_topics(config, lambda topics: topics.read_history(start))
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
    topics: OperatorTopics, start: datetime, rule_id: str | None, as_json: bool
) -> None:
    """The history since ``start``, then each new event as it arrives (until Ctrl-C)."""
    if not as_json:
        click.echo("Following the history; Ctrl-C to stop.", err=True)
    async for event in topics.follow_history(start):
        if rule_id is not None and event.rule_id != rule_id:
            continue
        if as_json:
            click.echo(json.dumps(event.model_dump(mode="json")))
        else:
            click.echo("  ".join(str(c) for c in history_rows([event])[0]).rstrip())


@click.command()
@since_option("1d")
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
    config = settings()
    start = parse_since(since)
    end = parse_since(until, "--until") if until else None
    if end is not None and end < start:
        raise click.BadParameter("--until is before --since.", param_hint="--until")
    items = with_topics(
        config,
        lambda topics: select_replay(
            topics,
            since=start,
            until=end,
            only=Only(only),
            rules=rule_ids,
            action=action_name,
            force=force,
        ),
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

        sent = with_topics(
            config,
            lambda topics: send_replay(
                topics,
                config.action_requests_topic,
                items,
                force=force,
                by=who,
                reason=reason,
                progress=advance,
            ),
        )
    click.echo(
        f"Sent {sent} action(s) to the worker"
        + (" to run again." if force else "; it skips those that finished.")
        + " Follow them with `catcher history --follow`."
    )


CONFIRM_ABOVE = 20


@click.group()
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
@since_option("1d")
@click.option("--json", "as_json", is_flag=True, help="JSON lines, for programs.")
def actions_list(rule_id: str | None, state: str | None, since: str, as_json: bool) -> None:
    """List the actions active since --since, with their current state."""
    config = settings()
    latest = [
        e
        for e in latest_states(with_topics(config, lambda t: t.read_history(parse_since(since))))
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
    start = parse_since(since)
    history = with_topics(config, lambda topics: topics.read_history(start))
    events = [e for e in history if e.action_id == action_id]
    if not events:
        raise click.ClickException(
            f"No action {action_id!r} in {config.actions_topic} since {since}; an older one"
            " needs a longer --since."
        )
    return events


@actions.command("show")
@click.argument("action_id")
@since_option("7d")
@click.option("--json", "as_json", is_flag=True, help="JSON lines, for programs.")
def actions_show(action_id: str, since: str, as_json: bool) -> None:
    """Show the whole history of one action, with its links."""
    config = settings()
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


async def _cancel(
    topics: OperatorTopics, action_id: str, by: str, wait: float
) -> ActionEvent | None:
    async def send() -> None:
        await topics.request_cancel(action_id, by)

    if wait <= 0:
        await send()
        return None
    return await topics.wait_for_final_state(action_id, send, wait)


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
@since_option("7d")
def actions_cancel(action_id: str, wait: float, requested_by: str | None, since: str) -> None:
    """Cancel an action: abort its OCPS job, stop polling, whatever its type."""
    config = settings()
    last = _events_of(config, action_id, since)[-1]
    if last.state.terminal:
        raise click.ClickException(f"Action {action_id} has already finished: {last.state.value}.")
    by = requested_by or os.environ.get("USER") or "an operator"
    final = with_topics(config, lambda topics: _cancel(topics, action_id, by, wait))
    if final is None:
        if wait > 0:
            raise click.ClickException(
                f"The worker has not confirmed the cancel within {wait:g} s; check"
                f" `catcher actions show {action_id}`."
            )
        click.echo(f"Cancel of {action_id} requested.")
        return
    click.echo(f"{action_id}: {final.state.value}. {final.message or ''}".rstrip())
