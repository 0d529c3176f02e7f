"""Bare Faust baselines for the benchmarks, run as their own processes by bench/run.py.

    python bench/baselines.py count BROKER TOPIC N
        one agent that only counts; prints {"ready": t} on the warm-up record, then
        {"done": t} at the N-th record after it.
    python bench/baselines.py pipeline BROKER PREFIX HOPS URL
        HOPS agents in a chain (each send awaited); the last POSTs the record's text to URL.
    python bench/baselines.py telemetry BROKER TOPIC N REGISTRY_URL
        one agent that decodes Confluent-framed Avro telemetry (its schema fetched from the
        registry once) and keeps a running mean per salIndex; prints {"ready": t} on the
        first record, then {"done": t} at the N-th record after it.
    python bench/baselines.py table BROKER APP_ID TOPIC PARTITIONS
        one agent and a table named "table" (so its changelog is APP_ID-table-changelog),
        recovered at start; prints {"first": t} when the first record of TOPIC arrives.

All use the same Faust settings as Catcher's worker (at_least_once, memory store, and
idempotent producers unless BENCH_IDEMPOTENCE=0, as for a broker without them).
"""

from __future__ import annotations

import io
import itertools
import json
import os
import sys
import time

import fastavro
import faust
import httpx

from catcher.faust_transport import IdempotentTransport


def _say(data: dict[str, float]) -> None:
    """One JSON line on the real stdout (Faust redirects print to its logger)."""
    os.write(1, (json.dumps(data) + "\n").encode())


def _app(name: str, broker: str, batch_size: int) -> faust.App:
    app = faust.App(
        name,
        broker=f"kafka://{broker}",
        store="memory://",
        processing_guarantee="at_least_once",
        autodiscover=False,
        web_enabled=False,
        producer_max_batch_size=batch_size,
        consumer_auto_offset_reset="earliest",
        broker_session_timeout=10,
        broker_heartbeat_interval=1,
    )
    if os.environ.get("BENCH_IDEMPOTENCE", "1") == "1":
        app.transport = IdempotentTransport(app.conf.broker_consumer, app)
    return app


def count(broker: str, topic_name: str, n: int, batch_size: int) -> None:
    """Count records; the first is the warm-up."""
    app = _app(f"bench-count-{time.time_ns()}", broker, batch_size)
    topic = app.topic(topic_name, key_serializer="raw", value_serializer="raw")
    seen = -1

    @app.agent(topic)
    async def counter(stream: faust.StreamT) -> None:
        nonlocal seen
        async for _ in stream.events():
            seen += 1
            if seen == 0:
                _say({"ready": time.time()})
            elif seen == n:
                _say({"done": time.time()})

    app.main()


def pipeline(broker: str, prefix: str, hops: int, url: str, batch_size: int) -> None:
    """A chain of agents, each awaiting its send; the last POSTs to the receiver."""
    app = _app(f"bench-pipe-{time.time_ns()}", broker, batch_size)
    topics = [
        app.topic(f"{prefix}.{i}", key_serializer="raw", value_serializer="raw")
        for i in range(hops)
    ]
    client: dict[str, httpx.AsyncClient] = {}

    def forward(source: faust.TopicT, target: faust.TopicT) -> None:
        @app.agent(source, name=f"hop-{source.get_topic_name()}")
        async def hop(stream: faust.StreamT) -> None:
            async for event in stream.events():
                delivery = await target.send(key=event.key, value=event.value)
                await delivery

    for source, target in itertools.pairwise(topics):
        forward(source, target)

    @app.agent(topics[-1], name="post")
    async def post(stream: faust.StreamT) -> None:
        http = client.setdefault("http", httpx.AsyncClient(timeout=30))
        async for event in stream.events():
            await http.post(url, json={"text": event.value.decode()})

    app.main()


def telemetry(broker: str, topic_name: str, n: int, registry: str, batch_size: int) -> None:
    """Decode SAL-shaped Avro and keep a running mean per series, as the stream engine must."""
    app = _app(f"bench-telemetry-{time.time_ns()}", broker, batch_size)
    topic = app.topic(topic_name, key_serializer="raw", value_serializer="raw")
    schemas: dict[int, object] = {}
    means: dict[object, tuple[int, float]] = {}
    seen = -1

    @app.agent(topic)
    async def decode(stream: faust.StreamT) -> None:
        nonlocal seen
        async with httpx.AsyncClient(timeout=30) as http:
            async for event in stream.events():
                value = event.value
                schema_id = int.from_bytes(value[1:5], "big")
                if schema_id not in schemas:
                    answer = await http.get(f"{registry}/schemas/ids/{schema_id}")
                    schemas[schema_id] = fastavro.parse_schema(json.loads(answer.json()["schema"]))
                record = fastavro.schemaless_reader(io.BytesIO(value[5:]), schemas[schema_id])
                key = record["salIndex"]
                count, mean = means.get(key, (0, 0.0))
                count += 1
                means[key] = (count, mean + (record["value"] - mean) / count)
                seen += 1
                if seen == 0:
                    _say({"ready": time.time()})
                elif seen == n:
                    _say({"done": time.time()})

    app.main()


def table(broker: str, app_id: str, topic_name: str, partitions: int, batch_size: int) -> None:
    """Recover a table like Catcher's ledger (text keys, JSON values), then consume."""
    app = _app(app_id, broker, batch_size)
    topic = app.topic(topic_name, key_serializer="raw", value_serializer="raw")
    store = app.Table("table", default=None, partitions=partitions, key_type=str)

    @app.agent(topic)
    async def consume(stream: faust.StreamT) -> None:
        async for event in stream.events():
            _say({"first": time.time(), "entries": len(store)})
            store[event.key.decode()] = {"seen": True}

    app.main()


if __name__ == "__main__":
    kind, broker, *rest = sys.argv[1:]
    batch = int(rest.pop())
    level = os.environ.get("BENCH_LOG_LEVEL", "warn").lower()
    sys.argv = [sys.argv[0], "worker", "--loglevel", level]
    if kind == "count":
        count(broker, rest[0], int(rest[1]), batch)
    elif kind == "telemetry":
        telemetry(broker, rest[0], int(rest[1]), rest[2], batch)
    elif kind == "table":
        table(broker, rest[0], rest[1], int(rest[2]), batch)
    else:
        pipeline(broker, rest[0], int(rest[1]), rest[2], batch)
