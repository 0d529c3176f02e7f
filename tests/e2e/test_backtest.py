"""`catcher backtest` against a real InfluxDB 1.x: when the rule would have fired."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
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


def _lines(*, efd: bool = True) -> list[str]:
    """The points as Sasquatch's Telegraf writes them (``efd``: every Avro field a field,
    ``salIndex`` an integer), or with ``salIndex`` as a tag.

    The devices' stamps differ by a millisecond, as real ones do: on the EFD, two points
    of one measurement with the same time are one point (no tag tells them apart).
    """
    lines = []
    for minute, value in enumerate(PROFILE):
        for second in (10, 40):
            when = START + timedelta(minutes=minute, seconds=second)
            for sal_index, temperature in ((1, value), (2, 20)):
                ns = int(when.timestamp()) * 1_000_000_000 + sal_index * 1_000_000
                if efd:
                    lines.append(
                        "lsst.sal.MTHexapod.electrical"
                        f" motorTemperature0={temperature},salIndex={sal_index}i {ns}"
                    )
                else:
                    lines.append(
                        f"lsst.sal.MTHexapod.electrical,salIndex={sal_index}"
                        f" motorTemperature0={temperature} {ns}"
                    )
    return lines


def _setup(stack: Stack, influxdb: InfluxDB, *, efd: bool = True) -> None:
    database = stack.prefix.replace(".", "_")
    influxdb.query(f'CREATE DATABASE "{database}"')
    influxdb.write(database, _lines(efd=efd))
    stack.write_rules(RULES)
    stack.extra_env.update(CATCHER_EFD_URL=influxdb.url, CATCHER_EFD_DATABASE=database)


@pytest.mark.asyncio
@pytest.mark.parametrize("efd", [True, False], ids=["salIndex a field", "salIndex a tag"])
async def test_a_backtest_shows_changes_actions_and_a_plot(
    stack: Stack, influxdb: InfluxDB, tmp_path: Path, efd: bool
) -> None:
    _setup(stack, influxdb, efd=efd)
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
    if efd:  # the topic's schema, with SAL's units, for the plot's axis
        schema = {
            "type": "record",
            "name": "electrical",
            "fields": [{"name": "motorTemperature0", "type": "double", "units": "deg_C"}],
        }
        async with httpx.AsyncClient() as http:
            answer = await http.post(
                f"{stack.registry.url}/subjects/lsst.sal.MTHexapod.electrical-value/versions",
                json={"schema": json.dumps(schema)},
            )
            assert answer.is_success, answer.text
    code, out, err = await stack.cli(
        "backtest", "hexapod-temperature", "--since", since, "--until", until, "--plot", str(plot)
    )
    assert code == 0, err
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert f"Wrote {plot} (2 series)." in err
    unknown = "Units unknown: no schema is registered for lsst.sal.MTHexapod.electrical."
    assert (unknown in err) is not efd, err
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
    since, until = START.isoformat(), (START + timedelta(minutes=7)).isoformat()
    for typo, message in (
        (
            "measurement: lsst.sal.MTHexapod.electrical",
            "The EFD has no measurement 'lsst.sal.MTHexapod.electricl'",
        ),
        (
            "field: motorTemperature0",
            (
                "lsst.sal.MTHexapod.electrical has no number field 'motorTemperatur0' in the"
                " EFD (its number fields: motorTemperature0, salIndex)"
            ),
        ),
        ("group_by: [salIndex]", "has no tag or field 'salindex' in the EFD"),
    ):
        wrong = typo.replace("electrical", "electricl").replace("Temperature0", "Temperatur0")
        stack.write_rules(RULES.replace(typo, wrong.replace("salIndex", "salindex")))
        code, out, err = await stack.cli(
            "backtest", "hexapod-temperature", "--since", since, "--until", until
        )
        assert code == 1 and message in err, (out, err)


@pytest.mark.asyncio
async def test_a_rule_filtered_by_a_field_finds_its_device_alone(
    stack: Stack, influxdb: InfluxDB
) -> None:
    """``tags: {salIndex: "1"}`` on the EFD, where salIndex is an integer field."""
    _setup(stack, influxdb)
    stack.write_rules(RULES.replace("group_by: [salIndex]", 'tags: {salIndex: "1"}'))
    since, until = START.isoformat(), (START + timedelta(minutes=7)).isoformat()
    code, out, err = await stack.cli(
        "backtest", "hexapod-temperature", "--since", since, "--until", until, "--json"
    )
    assert code == 0, err
    assert [(c["severity"], c["series"]) for c in json.loads(out)] == [
        ("WARNING", ""),
        ("CRITICAL", ""),
        ("NONE", ""),
        ("WARNING", ""),
        ("NONE", ""),
    ]
    stack.write_rules(RULES.replace("group_by: [salIndex]", 'tags: {salIndex: "one"}'))
    code, _, err = await stack.cli("backtest", "hexapod-temperature", "--since", since)
    assert code == 1
    assert "salIndex is an integer field in the EFD; the rule's value 'one' is not one" in err
