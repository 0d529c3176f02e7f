"""The backtest's plot: one panel per series, readable without explanation.

Each panel shows the raw samples (gaps left as gaps), the windowed aggregate the levels
came from, the thresholds with their values and hysteresis bands, the severity over time
as coloured bands, and the actions that would have run or been suppressed, as markers.
"""

from __future__ import annotations

import itertools
import math
from datetime import timedelta
from pathlib import Path
from typing import Any

from ...models.enums import Severity
from ...models.records import series_key
from ..influx.flux import flux_duration
from .backtest import Result, Series

__all__ = ["COLOURS", "plot"]

COLOURS = {
    Severity.NONE: "#2e7d32",
    Severity.WARNING: "#f9a825",
    Severity.SERIOUS: "#ef6c00",
    Severity.CRITICAL: "#c62828",
}
MAX_PANELS = 8
MAX_POINTS = 4000
"""Points drawn per series at most: beyond, each bucket's minimum and maximum."""


def plot(result: Result, path: Path, units: str | None = None) -> int:
    """Write the PNG; returns how many series it shows (at most eight).

    ``units`` are the field's, from its telemetry schema, when known.
    """
    import matplotlib as mpl  # noqa: PLC0415 - a heavy import, only for --plot

    mpl.use("Agg")
    import matplotlib.dates as mdates  # noqa: PLC0415
    import matplotlib.pyplot as plt  # noqa: PLC0415

    condition = result.rule.condition
    assert condition is not None  # run_backtest checked
    names = sorted(result.series)[:MAX_PANELS]
    figure, axes = plt.subplots(
        len(names), 1, figsize=(12, 3.0 * len(names) + 1.0), sharex=True, squeeze=False
    )
    field = condition.source.field
    legend: dict[str, Any] = {}  # one legend for every panel: label → what draws it
    for axis, name in zip(axes[:, 0], names, strict=True):
        series = result.series[name]
        _severity_bands(axis, series)
        times, values = _drawn(series, result.rule.schedule.every)
        axis.plot(times, values, color="#90a4ae", linewidth=0.7, label=f"{field} (samples)")
        handles = axis
        if condition.thresholds is not None:
            _aggregate(axis, series, condition.aggregate, condition.window)
            _thresholds(axis, condition.thresholds)
        else:  # a deadman: its value is the silence, on an axis of its own
            silence = axis.twinx()
            _aggregate(silence, series, "seconds since the last sample", None)
            deadman = condition.deadman
            assert deadman is not None
            silence.axhline(
                deadman.timeout.total_seconds(),
                color=COLOURS[Severity(deadman.severity)],
                linestyle="--",
                linewidth=1.2,
                label=f"timeout {flux_duration(deadman.timeout)}",
            )
            silence.set_ylabel("seconds since the last sample", fontsize=8)
            silence.set_ylim(bottom=0)
            handles = silence
        _actions(axis, result, name)
        axis.set_title(name or "(one series)", fontsize=9, loc="left")
        axis.set_ylabel(f"{field} ({units})" if units else field, fontsize=8)
        for drawn in {axis, handles}:
            for line, label in zip(*drawn.get_legend_handles_labels(), strict=True):
                legend.setdefault(label, line)
        axis.grid(visible=True, color="#eceff1", linewidth=0.5)
    axes[0, 0].legend(
        list(legend.values()),
        list(legend),
        fontsize=7,
        loc="upper left",
        bbox_to_anchor=(1.07 if condition.deadman is not None else 1.0, 1.0),
        frameon=False,
    )
    bottom = axes[-1, 0]
    locator = mdates.AutoDateLocator(tz="UTC")
    bottom.xaxis.set_major_locator(locator)
    bottom.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator, tz="UTC"))
    bottom.set_xlabel("time (UTC)", fontsize=8)
    figure.suptitle(
        f"{result.rule.id}: {_what(result)}; backtest {result.start:%Y-%m-%d %H:%M} to"
        f" {result.end:%Y-%m-%d %H:%M} UTC",
        fontsize=10,
    )
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return len(names)


def _what(result: Result) -> str:
    condition = result.rule.condition
    assert condition is not None
    every = flux_duration(result.rule.schedule.every)
    if condition.deadman is not None:
        deadman = condition.deadman
        return (
            f"deadman, {Severity(deadman.severity).name} after {flux_duration(deadman.timeout)}"
            f" without data (series seen within {flux_duration(deadman.lookback)}),"
            f" every {every}"
        )
    return f"{condition.aggregate} over {flux_duration(condition.window)}, every {every}"


def _drawn(series: Series, every: timedelta) -> tuple[list[Any], list[float]]:
    """The samples to draw, gaps as gaps, a long series reduced with its spikes kept.

    A gap longer than ``every`` (and than five usual steps) breaks the line; beyond
    ``MAX_POINTS``, each bucket's minimum and maximum are drawn.
    """
    samples = series.samples
    if not samples:
        return [], []
    steps = sorted((b[0] - a[0]).total_seconds() for a, b in itertools.pairwise(samples))
    usual = steps[len(steps) // 2] if steps else 0.0
    gap = max(every.total_seconds(), 5 * usual)
    size = max(1, math.ceil(len(samples) / (MAX_POINTS / 2)))
    segments: list[list[Any]] = [[samples[0]]]
    for before, after in itertools.pairwise(samples):
        if (after[0] - before[0]).total_seconds() > gap:
            segments.append([])
        segments[-1].append(after)
    times: list[Any] = []
    values: list[float] = []
    for segment in segments:
        if times:  # the line breaks between segments
            times.append(times[-1])
            values.append(math.nan)
        for start in range(0, len(segment), size):
            bucket = segment[start : start + size]
            low, high = min(bucket, key=lambda s: s[1]), max(bucket, key=lambda s: s[1])
            for time, value in sorted({low, high}):
                times.append(time)
                values.append(value)
    return times, values


def _aggregate(axis: Any, series: Series, label: str, window: timedelta | None) -> None:
    """Each evaluation's value, drawn across the window it came from (one line)."""
    if not series.evaluations:
        return
    times: list[Any] = []
    values: list[float] = []
    for at, value, _severity in series.evaluations:
        if window is None:
            times.append(at)
            values.append(value)
        else:
            times += [at - window, at, at]
            values += [value, value, math.nan]  # one segment per window
    axis.plot(
        times,
        values,
        color="#263238",
        linewidth=1.6,
        marker="." if window is None else None,
        markersize=3,
        label=f"{label} (evaluated)",
    )


def _thresholds(axis: Any, thresholds: Any) -> None:
    for severity, level in thresholds.levels():
        colour = COLOURS[severity]
        axis.axhline(
            level, color=colour, linestyle="--", linewidth=1.2, label=f"{severity.name} {level:g}"
        )
        if thresholds.hysteresis:
            band = -thresholds.hysteresis if thresholds.big_is_bad else thresholds.hysteresis
            axis.axhspan(
                min(level, level + band),
                max(level, level + band),
                facecolor=colour,
                alpha=0.25,
                hatch="///",
                edgecolor=colour,
                linewidth=0,
                label=f"kept until back past {level + band:g} (hysteresis)",
            )


def _severity_bands(axis: Any, series: Series) -> None:
    """The severity from each evaluation to the next, as coloured bands (runs merged)."""
    seen: set[Severity] = set()
    runs = itertools.groupby(itertools.pairwise(series.evaluations), key=lambda p: p[0][2])
    for severity, pairs in runs:
        spans = list(pairs)
        axis.axvspan(
            spans[0][0][0],
            spans[-1][1][0],
            color=COLOURS[severity],
            alpha=0.12,
            linewidth=0,
            label=None if severity in seen else f"severity {severity.name}",
        )
        seen.add(severity)


def _actions(axis: Any, result: Result, name: str) -> None:
    """Actions that would have run (blue triangles) and suppressed ones (grey crosses)."""
    transform = axis.get_xaxis_transform()  # x in data, y in axes fraction
    kinds = (
        ("actions", "would run", "v", "#1565c0"),
        ("suppressed", "suppressed", "x", "#757575"),
    )
    for attribute, text, marker, colour in kinds:
        changes = [
            c for c in result.changes if getattr(c, attribute) and series_key(c.tags) == name
        ]
        if not changes:
            continue
        names = sorted({a for c in changes for a in getattr(c, attribute)})
        axis.scatter(
            [c.time for c in changes],
            [0.97] * len(changes),
            marker=marker,
            s=34,
            color=colour,
            transform=transform,
            label=f"{text}: {', '.join(names)}",
            zorder=5,
        )
