"""`catcher mirror` from a real InfluxDB 1.x server to the triggers topic."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from catcher.avro import AvroCodec
from catcher.broker import free_port
from catcher.kafka import read_topic
from catcher.models.enums import Severity, TriggerSource
from catcher.models.records import Trigger
from tests.support.influxdb import InfluxDB
from tests.support.stack import Stack

pytestmark = pytest.mark.e2e

NS = 1_000_000_000


def row(rule: str, sal_index: str, when_ns: int, severity: str = "WARNING") -> str:
    trigger_id = f"{rule}|salIndex={sal_index}|{when_ns}"
    return (
        f"catcher_triggers,rule_id={rule},salIndex={sal_index}"
        f' trigger_id="{trigger_id}",severity="{severity}",severity_level=2i,value=61.5,'
        f'reason="mean of t over 5m is 61.5: {severity}",source="flux",'
        f'window_start="2026-11-23T21:55:00.123456789Z",window_stop="2026-11-23T22:00:00Z"'
        f" {when_ns}"
    )


def use_mirror(stack: Stack, influxdb: InfluxDB, tmp_path: Path, **settings: str) -> str:
    """A database of the test's own, and the mirror settings that point at it."""
    database = stack.prefix.replace(".", "_")
    influxdb.query(f'CREATE DATABASE "{database}"')
    stack.extra_env.update(
        CATCHER_MIRROR_URL=influxdb.url,
        CATCHER_TRIGGER_BUCKET=f"{database}/autogen",
        **settings,
    )
    return database


async def triggers(stack: Stack) -> list[Trigger]:
    config = stack.config
    codec = AvroCodec(stack.registry.url, stack.prefix)
    found = []
    for message in await read_topic(config, config.triggers_topic):
        trigger = Trigger.from_avro(await codec.decode("triggers", message.value))
        assert message.key == trigger.key
        found.append(trigger)
    return found


@pytest.mark.asyncio
async def test_rows_are_published_once_across_restarts(
    stack: Stack, influxdb: InfluxDB, tmp_path: Path
) -> None:
    database = use_mirror(stack, influxdb, tmp_path, CATCHER_MIRROR_LOOKBACK="600")
    now = time.time_ns()
    influxdb.write(database, [row("hot", "1", now - 120 * NS), row("hot", "2", now - 60 * NS)])
    code, out, err = await stack.cli("mirror", "--once")
    assert code == 0, err
    assert out.strip() == "Published 2 trigger(s)."
    # A restart in a new, empty directory: nothing new, nothing again.
    stack.extra_env["CATCHER_DATA_DIR"] = str(tmp_path / "elsewhere")
    code, out, err = await stack.cli("mirror", "--once")
    assert (code, out.strip()) == (0, "Published 0 trigger(s)."), err
    # A new row, and a late one older than the newest row but inside the lookback.
    influxdb.write(database, [row("hot", "1", now), row("cold", "3", now - 300 * NS, "NONE")])
    code, out, err = await stack.cli("mirror", "--once")
    assert (code, out.strip()) == (0, "Published 2 trigger(s)."), err
    code, out, _ = await stack.cli("mirror", "--once")
    assert out.strip() == "Published 0 trigger(s)."
    published = await triggers(stack)
    assert len(published) == 4
    assert len({t.trigger_id for t in published}) == 4
    first = published[0]
    # The id the stream engine (or `catcher trigger`) gives the same rule, series and time,
    # not the row's text id: one evaluation has one id whichever engine made it.
    same = Trigger.create(
        "hot",
        Severity.NONE,
        reason="",
        source=TriggerSource.stream,
        time=first.time,
        tags={"salIndex": "1"},
    )
    assert abs(first.time.timestamp() - (now - 120 * NS) / NS) < 1e-5
    assert first.trigger_id == same.trigger_id
    assert (first.rule_id, first.tags, first.severity) == (
        "hot",
        {"salIndex": "1"},
        Severity.WARNING,
    )
    assert first.source == TriggerSource.flux
    assert first.value == 61.5
    assert first.window_start is not None and first.window_start.microsecond == 123456
    late = next(t for t in published if t.rule_id == "cold")
    assert late.severity == Severity.NONE


@pytest.mark.asyncio
async def test_rows_older_than_the_lookback_are_not_read_again(
    stack: Stack, influxdb: InfluxDB, tmp_path: Path
) -> None:
    database = use_mirror(stack, influxdb, tmp_path, CATCHER_MIRROR_LOOKBACK="60")
    now = time.time_ns()
    influxdb.write(database, [row("hot", "1", now)])
    assert (await stack.cli("mirror", "--once"))[1].strip() == "Published 1 trigger(s)."
    influxdb.write(database, [row("hot", "2", now - 3600 * NS)])  # an hour late: too late
    assert (await stack.cli("mirror", "--once"))[1].strip() == "Published 0 trigger(s)."


@pytest.mark.asyncio
async def test_unreachable_influxdb_is_a_clear_error(stack: Stack, tmp_path: Path) -> None:
    stack.extra_env.update(
        CATCHER_MIRROR_URL=f"http://127.0.0.1:{free_port()}",
    )
    code, _, err = await stack.cli("mirror", "--once")
    assert code == 1
    assert "Error: Cannot reach InfluxDB at http://127.0.0.1:" in err


@pytest.mark.asyncio
async def test_mirror_inside_the_worker_carries_rows_to_actions(
    stack: Stack, influxdb: InfluxDB, tmp_path: Path
) -> None:
    database = use_mirror(
        stack, influxdb, tmp_path, CATCHER_MIRROR_ENABLED="true", CATCHER_MIRROR_INTERVAL="0.5"
    )
    stack.write_rules(
        "rules:\n  - id: hot\n    description: d\n    actions:\n"
        "      - {type: webhook, url_env: CATCHER_TEST_WEBHOOK_URL,"
        " body: {t: '{tags.salIndex}'}}\n"
    )
    await stack.start_worker()
    influxdb.write(database, [row("hot", "7", time.time_ns())])
    await stack.wait_for(
        lambda: asyncio.sleep(0, result=stack.webhook.count("POST") == 1),
        what="the webhook action of the mirrored row",
    )
    assert stack.webhook.bodies() == [{"t": "7"}]
