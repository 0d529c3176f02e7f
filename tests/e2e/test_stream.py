"""Rules on the telemetry stream, end to end: Avro telemetry in, triggers, alarms, actions."""

from __future__ import annotations

import asyncio
import io
import json
import struct
import time
from typing import Any

import fastavro
import httpx
import pytest

from catcher.broker import free_port
from catcher.kafka import ensure_topics, make_producer, read_topic
from catcher.models.records import Trigger
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

    async def send(stamp: float, value: float) -> None:
        body = io.BytesIO()
        body.write(struct.pack(">bI", 0, schema_id))
        record = {"private_efdStamp": stamp, "salIndex": 1, "motorTemperature0": value}
        fastavro.schemaless_writer(body, parsed, record)
        await producer.send_and_wait(TOPIC, body.getvalue(), key=b"1")

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
    async def ready() -> bool:
        async with httpx.AsyncClient() as client:
            try:
                answer = await client.get(f"http://127.0.0.1:{port}/ready")
            except httpx.ConnectError:
                return False
        return answer.status_code == httpx.codes.OK

    await stack.wait_for(ready, timeout=90, what="the worker ready")


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
