"""``catcher rules`` and ``catcher tasks``: check and compile rules, keep Flux tasks in step."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import click

from ..exceptions import CatcherError, RuleError
from ..models.rules import RuleSet
from ..output import format_table
from ._common import load_rules, rules_option, settings

__all__ = ["rules", "tasks"]


@click.group()
def rules() -> None:
    """Work with rules files."""


@rules.command("validate")
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
def rules_validate(paths: Sequence[Path]) -> None:
    """Check rules files (or directories of them) and report every problem."""
    try:
        count = len(RuleSet.from_paths(paths))
    except RuleError as exc:
        raise click.ClickException(f"Invalid rules:\n{exc}") from None
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
    from ..services.influx.flux import CompileOptions, compile_rule  # noqa: PLC0415

    config = settings()
    options = CompileOptions.of(config)
    compiled: dict[str, str] = {}
    manual: list[str] = []
    stream: list[str] = []
    for rule in load_rules(*paths).rules.values():
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


@click.group()
def tasks() -> None:
    """Keep the compiled Flux tasks in step with InfluxDB or Kapacitor."""


def _sync_plan(rules_path: Path | None, prune: bool) -> tuple[Any, list[Any]]:
    from ..services.influx.flux import CompileOptions  # noqa: PLC0415
    from ..services.influx.tasks import TaskSync, desired_tasks  # noqa: PLC0415

    config = settings(**({"rules_path": rules_path} if rules_path else {}))
    options = CompileOptions.of(config)
    rules = load_rules(config.rules_path)
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


@tasks.command("plan")
@rules_option()
@click.option("--prune", is_flag=True, help="Plan to delete tasks no rule compiles to.")
@click.option("--json", "as_json", is_flag=True, help="JSON lines, for programs.")
def tasks_plan(rules_path: Path | None, prune: bool, as_json: bool) -> None:
    """Show what apply would create, update or delete, and why."""
    sync, changes = _sync_plan(rules_path, prune)
    sync.close()
    _print_plan(changes, as_json)


@tasks.command("apply")
@rules_option()
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
