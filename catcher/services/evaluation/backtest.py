"""Backtest: a rule over a past interval of the EFD, before it is deployed.

The rule's source is read from InfluxDB 1.x with InfluxQL (``/query``), every scheduled
evaluation in the interval is computed with :mod:`catcher.semantics`, and the planner says
which actions would have run (edges, severities, cooldowns), exactly as the worker would
decide them for the same triggers.
"""

from __future__ import annotations

import bisect
import functools
from array import array
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from ...exceptions import BacktestError
from ...models.conditions import Condition
from ...models.enums import Severity, TriggerSource
from ...models.records import SeriesState, Trigger, isoformat, series_key
from ...models.rules import Rule
from ...semantics import Evaluation, Sample, evaluate_condition
from ...storage.influxdb import InfluxQL, quote_identifier, quote_literal
from ..planning.planner import plan
from .panes import add_sample, evaluate_panes, pane_width, prune, uses_panes

__all__ = ["Change", "Layout", "Result", "efd_layout", "read_source", "run_backtest", "schedule"]


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
    """One series' samples (UTC seconds and values, 16 bytes a point) and evaluations."""

    tags: dict[str, str]
    stamps: array[float] = field(default_factory=lambda: array("d"))
    values: array[float] = field(default_factory=lambda: array("d"))
    evaluations: list[tuple[datetime, float, Severity]] = field(default_factory=list)
    ordered: bool = True

    def __repr__(self) -> str:
        # Short: asyncio and enum format reprs of results in passing (``signal.signal`` in
        # ``asyncio.run`` formats the task, with this in it); a week of points is 36 MB.
        return (
            f"Series({self.tags!r}, {len(self.stamps)} samples,"
            f" {len(self.evaluations)} evaluations)"
        )

    @classmethod
    def of(cls, tags: dict[str, str], samples: Iterable[Sample]) -> Series:
        """A series from (time, value) samples."""
        series = cls(tags)
        for time, value in samples:
            series.add(time.timestamp(), value)
        return series

    def add(self, stamp: float, value: float) -> None:
        """Append a sample (UTC seconds), noting whether the series is still in order."""
        if self.stamps and stamp < self.stamps[-1]:
            self.ordered = False
        self.stamps.append(stamp)
        self.values.append(value)

    @property
    def samples(self) -> list[Sample]:
        """The samples as (time, value), in time order."""
        return _samples(self.stamps, self.values, 0, len(self.stamps))

    def sort(self) -> None:
        """Put the samples in time order (the EFD answers in order; a merge may not be)."""
        if not self.ordered:  # checked as added: a copy of the stamps to compare is 5 MB a week
            order = sorted(range(len(self.stamps)), key=self.stamps.__getitem__)
            self.stamps = array("d", (self.stamps[i] for i in order))
            self.values = array("d", (self.values[i] for i in order))
            self.ordered = True


def _samples(stamps: array[float], values: array[float], low: int, high: int) -> list[Sample]:
    return [(datetime.fromtimestamp(stamps[i], UTC), values[i]) for i in range(low, high)]


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


@dataclass(frozen=True)
class Layout:
    """How the EFD stores a measurement: its tag keys, and its field keys with their types.

    Sasquatch's Telegraf writes every Avro field as a field (``salIndex`` included); other
    databases keep such columns as tags. A rule's ``tags`` and ``group_by`` may name either.
    """

    tags: frozenset[str]
    fields: dict[str, str]

    def is_tag(self, column: str) -> bool:
        """Whether a column is a tag (else a field)."""
        return column in self.tags


_SHOWN = 12
"""Names listed, at most, when a rule names a column the EFD does not have."""


async def efd_layout(efd: InfluxQL, condition: Condition) -> Layout:
    """Ask the EFD for the measurement's tag and field keys; refuse names it does not have.

    A measurement or field the EFD does not know is a typo to report (as the EFD client
    does), not a quiet interval.
    """
    source = condition.source
    measurement = quote_identifier(source.measurement)
    tags = frozenset(
        str(row[0])
        for s in await efd.query(f"SHOW TAG KEYS FROM {measurement}")
        for row in s.values
    )
    fields = {
        str(row[0]): str(row[1])
        for s in await efd.query(f"SHOW FIELD KEYS FROM {measurement}")
        for row in s.values
    }
    if not fields:
        raise BacktestError(
            f"The EFD has no measurement {source.measurement!r}: check the rule's"
            " source.measurement (and CATCHER_EFD_DATABASE)."
        )

    def known(names: Iterable[str]) -> str:
        names = sorted(names)
        more = f" and {len(names) - _SHOWN} more" if len(names) > _SHOWN else ""
        return ", ".join(names[:_SHOWN]) + more

    numbers = [n for n, kind in fields.items() if kind in {"float", "integer"}]
    if fields.get(source.efd_field) not in {"float", "integer"}:
        raise BacktestError(
            f"{source.measurement} has no number field {source.efd_field!r} in the EFD"
            f" (its number fields: {known(numbers) or 'none'})."
        )
    for column in sorted({*source.group_by, *source.tags}):
        if column not in tags and column not in fields:
            raise BacktestError(
                f"{source.measurement} has no tag or field {column!r} in the EFD (named by"
                f" the rule's source; its tags: {known(tags) or 'none'}; its fields:"
                f" {known(fields)})."
            )
    return Layout(tags, fields)


def _field_literal(layout: Layout, column: str, value: str) -> str:
    """A rule's tag value as a literal of the field's type (an integer unquoted)."""
    kind = layout.fields.get(column)
    try:
        if kind == "integer":
            return str(int(value))
        if kind == "float":
            return repr(float(value))
    except ValueError:
        article = "an" if kind == "integer" else "a"
        raise BacktestError(
            f"{column} is {article} {kind} field in the EFD; the rule's value {value!r} is"
            " not one."
        ) from None
    if kind == "boolean":
        if value.lower() not in {"true", "false"}:
            raise BacktestError(
                f"{column} is a boolean field in the EFD; the rule's value {value!r} is not one."
            )
        return value.lower()
    return quote_literal(value)


def _query(condition: Condition, layout: Layout, start: datetime, end: datetime) -> str:
    source = condition.source
    where = [f"time >= {int(start.timestamp() * 1e9)}", f"time < {int(end.timestamp() * 1e9)}"]
    for key, value in sorted(source.tags.items()):
        if layout.is_tag(key):
            where.append(f"{quote_identifier(key)}::tag = {quote_literal(value)}")
        else:
            where.append(f"{quote_identifier(key)}::field = {_field_literal(layout, key, value)}")
    selected = [source.efd_field] + [c for c in source.group_by if not layout.is_tag(c)]
    select = ", ".join(f"{quote_identifier(c)}::field" for c in selected)
    tags = [c for c in source.group_by if layout.is_tag(c)]
    group = f" GROUP BY {', '.join(quote_identifier(t) for t in tags)}" if tags else ""
    measurement = quote_identifier(source.measurement)
    return (
        f"SELECT {select} FROM {measurement}"  # noqa: S608 - every part quoted or a number
        f" WHERE {' AND '.join(where)}{group}"
    )


def _text(value: Any) -> str:
    """A field's value as a series tag, as it reads in a tag (``3``, not ``3.0``)."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


async def read_source(
    efd: InfluxQL, condition: Condition, start: datetime, end: datetime
) -> dict[str, Series]:
    """The samples of the rule's source in ``[start, end)``, by series.

    Columns that are tags are grouped by the EFD, columns that are fields (as Sasquatch
    writes ``salIndex``) are selected beside the value and grouped here.
    """
    layout = await efd_layout(efd, condition)
    source = condition.source
    by_field = [c for c in source.group_by if not layout.is_tag(c)]
    found: dict[str, Series] = {}
    async for raw in efd.query_chunks(_query(condition, layout, start, end)):
        tags = {k: v for k, v in raw.tags.items() if v != ""}
        value_at = raw.columns.index(source.efd_field)
        field_at = [(c, raw.columns.index(c)) for c in by_field]
        for row in raw.values:
            value = row[value_at]
            if value is None or isinstance(value, str | bool):
                continue
            series = dict(tags)
            for column, at in field_at:
                text = _text(row[at])
                if text:
                    series[column] = text
            key = series_key(series)
            one = found.get(key)
            if one is None:
                one = found[key] = Series(series)
            one.add(row[0] / 1e9, float(value))
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
        one.sort()
        changes.extend(_series_changes(rule, condition, one, times, progress))
    changes.sort(key=lambda c: (c.time, series_key(c.tags)))
    return Result(rule, start, end, series, changes)


PROGRESS_STEP = 500
"""Evaluations between two reports of progress."""


def _evaluations(
    rule: Rule, condition: Condition, series: Series, times: list[datetime]
) -> Iterator[tuple[datetime, Callable[[Severity], Evaluation | None]]]:
    """Each scheduled time with how to evaluate it, in one pass over the sorted samples.

    Per-pane aggregates (as the stream engine keeps them) slide along the times, so that
    each sample is added once and each evaluation reads only its window's panes; a median
    reads its window's samples, a deadman the last sample before the time.
    """
    stamps, values = series.stamps, series.values
    if uses_panes(rule):
        width, span = pane_width(rule), condition.samples_span()
        panes: dict[str, list[float]] = {}
        i = 0
        for at in times:
            until = at.timestamp()
            while i < len(stamps) and stamps[i] < until:
                add_sample(panes, width, stamps[i], values[i])
                i += 1
            panes = prune(panes, at - span)
            yield at, functools.partial(evaluate_panes, condition, panes, at)
        return
    span = condition.history_needed()
    for at in times:
        high = bisect.bisect_left(stamps, at.timestamp())
        low = bisect.bisect_left(stamps, (at - span).timestamp())
        if condition.deadman is not None:
            low = max(low, high - 1)  # the last sample is all a deadman reads
        inside = _samples(stamps, values, low, high)
        yield at, functools.partial(evaluate_condition, condition, inside, at)


def _series_changes(
    rule: Rule,
    condition: Condition,
    series: Series,
    times: list[datetime],
    progress: Callable[[int], None],
) -> list[Change]:
    changes = []
    previous = Severity.NONE
    state: SeriesState | None = None
    for n, (at, evaluation) in enumerate(_evaluations(rule, condition, series, times)):
        if n % PROGRESS_STEP == PROGRESS_STEP - 1:
            progress(PROGRESS_STEP)
        found = evaluation(previous)
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
    progress(len(times) % PROGRESS_STEP)
    return changes
