"""The backtest's plot.

Each series' values, the thresholds with their hysteresis bands, the severity over time as
coloured bands, and the actions that would have run.
"""

from __future__ import annotations

import itertools
from pathlib import Path

from ...models.enums import Severity
from ...models.records import series_key
from .backtest import Result

__all__ = ["COLOURS", "plot"]

COLOURS = {
    Severity.NONE: "#2e7d32",
    Severity.WARNING: "#f9a825",
    Severity.SERIOUS: "#ef6c00",
    Severity.CRITICAL: "#c62828",
}
MAX_PANELS = 8


def plot(result: Result, path: Path) -> int:
    """Write the PNG; returns how many series it shows (at most eight)."""
    import matplotlib as mpl  # noqa: PLC0415 - a heavy import, only for --plot

    mpl.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    condition = result.rule.condition
    assert condition is not None  # run_backtest checked
    names = sorted(result.series)[:MAX_PANELS]
    figure, axes = plt.subplots(
        len(names), 1, figsize=(11, 2.8 * len(names) + 0.6), sharex=True, squeeze=False
    )
    for axis, name in zip(axes[:, 0], names, strict=True):
        series = result.series[name]
        if series.samples:
            times, values = zip(*series.samples, strict=True)
            axis.plot(times, values, color="#263238", linewidth=0.8, label=condition.source.field)
        evaluations = series.evaluations
        for (start, _, severity), (stop, _, _) in itertools.pairwise(evaluations):
            axis.axvspan(start, stop, color=COLOURS[severity], alpha=0.15, linewidth=0)
        thresholds = condition.thresholds
        if thresholds is not None:
            for severity, level in thresholds.levels():
                axis.axhline(level, color=COLOURS[severity], linestyle="--", linewidth=1)
                if thresholds.hysteresis:
                    band = (
                        -thresholds.hysteresis if thresholds.big_is_bad else thresholds.hysteresis
                    )
                    axis.axhspan(
                        min(level, level + band),
                        max(level, level + band),
                        color=COLOURS[severity],
                        alpha=0.1,
                    )
        for change in result.changes:
            if change.actions and name == _series_name(change.tags):
                axis.axvline(change.time, color="#1565c0", linewidth=1)
                axis.annotate(
                    ", ".join(change.actions),
                    (change.time, 1.0),
                    xycoords=("data", "axes fraction"),
                    fontsize=7,
                    rotation=90,
                    va="top",
                    color="#1565c0",
                )
        axis.set_title(f"{result.rule.id} {name}".strip(), fontsize=9)
        axis.set_ylabel(condition.source.field, fontsize=8)
    figure.suptitle(
        f"{result.rule.id}: {condition.aggregate} over {condition.window}, backtest"
        f" {result.start:%Y-%m-%d %H:%M} to {result.end:%Y-%m-%d %H:%M} UTC",
        fontsize=10,
    )
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return len(names)


def _series_name(tags: dict[str, str]) -> str:
    return series_key(tags)
