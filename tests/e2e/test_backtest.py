"""`catcher backtest` against a real InfluxDB 1.x: when the rule would have fired."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.support.influxdb import InfluxDB
from tests.support.stack import Stack

pytestmark = pytest.mark.e2e

RULES = """
rules:
  - id: hexapod-temperature
    description: Hexapod actuator temperature.
    condition:
      source:
        measurement: lsst.sal.MTHexapod.electrical
        field: motorTemperature0
        group_by: [salIndex]
      aggregate: max
      window: 1m
      thresholds: {warning: 60, critical: 70, big_is_bad: true, hysteresis: 2}
    schedule: {every: 1m}
    actions:
      - name: notify
        type: webhook
        url_env: CATCHER_TEST_WEBHOOK_URL
        on: {severity: WARNING, edge: rising}
        cooldown: 3m
        body: {text: "{severity}"}
  - id: by-hand
    description: Fires only by hand.
"""

START = datetime(2026, 11, 20, 3, 0, tzinfo=UTC)
# Minute by minute for salIndex 1: warm, hot, hotter, in the band, cool, hot again.
PROFILE = [50, 61, 71, 69, 58, 61, 55]


def _lines() -> list[str]:
    lines = []
    for minute, value in enumerate(PROFILE):
        for second in (10, 40):
            when = START + timedelta(minutes=minute, seconds=second)
            ns = int(when.timestamp()) * 1_000_000_000
            lines.append(
                f"lsst.sal.MTHexapod.electrical,salIndex=1 motorTemperature0={value} {ns}"
            )
            lines.append(f"lsst.sal.MTHexapod.electrical,salIndex=2 motorTemperature0=20 {ns}")
    return lines


def _setup(stack: Stack, influxdb: InfluxDB) -> None:
    database = stack.prefix.replace(".", "_")
    influxdb.query(f'CREATE DATABASE "{database}"')
    influxdb.write(database, _lines())
    stack.write_rules(RULES)
    stack.extra_env.update(CATCHER_EFD_URL=influxdb.url, CATCHER_EFD_DATABASE=database)


@pytest.mark.asyncio
async def test_a_backtest_shows_changes_actions_and_a_plot(
    stack: Stack, influxdb: InfluxDB, tmp_path: Path
) -> None:
    _setup(stack, influxdb)
    since = START.isoformat()
    until = (START + timedelta(minutes=len(PROFILE))).isoformat()
    code, out, err = await stack.cli(
        "backtest", "hexapod-temperature", "--since", since, "--until", until, "--json"
    )
    assert code == 0, err
    changes = [
        (c["time"][11:16], c["series"], c["severity"], c["actions"], c["suppressed"])
        for c in json.loads(out)
    ]
    # Each minute's end evaluates the minute before it; 69 stays CRITICAL inside the
    # hysteresis band; the second rise is past the 3 min cooldown, the first is not.
    assert changes == [
        ("03:02", "salIndex=1", "WARNING", ["notify"], []),
        ("03:03", "salIndex=1", "CRITICAL", [], ["notify"]),
        ("03:05", "salIndex=1", "NONE", [], []),
        ("03:06", "salIndex=1", "WARNING", ["notify"], []),
        ("03:07", "salIndex=1", "NONE", [], []),
    ]
    plot = tmp_path / "backtest.png"
    code, out, err = await stack.cli(
        "backtest", "hexapod-temperature", "--since", since, "--until", until, "--plot", str(plot)
    )
    assert code == 0, err
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert f"Wrote {plot} (2 series)." in err
    assert "WARNING → CRITICAL" in out
    assert "2 series, 5 change(s), 2 action(s) would have run" in out


@pytest.mark.asyncio
async def test_a_backtest_says_what_is_wrong(stack: Stack, influxdb: InfluxDB) -> None:
    _setup(stack, influxdb)
    code, out, _ = await stack.cli(
        "backtest",
        "hexapod-temperature",
        "--since",
        "2020-01-01T00:00:00+00:00",
        "--until",
        "2020-01-02T00:00:00+00:00",
    )
    assert code == 0 and out.startswith("No data for rule 'hexapod-temperature'"), out
    code, _, err = await stack.cli("backtest", "by-hand", "--since", "1d")
    assert code == 2 and "has no condition" in err
    code, _, err = await stack.cli("backtest", "nope", "--since", "1d")
    assert code == 2 and "No rule 'nope'" in err
    code, _, err = await stack.cli("backtest", "hexapod-temperature", "--since", "soon")
    assert code == 2 and "neither an ISO time nor a duration" in err
