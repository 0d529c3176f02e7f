"""Rules on the telemetry stream, end to end: Avro telemetry in, triggers, alarms, actions."""

from __future__ import annotations

import asyncio
import io
import json
import struct
import time
from collections import Counter
from typing import Any

import fastavro
import httpx
import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from catcher.broker import free_port
from catcher.kafka import ensure_topics, existing_topics, make_producer, read_topic
from catcher.models.records import Trigger
from tests.support.helm import subchart_topics
from tests.support.stack import Stack

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio]

TOPIC = "lsst.sal.MTHexapod.electrical"
RULES = f"""
rules:
  - id: hexapod-stream
    description: Hexapod temperature, evaluated on the stream.
    condition:
      engine: stream
      source:
        measurement: {TOPIC}
        field: motorTemperature0
        group_by: [salIndex]
      aggregate: max
      window: 2s
      thresholds: {{warning: 60, critical: 70}}
    schedule: {{every: 2s}}
    actions:
      - name: notify
        type: webhook
        url_env: CATCHER_TEST_WEBHOOK_URL
        on: {{severity: WARNING, edge: rising}}
        body: {{text: "{{severity}} {{value}}"}}
"""
SCHEMA = {
    "type": "record",
    "name": "electrical",
    "namespace": "lsst.sal.MTHexapod",
    "fields": [
        {"name": "private_efdStamp", "type": "double"},
        {"name": "salIndex", "type": "long"},
        {"name": "motorTemperature0", "type": "double"},
    ],
}


async def _telemetry(stack: Stack) -> Any:
    async with httpx.AsyncClient() as client:
        answer = await client.post(
            f"{stack.registry.url}/subjects/{TOPIC}-value/versions",
            json={"schema": json.dumps(SCHEMA)},
        )
    schema_id = answer.json()["id"]
    parsed = fastavro.parse_schema(SCHEMA)
    producer = make_producer(stack.config)
    await producer.start()

    async def send(stamp: float, value: float, sal_index: int = 1) -> None:
        body = io.BytesIO()
        body.write(struct.pack(">bI", 0, schema_id))
        record = {"private_efdStamp": stamp, "salIndex": sal_index, "motorTemperature0": value}
        fastavro.schemaless_writer(body, parsed, record)
        await producer.send_and_wait(TOPIC, body.getvalue(), key=b"")  # SAL's key

    return producer, send


async def _stream_triggers(stack: Stack) -> list[Trigger]:
    config = stack.config
    found = []
    for message in await read_topic(config, config.triggers_topic):
        trigger = Trigger.from_avro(await stack.codec.decode("triggers", message.value))
        if trigger.source == "stream":
            found.append(trigger)
    return found


async def _ready(stack: Stack, port: int) -> None:
    """Wait until the worker is at work (its partitions assigned, its tables recovered)."""

    async def working() -> bool:
        async with httpx.AsyncClient() as client:
            try:
                answer = await client.get(f"http://127.0.0.1:{port}/status")
            except httpx.ConnectError:
                return False
        return bool(answer.json()["working"])

    await stack.wait_for(working, timeout=90, what="the worker at work (/status)")


def _boundary() -> float:
    """A window boundary (every 2 s) at least 2 s from now."""
    return (int(time.time()) // 2) * 2 + 4.0


async def test_telemetry_becomes_triggers_and_actions_and_no_window_twice_after_a_restart(
    stack: Stack,
) -> None:
    port = free_port()
    stack.write_rules(RULES)
    stack.extra_env.update(CATCHER_STREAM_GRACE="1", CATCHER_HTTP_PORT=str(port))
    await ensure_topics(stack.config, [TOPIC])
    await stack.start_worker()
    await _ready(stack, port)
    producer, send = await _telemetry(stack)
    try:
        first = _boundary()
        await send(first - 1.5, 50)
        await send(first - 1.0, 65)  # the window ending at `first`: WARNING
        await send(first + 1.5, 55)  # closes it: event time past its end and the grace

        async def notified() -> bool:
            return stack.webhook.count("POST") >= 1

        await stack.wait_for(notified, what="the webhook called for the WARNING window")

        # The owner's clock closes the quiet window after it (55: NONE).
        async def count(n: int) -> bool:
            return len(await _stream_triggers(stack)) >= n

        await stack.wait_for(lambda: count(2), what="the NONE window closed by the clock")
        # A clean restart: evaluated windows are not evaluated again.
        stack.workers[0].stop()
        await stack.start_worker()
        await _ready(stack, port)
        second = _boundary()
        await send(second - 1.0, 72)  # CRITICAL, closed by the clock after the grace
        await stack.wait_for(lambda: count(3), timeout=60, what="the window after the restart")
        await asyncio.sleep(3)  # more windows close, empty: they send nothing
        triggers = await _stream_triggers(stack)
        assert [(t.time.timestamp(), t.severity.name, t.value) for t in triggers] == [
            (first, "WARNING", 65.0),
            (first + 2, "NONE", 55.0),
            (second, "CRITICAL", 72.0),
        ]
        assert all(t.tags == {"salIndex": "1"} for t in triggers)
        bodies = [r.json() for r in stack.webhook.requests]
        assert bodies == [{"text": "WARNING 65.0"}, {"text": "CRITICAL 72.0"}]
    finally:
        await producer.stop()


EXACT_RULES = f"""
rules:
  - id: exact
    description: Maximum over 2 s windows, for every salIndex.
    condition:
      engine: stream
      source:
        measurement: {TOPIC}
        field: motorTemperature0
        group_by: [salIndex]
      aggregate: max
      window: 2s
      thresholds: {{warning: 60, critical: 70}}
    schedule: {{every: 2s}}
    actions:
      - name: page
        type: webhook
        url_env: CATCHER_TEST_WEBHOOK_URL
        on: {{severity: CRITICAL, edge: rising}}
        body: {{text: "{{trigger_id}}"}}
"""


def _value(n: int, sal_index: int) -> float:
    """A deterministic walk through the levels: NONE, WARNING and CRITICAL windows."""
    return 50.0 + ((n * 7 + sal_index * 13) % 29)


def _expected(
    sent: list[tuple[float, int, float]],
) -> tuple[list[tuple[float, str, str, float]], int]:
    """Every window's trigger and the number of rises to CRITICAL, computed independently."""
    windows: dict[tuple[str, float], float] = {}
    first: dict[str, float] = {}
    for stamp, sal_index, value in sent:
        series = str(sal_index)
        first.setdefault(series, stamp)
        end = (stamp // 2) * 2 + 2
        windows[(series, end)] = max(value, windows.get((series, end), value))
    expected = []
    rises = 0
    for series in sorted(first):
        previous = "NONE"
        for (s, end), value in sorted(windows.items()):
            if s != series:
                continue
            severity = "CRITICAL" if value >= 70 else "WARNING" if value >= 60 else "NONE"
            rises += severity == "CRITICAL" and previous != "CRITICAL"
            previous = severity
            expected.append((end, series, severity, value))
    return sorted(expected), rises


async def _feed(
    send: Any, sal_indexes: list[int], seconds: float, sent: list[tuple[float, int, float]]
) -> None:
    """Telemetry at 5 Hz per series, in real time, stamped now."""
    n = len(sent)
    deadline = time.time() + seconds
    while time.time() < deadline:
        stamp = time.time()
        for sal_index in sal_indexes:
            value = _value(n, sal_index)
            await send(stamp, value, sal_index)
            sent.append((stamp, sal_index, value))
        n += 1
        await asyncio.sleep(0.2)


async def _check_exact(stack: Stack, sent: list[tuple[float, int, float]]) -> None:
    expected, rises = _expected(sent)

    async def all_windows() -> bool:
        return len(await _stream_triggers(stack)) >= len(expected)

    await stack.wait_for(all_windows, timeout=120, what="every window evaluated")
    await asyncio.sleep(3)  # nothing more comes
    triggers = await _stream_triggers(stack)
    found = sorted(
        (t.time.timestamp(), t.tags["salIndex"], t.severity.name, t.value) for t in triggers
    )
    assert found == expected  # every window once, on all of its samples
    await stack.wait_for(
        lambda: _posts(stack, rises), timeout=60, what=f"{rises} pages for rises to CRITICAL"
    )
    keys = Counter(r.headers["Idempotency-Key"] for r in stack.webhook.requests)
    assert len(keys) == rises and set(keys.values()) == {1}  # every action once


async def _posts(stack: Stack, n: int) -> bool:
    return len({r.headers["Idempotency-Key"] for r in stack.webhook.requests}) >= n


async def test_a_worker_killed_amid_the_feed_and_restarted_after_the_grace_is_exact(
    stack: Stack,
) -> None:
    """SIGKILL in the middle of a feed at the default 10 s grace, back 15 s later.

    One record per batch makes the backlog take seconds to read, so that a clock closing
    windows before it is read would lose some or evaluate them on part of their samples.
    """
    port = free_port()
    stack.write_rules(EXACT_RULES)
    stack.extra_env.update(CATCHER_HTTP_PORT=str(port), CATCHER_BATCH_MAX="1")
    await ensure_topics(stack.config, [TOPIC])
    worker = await stack.start_worker()
    await _ready(stack, port)
    producer, send = await _telemetry(stack)
    sent: list[tuple[float, int, float]] = []
    try:
        series = [1, 2, 3, 4, 5, 6]
        await _feed(send, series, 8, sent)
        worker.kill()
        await _feed(send, series, 15, sent)  # the grace passes with nobody reading
        await stack.start_worker()
        await _feed(send, series, 8, sent)
        await _check_exact(stack, sent)
    finally:
        await producer.stop()


async def _subchart_topics(stack: Stack, partitions: int) -> set[str]:
    """Create the topics the Sasquatch subchart declares, as Strimzi would; their names."""
    config = stack.config
    declared = subchart_topics(
        topicPrefix=config.topic_prefix,
        appId=config.app_id,
        partitions=str(partitions),
        replicas="1",
    )
    admin = AIOKafkaAdminClient(bootstrap_servers=stack.bootstrap)
    await admin.start()
    try:
        await admin.create_topics(
            [
                NewTopic(
                    name,
                    spec["partitions"],
                    1,
                    topic_configs={k: str(v) for k, v in spec["config"].items()},
                )
                for name, spec in declared.items()
            ]
        )
    finally:
        await admin.close()
    return set(declared)


async def _own_topics(stack: Stack) -> set[str]:
    config = stack.config
    return {
        name
        for name in await existing_topics(config)
        if name.startswith((f"{config.topic_prefix}.", f"{config.app_id}-"))
    }


async def test_a_one_partition_telemetry_topic_is_shared_by_two_workers(stack: Stack) -> None:
    """As on Sasquatch: one partition per telemetry topic; the series spread over workers.

    The workers create no topic (``createTopics: false``): they run on exactly the topics
    the Sasquatch subchart declares, and refuse clearly to run on a broker without them.
    """
    stack.write_rules(EXACT_RULES)
    stack.partitions = 3
    stack.extra_env.update(CATCHER_CREATE_TOPICS="false")
    await ensure_topics(stack.config, [TOPIC])  # one partition
    code, _, err = await stack.cli("worker")
    assert code == 1
    assert f"{stack.config.samples_topic} does not exist" in err, err
    assert "CATCHER_CREATE_TOPICS is false" in err
    declared = await _subchart_topics(stack, partitions=3)
    stack.extra_env["CATCHER_TOPIC_PARTITIONS"] = "2"
    code, _, err = await stack.cli("worker")
    assert code == 1
    assert (
        f"{stack.config.samples_topic} has 3 partition(s), not 2 (CATCHER_TOPIC_PARTITIONS)" in err
    ), err
    del stack.extra_env["CATCHER_TOPIC_PARTITIONS"]
    ports = [free_port(), free_port()]
    for port in ports:
        stack.extra_env["CATCHER_HTTP_PORT"] = str(port)
        await stack.start_worker()
    for port in ports:
        await _ready(stack, port)
    producer, send = await _telemetry(stack)
    sent: list[tuple[float, int, float]] = []
    try:
        await _feed(send, [1, 2, 3, 4, 5, 6], 10, sent)
        await _check_exact(stack, sent)
    finally:
        await producer.stop()
    for worker in stack.workers:
        worker.assert_alive()
    states = [
        json.loads(m.value)["kind"]
        for m in await read_topic(stack.config, stack.config.samples_topic)
    ]
    assert "samples" in states and "telemetry_mark" in states
    assert await _own_topics(stack) == declared  # none created, none missing


ESS = "lsst.sal.ESS.temperature"
ESS_SCHEMA = {
    "type": "record",
    "name": "temperature",
    "namespace": "lsst.sal.ESS",
    "fields": [
        {"name": "private_efdStamp", "type": "double"},
        {"name": "salIndex", "type": "long"},
        {"name": "temperatureItem", "type": {"type": "array", "items": "float"}},
    ],
}


def _ess_rule(rule_id: str, field: str, window: str = "2s") -> str:
    return f"""
  - id: {rule_id}
    description: One channel of an ESS temperature array.
    condition:
      engine: stream
      source: {{measurement: {ESS}, field: "{field}", group_by: [salIndex]}}
      aggregate: max
      window: {window}
      thresholds: {{warning: 30}}
    schedule: {{every: 2s}}
    actions:
      - name: notify
        type: webhook
        url_env: CATCHER_TEST_WEBHOOK_URL
        body: {{text: "{{rule_id}} {{value}}"}}
"""


async def test_rules_on_sal_array_elements_fire_and_a_missing_field_is_refused(
    stack: Stack,
) -> None:
    async with httpx.AsyncClient() as client:
        answer = await client.post(
            f"{stack.registry.url}/subjects/{ESS}-value/versions",
            json={"schema": json.dumps(ESS_SCHEMA)},
        )
    schema_id = answer.json()["id"]
    await ensure_topics(stack.config, [ESS])
    stack.write_rules(
        "rules:" + _ess_rule("ess", "temperatureItem[13]") + _ess_rule("bad", "temperature")
    )
    code, _, err = await stack.cli("worker")
    assert code == 1
    assert "rule 'bad': lsst.sal.ESS.temperature has no number field 'temperature'" in err
    stack.write_rules(
        "rules:"
        + _ess_rule("indexed", "temperatureItem[13]")
        + _ess_rule("flat", "temperatureItem13")
        + _ess_rule("each", "temperatureItem[13]", window="0")  # every sample, as it comes
    )
    port = free_port()
    stack.extra_env.update(CATCHER_HTTP_PORT=str(port), CATCHER_STREAM_GRACE="1")
    await stack.start_worker()
    await _ready(stack, port)
    parsed = fastavro.parse_schema(ESS_SCHEMA)
    producer = make_producer(stack.config)
    await producer.start()
    try:
        start = _boundary()
        for offset, hot in ((-1.5, 20.0), (-1.0, 31.5), (1.5, 20.0)):
            body = io.BytesIO()
            body.write(struct.pack(">bI", 0, schema_id))
            channels = [10.0] * 16
            channels[13] = hot
            record = {
                "private_efdStamp": start + offset,
                "salIndex": 3,
                "temperatureItem": channels,
            }
            fastavro.schemaless_writer(body, parsed, record)
            await producer.send_and_wait(ESS, body.getvalue(), key=b"")
    finally:
        await producer.stop()

    async def all_three() -> bool:
        return stack.webhook.count("POST") >= 3

    await stack.wait_for(all_three, what="the three rules on channel 13 fired")
    assert sorted(r.json()["text"] for r in stack.webhook.requests) == [
        "each 31.5",
        "flat 31.5",
        "indexed 31.5",
    ]
