"""The backtest's plot: gaps stay gaps, spikes survive the reduction, a PNG is written."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from pathlib import Path

from catcher.models.rules import Rule
from catcher.services.evaluation.backtest import Series, run_backtest
from catcher.services.evaluation.plot import MAX_POINTS, _drawn, plot

T0 = datetime(2026, 11, 20, tzinfo=UTC)


def test_a_silence_breaks_the_line_and_a_spike_survives() -> None:
    samples = [(T0 + timedelta(seconds=10 * n), 50.0) for n in range(20_000)]
    samples = [
        s for s in samples if not T0 + timedelta(hours=10) <= s[0] < T0 + timedelta(hours=13)
    ]
    samples[5_000] = (samples[5_000][0], 99.0)  # one spike among many
    times, values = _drawn(Series.of({}, samples), timedelta(minutes=1))
    assert len(times) <= MAX_POINTS + 4
    breaks = [i for i, v in enumerate(values) if math.isnan(v)]
    assert len(breaks) == 1  # the silence, and nowhere else
    (at,) = breaks
    assert times[at] < T0 + timedelta(hours=10) <= T0 + timedelta(hours=13) <= times[at + 1]
    assert max(v for v in values if not math.isnan(v)) == 99.0


def test_a_deadman_plot_is_written(tmp_path: Path) -> None:
    rule = Rule.model_validate(
        {
            "id": "quiet",
            "description": "d",
            "condition": {
                "source": {"measurement": "m", "field": "v"},
                "deadman": {"timeout": "5m"},
            },
            "schedule": {"every": "1m"},
        }
    )
    samples = [(T0 + timedelta(minutes=n), 1.0) for n in range(60) if not 20 <= n < 40]
    result = run_backtest(rule, {"": Series.of({}, samples)}, T0, T0 + timedelta(hours=1))
    assert plot(result, tmp_path / "p.png") == 1
    assert (tmp_path / "p.png").read_bytes()[:4] == b"\x89PNG"
