"""``catcher backtest``: a rule over a past interval of the EFD."""

from __future__ import annotations

import importlib.util
import json
import sys
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import click

from ..config import Config
from ..exceptions import CatcherError
from ..models.records import isoformat, series_key, utcnow
from ..output import format_table
from ..services.evaluation.backtest import schedule as schedule_runs
from ._common import load_rules, parse_since, rules_option, run, settings

__all__ = ["backtest"]


@click.command()
@click.argument("rule_id")
@click.option("--since", required=True, help="Start: an ISO time, or this long ago (e.g. 2d).")
@click.option("--until", default=None, help="End: an ISO time, or this long ago (default now).")
@rules_option()
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
    config = settings()
    rules = load_rules(rules_path or config.rules_path)
    rule = rules.get(rule_id)
    if rule is None:
        raise click.BadParameter(
            f"No rule {rule_id!r} in {rules_path or config.rules_path}.", param_hint="RULE_ID"
        )
    condition = rule.condition
    if condition is None:
        raise click.UsageError(f"Rule {rule_id!r} has no condition: there is nothing to backtest.")
    _can_plot(plot_path)
    start = parse_since(since)
    end = parse_since(until, "--until") if until else utcnow()
    if end <= start:
        raise click.BadParameter("--until is not after --since.", param_hint="--until")
    before = condition.history_needed()
    result = run(_backtest(config, rule, start, end, before))
    if not result.series:
        click.echo(
            f"No data for rule {rule_id!r} ({condition.source.measurement}."
            f"{condition.source.field}) between {isoformat(start)} and {isoformat(end)}."
        )
        return
    if plot_path is not None:
        from ..services.evaluation.plot import plot  # noqa: PLC0415 - matplotlib only here

        units, why = run(_units(config, condition.source.measurement, condition.source.field))
        if why and not as_json:
            click.echo(f"Units unknown: {why}", err=True)
        shown = plot(result, plot_path, units)
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


def _can_plot(plot_path: Path | None) -> None:
    """Fail before the work when a plot is asked and matplotlib is missing."""
    if plot_path is not None and importlib.util.find_spec("matplotlib") is None:
        raise click.UsageError(
            "--plot needs matplotlib, which this installation lacks (the worker image"
            " leaves it out): pip install 'catcher[plot]', or run without --plot."
        )


async def _units(config: Config, measurement: str, field: str) -> tuple[str | None, str]:
    """The field's units from its telemetry schema, or why they are unknown."""
    from ..avro import AvroCodec  # noqa: PLC0415
    from ..services.evaluation.fields import units_of  # noqa: PLC0415

    try:
        schema = await AvroCodec(config.schema_registry_url, config.topic_prefix).latest(
            f"{measurement}-value"
        )
    except CatcherError as exc:
        return None, str(exc)
    if schema is None:
        return None, f"no schema is registered for {measurement}."
    return units_of(schema, field), ""


PROGRESS_ABOVE = 1000
"""Evaluations above which a backtest shows progress."""


async def _backtest(
    config: Config, rule: Any, start: datetime, end: datetime, before: timedelta
) -> Any:
    from ..factory import Factory  # noqa: PLC0415
    from ..services.evaluation.backtest import read_source, run_backtest  # noqa: PLC0415

    async with Factory.standalone(config) as factory:
        series = await read_source(factory.efd(), rule.condition, start - before, end)
    total = len(series) * len(schedule_runs(start, end, rule.schedule.every))
    with click.progressbar(
        length=max(total, 1),
        label="Evaluating",
        file=sys.stderr,
        hidden=total < PROGRESS_ABOVE,  # on stderr: beside --json too
    ) as bar:
        return run_backtest(rule, series, start, end, progress=bar.update)
