"""Backtest: a rule over a past interval of the EFD, before it is deployed.

The rule's source is read from InfluxDB 1.x with InfluxQL (``/query``), every scheduled
evaluation in the interval is computed with :mod:`catcher.semantics`, and the planner says
which actions would have run (edges, severities, cooldowns), exactly as the worker would
decide them for the same triggers.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from ...exceptions import BacktestError
from ...models.conditions import Condition
from ...models.enums import Severity, TriggerSource
from ...models.records import SeriesState, Trigger, isoformat, series_key
from ...models.rules import Rule
from ...semantics import Sample, evaluate_condition
from ...storage.influxdb import InfluxQL, quote_identifier, quote_literal
from ..planning.planner import plan

__all__ = ["Change", "Result", "read_source", "run_backtest", "schedule"]


@dataclass(frozen=True)
class Change:
    """A change of a series' severity, or an evaluation that would have started actions."""

    time: datetime
    tags: dict[str, str]
    value: float
    previous: Severity
    severity: Severity
    actions: list[str]
    suppressed: list[str]

    def to_json(self) -> dict[str, Any]:
        """For programs."""
        return {
            "time": isoformat(self.time),
            "series": series_key(self.tags),
            "tags": self.tags,
            "value": self.value,
            "previous": self.previous.name,
            "severity": self.severity.name,
            "actions": self.actions,
            "suppressed": self.suppressed,
        }


@dataclass
class Series:
    """One series' samples and evaluations."""

    tags: dict[str, str]
    samples: list[Sample]
    evaluations: list[tuple[datetime, float, Severity]] = field(default_factory=list)


@dataclass
class Result:
    """What the rule would have done."""

    rule: Rule
    start: datetime
    end: datetime
    series: dict[str, Series]
    changes: list[Change]

    @property
    def actions(self) -> list[tuple[datetime, str, str]]:
        """(time, series, action) of every action that would have run."""
        return [(c.time, series_key(c.tags), name) for c in self.changes for name in c.actions]


def schedule(start: datetime, end: datetime, every: timedelta) -> list[datetime]:
    """The task's run times in ``(start, end]``.

    Multiples of ``every`` since the epoch, as InfluxDB schedules a task (its ``now()`` is
    the scheduled time).
    """
    step = every.total_seconds()
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    first = int((start - epoch).total_seconds() // step) + 1
    times = []
    n = first
    while (at := epoch + timedelta(seconds=n * step)) <= end:
        times.append(at)
        n += 1
    return times


def _query(condition: Condition, start: datetime, end: datetime) -> str:
    source = condition.source
    where = [f"time >= {int(start.timestamp() * 1e9)}", f"time < {int(end.timestamp() * 1e9)}"]
    where += [
        f"{quote_identifier(k)} = {quote_literal(v)}" for k, v in sorted(source.tags.items())
    ]
    grouped = ", ".join(quote_identifier(t) for t in source.group_by)
    group = f" GROUP BY {grouped}" if source.group_by else ""
    field, measurement = quote_identifier(source.efd_field), quote_identifier(source.measurement)
    return (
        f"SELECT {field} FROM {measurement}"  # noqa: S608 - every part quoted or a number
        f" WHERE {' AND '.join(where)}{group}"
    )


async def read_source(
    efd: InfluxQL, condition: Condition, start: datetime, end: datetime
) -> dict[str, Series]:
    """The samples of the rule's source in ``[start, end)``, by series."""
    found: dict[str, Series] = {}
    for raw in await efd.query(_query(condition, start, end)):
        tags = {k: v for k, v in raw.tags.items() if v != ""}
        column = raw.columns.index(condition.source.efd_field)
        samples = [
            (datetime.fromtimestamp(row[0] / 1e9, tz=UTC), float(row[column]))
            for row in raw.values
            if row[column] is not None and not isinstance(row[column], str | bool)
        ]
        found.setdefault(series_key(tags), Series(tags, [])).samples.extend(samples)
    return found


def run_backtest(
    rule: Rule,
    series: dict[str, Series],
    start: datetime,
    end: datetime,
    progress: Callable[[int], None] = lambda _n: None,
) -> Result:
    """Evaluate every scheduled window of every series and plan the actions."""
    condition = rule.condition
    if condition is None:
        raise BacktestError(f"Rule {rule.id!r} has no condition: it only fires by hand.")
    if condition.per_sample:
        raise BacktestError(
            f"Rule {rule.id!r} evaluates every sample as it arrives (window 0);"
            " backtests evaluate scheduled windows, so it cannot be backtested yet."
        )
    times = schedule(start, end, rule.schedule.every)
    changes: list[Change] = []
    for one in series.values():
        one.samples.sort(key=lambda s: s[0])
        changes.extend(_series_changes(rule, condition, one, times))
        progress(len(times))
    changes.sort(key=lambda c: (c.time, series_key(c.tags)))
    return Result(rule, start, end, series, changes)


def _series_changes(
    rule: Rule, condition: Condition, series: Series, times: Iterable[datetime]
) -> list[Change]:
    changes = []
    previous = Severity.NONE
    state: SeriesState | None = None
    for at in times:
        found = evaluate_condition(condition, series.samples, at, previous)
        if found is None:
            continue
        series.evaluations.append((at, found.value, found.severity))
        trigger = Trigger.create(
            rule.id,
            found.severity,
            reason=f"{condition.aggregate} is {found.value:g}",
            source=TriggerSource.flux,
            time=at,
            tags=series.tags,
            value=found.value,
        )
        result = plan(rule, trigger, state)
        state = result.state
        run = result.to_run
        suppressed = [d.action_name for d in result.decisions if not d.run]
        if found.severity != previous or run or suppressed:
            changes.append(
                Change(at, series.tags, found.value, previous, found.severity, run, suppressed)
            )
        previous = found.severity
    return changes
