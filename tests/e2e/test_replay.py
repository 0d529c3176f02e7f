"""`catcher replay` end to end: failed actions found by time and rule, run again once."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
import time
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from catcher import topics
from catcher.kafka import _start_positions, ensure_topics, make_producer, read_topic
from catcher.models.enums import Severity
from catcher.models.records import make_action_id, utcnow
from tests.support import DATA
from tests.support.stack import Stack, finished, states

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio]

RULES = (DATA / "rules" / "dome-and-mount.yaml").read_text()


def _keys(stack: Stack, since: int = 0) -> Counter[str]:
    return Counter(r.headers["Idempotency-Key"] for r in stack.webhook.requests[since:])


async def test_failed_actions_are_found_and_run_again_exactly_once(stack: Stack) -> None:
    stack.write_rules(RULES)
    stack.extra_env.update(CATCHER_RETRY_ATTEMPTS="2")
    stack.webhook.inject(status=503, body="down", times=10_000, method="POST")
    await stack.start_worker()
    first = await stack.publish("dome", Severity.WARNING, tags={"n": "1"})
    second = await stack.publish("dome", Severity.WARNING, tags={"n": "2"})
    await asyncio.sleep(0.2)
    middle = utcnow()
    third = await stack.publish("mount", Severity.WARNING, tags={"n": "3"})
    ids = [make_action_id(t.trigger_id, "hook") for t in (first, second, third)]
    await stack.wait_history(lambda ev: all(finished(ev, a) for a in ids), what="the failures")
    assert sorted(letter.action_id for letter in await stack.dead_letters()) == sorted(ids)
    stack.webhook._faults.clear()  # the service is back
    before = len(stack.webhook.requests)

    # A dry run lists what it would do and sends nothing.
    code, out, err = await stack.cli("replay", "--since", "10m", "--dry-run", "--json")
    assert code == 0, err
    rows = [json.loads(line) for line in out.splitlines()]
    assert sorted((r["rule_id"], r["last_state"]) for r in rows) == [
        ("dome", "failed"),
        ("dome", "failed"),
        ("mount", "failed"),
    ]
    code, out, _ = await stack.cli(
        "replay", "--since", "10m", "--until", middle.isoformat(), "--dry-run", "--json"
    )
    assert sorted(json.loads(line)["action_id"] for line in out.splitlines()) == sorted(ids[:2])

    # Without --force the ledger skips finished actions: nothing is called.
    code, out, err = await stack.cli("replay", "--since", "10m", "--yes")
    assert code == 0, err
    assert "Sent 3 action(s)" in out

    async def skipped() -> bool:
        return stack.workers[0].log.count("Skipped an action that has already finished") >= 3

    await stack.wait_for(skipped, what="the ledger skipping the finished actions")

    # --force --rule dome runs exactly the two dome actions again, as generation 1,
    # which `catcher history --follow` shows as they happen.
    follow = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "catcher",
        "history",
        "--follow",
        "--json",
        "--since",
        "1s",
        env=stack.worker_env(),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    code, out, err = await stack.cli(
        "replay",
        "--since",
        "10m",
        "--rule",
        "dome",
        "--force",
        "--reason",
        "webhook is back",
        "--by",
        "ana",
        "--yes",
    )
    assert code == 0, err
    again = [make_action_id(t.trigger_id, "hook", 1) for t in (first, second)]
    events = await stack.wait_history(
        lambda ev: all(finished(ev, a) for a in again), what="the re-runs"
    )
    assert all(states(events, a)[-1] == "succeeded" for a in again)
    queued = [e for e in events if e.action_id in again and e.state == "queued"]
    assert all(
        (e.message or "").startswith("Re-run (generation 1) by ana: webhook is back.")
        for e in queued
    )
    await asyncio.sleep(1)
    assert _keys(stack, before) == dict.fromkeys(again, 1)
    assert follow.stdout is not None
    followed: set[str] = set()
    while not all(a in followed for a in again):
        line = await asyncio.wait_for(follow.stdout.readline(), 30)
        event = json.loads(line)
        if event["state"] == "succeeded":
            followed.add(event["action_id"])
    follow.send_signal(signal.SIGINT)
    assert await asyncio.wait_for(follow.wait(), 30) == 0

    # Nothing failed is left for dome; mount's action is still failed.
    code, out, _ = await stack.cli("replay", "--since", "10m", "--dry-run", "--json")
    assert [json.loads(line)["rule_id"] for line in out.splitlines()] == ["mount"]
    code, out, _ = await stack.cli("replay", "--since", "10m", "--rule", "nope")
    assert code == 0 and out.startswith("Nothing to replay: no failed actions"), out
    code, _, err = await stack.cli("replay", "--force", "--yes")
    assert code != 0 and "--force needs --reason" in err


async def test_since_starts_where_the_broker_finds_the_time(stack: Stack) -> None:
    """`--since` (history, replay) seeks to the offset Kafka's time index answers."""
    config = stack.config
    topic = config.actions_topic
    await ensure_topics(config, [topics.ACTIONS])
    now = int(time.time() * 1000)
    stamps = [now - 3 * 3_600_000, now - 2 * 3_600_000, now - 60_000, now - 30_000]
    producer = make_producer(config)
    await producer.start()
    try:
        for n, stamp in enumerate(stamps):
            await producer.send_and_wait(topic, b"v", key=str(n).encode(), timestamp_ms=stamp)
    finally:
        await producer.stop()
    consumer = AIOKafkaConsumer(enable_auto_commit=False, **config.kafka.aiokafka_params())
    await consumer.start()
    try:
        tp = TopicPartition(topic, 0)
        consumer.assign([tp])
        hour_ago = datetime.fromtimestamp((now - 3_600_000) / 1000, UTC)
        await _start_positions(consumer, [tp], hour_ago)
        assert await consumer.position(tp) == 2  # found by time, not read from the start
        await _start_positions(consumer, [tp], datetime.now(UTC) + timedelta(minutes=1))
        assert await consumer.position(tp) == 4  # nothing as recent: the end
        await _start_positions(consumer, [tp], None)
        assert await consumer.position(tp) == 0
    finally:
        await consumer.stop()
    records = await read_topic(config, topic, since=hour_ago)
    assert [r.key for r in records] == [b"2", b"3"]
