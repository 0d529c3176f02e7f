"""Exactly once under faults, each invariant broken on purpose (design.md).

Apache Kafka (behind a cuttable loopback proxy, and itself killed, stopped and compacting),
real worker processes, fakes on loopback; every count at a fake is asserted exactly.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections import Counter
from datetime import timedelta
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from catcher.factory import CRASH_ENV
from catcher.kafka import read_topic
from catcher.models.enums import ActionState, DeadLetterStage, Severity, TriggerSource
from catcher.models.records import ActionEvent, Trigger, make_action_id, utcnow
from tests.support.kafka import COMPACT_SOON
from tests.support.proxy import CuttableProxy
from tests.support.stack import Stack, WorkerProcess, finished, states

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio]

RULES = """
rules:
  - id: fire
    description: Every WARNING of a new series calls the webhook once.
    actions:
      - name: notify
        type: webhook
        url_env: CATCHER_TEST_WEBHOOK_URL
        on: {severity: WARNING}
        body: {text: "{trigger_id}"}
      - name: late
        type: webhook
        url_env: CATCHER_TEST_WEBHOOK_URL
        on: {severity: CRITICAL}
        max_age: 1m
        body: {text: "late {trigger_id}"}
  - id: sentinel
    description: Fired last, to know that everything before it was processed.
    actions:
      - name: mark
        type: webhook
        url_env: CATCHER_TEST_WEBHOOK_URL
        body: {text: "sentinel {trigger_id}"}
"""


def _triggers(count: int, start: int = 0) -> list[Trigger]:
    return [
        Trigger.create(
            "fire", Severity.WARNING, reason="r", source=TriggerSource.manual, tags={"n": str(n)}
        )
        for n in range(start, start + count)
    ]


def _keys(stack: Stack) -> Counter[str]:
    return Counter(r.headers["Idempotency-Key"] for r in stack.webhook.requests)


def _last_states(events: list[ActionEvent]) -> dict[str, str]:
    last: dict[str, str] = {}
    for event in events:
        last[event.action_id] = event.state.value
    return last


async def _sentinel(stack: Stack, n: int = 0) -> None:
    trigger = await stack.publish("sentinel", Severity.WARNING, tags={"n": f"s{n}"})
    action_id = make_action_id(trigger.trigger_id, "mark")
    await stack.wait_history(lambda ev: finished(ev, action_id), what="the sentinel")


async def _wait_keys(stack: Stack, count: int, timeout: float = 120) -> None:
    async def enough() -> bool:
        return len(_keys(stack)) >= count

    await stack.wait_for(enough, timeout=timeout, what=f"{count} distinct webhook calls")


async def test_oversized_and_foreign_records_are_dead_lettered(stack: Stack) -> None:
    stack.write_rules(RULES)
    worker = await stack.start_worker()
    # Larger than Catcher's own records may be (another producer's limit is higher).
    huge = b"\x00\x00\x00\x00\x09" + b"x" * 1_200_000
    producer = AIOKafkaProducer(bootstrap_servers=stack.bootstrap, max_request_size=2**21)
    await producer.start()
    try:
        await producer.send_and_wait(stack.config.triggers_topic, huge, key=b"huge")
    finally:
        await producer.stop()
    # A record of another schema on the triggers topic: an action event.
    foreign = await stack.codec.encode(
        "actions",
        ActionEvent(
            action_id="a",
            trigger_id="t",
            rule_id="r",
            action_name="n",
            action_type="webhook",
            state=ActionState.queued,
            attempt=0,
            time=utcnow(),
            severity="WARNING",
        ).to_avro(),
    )
    await stack.publish_raw(b"foreign", foreign)
    await _sentinel(stack)  # records of other keys may still be in hand: wait for both

    async def two_letters() -> list[Any] | None:
        found = await stack.dead_letters()
        return found if len(found) >= 2 else None

    letters = await stack.wait_for(two_letters, what="two dead letters")
    by_key = {letter.key: letter for letter in letters}  # records of different keys
    assert sorted(by_key) == [b"foreign", b"huge"]  # are handled together, in no set order
    assert len(letters) == 2
    big, other = by_key[b"huge"], by_key[b"foreign"]
    assert big.stage == DeadLetterStage.decode
    assert big.value_truncated
    assert big.value_size == len(huge)
    assert big.value is not None
    assert huge.startswith(big.value)
    assert len(big.value) > 1_000_000 - 10_000
    assert "too large to carry whole" in big.reason
    assert other.stage == DeadLetterStage.decode
    assert other.value == foreign
    assert "does not decode with schema id" in other.reason
    assert len(other.reason) < 400  # not fastavro's message with both schemas
    assert stack.webhook.count("POST") == 1  # the sentinel
    worker.assert_alive()


async def test_two_workers_each_killed_once_run_every_action_once(stack: Stack) -> None:
    stack.partitions = 4
    stack.write_rules(RULES)
    first = await stack.start_worker()
    second = await stack.start_worker()
    triggers = _triggers(500)
    publishing = asyncio.create_task(stack.publish_many(triggers))
    await _wait_keys(stack, 100)
    first.kill()
    stack.workers.append(WorkerProcess(stack.worker_env(), stack.workdir / "worker2.log").start())
    await _wait_keys(stack, 300, timeout=180)
    second.kill()
    stack.workers.append(WorkerProcess(stack.worker_env(), stack.workdir / "worker3.log").start())
    await publishing
    await _wait_keys(stack, 500, timeout=240)
    expected = {make_action_id(t.trigger_id, "notify") for t in triggers}

    async def all_succeeded() -> dict[str, str] | None:
        last = _last_states(await stack.history())
        return last if all(last.get(a) == "succeeded" for a in expected) else None

    last = await stack.wait_for(all_succeeded, timeout=120, what="every history to end")
    keys = _keys(stack)
    assert set(keys) == expected  # 500 distinct Idempotency-Keys, and nothing else
    assert {a: s for a, s in last.items() if a in expected} == dict.fromkeys(expected, "succeeded")
    # A POST is repeated only for a submission a SIGKILL interrupted: the history records
    # each attempt, and says when one was made again after an uncertain outcome.
    events = await stack.history()
    for action_id, posts in keys.items():
        submitting = [e for e in events if e.action_id == action_id and e.state == "submitting"]
        assert posts <= len({e.attempt for e in submitting}), action_id
        if posts > 1:
            assert any("uncertain outcome" in (e.message or "") for e in submitting), action_id


async def test_a_kill_between_the_ledger_write_and_the_history_event(stack: Stack) -> None:
    stack.write_rules(RULES)
    stack.extra_env[CRASH_ENV] = "succeeded"
    first = await stack.start_worker()
    (trigger,) = _triggers(1)
    await stack.publish_many([trigger])
    notify = make_action_id(trigger.trigger_id, "notify")
    assert first.process is not None
    await stack.wait_for(
        lambda: asyncio.sleep(0, first.process.poll() is not None),  # type: ignore[union-attr]
        what="the worker to kill itself after the changelog write",
    )
    events = await stack.history()
    assert states(events, notify) == ["queued", "submitting"]  # succeeded never sent
    del stack.extra_env[CRASH_ENV]
    await stack.start_worker()
    events = await stack.wait_history(lambda ev: finished(ev, notify), what="the event")
    assert states(events, notify) == ["queued", "submitting", "succeeded"]
    assert stack.webhook.count("POST") == 1  # the ledger said succeeded: nothing resent
    assert "Sending a history event again after a restart" in stack.workers[1].log


async def test_a_rebalance_during_backoff_leaves_the_old_owner_silent(stack: Stack) -> None:
    stack.partitions = 4
    stack.write_rules(RULES)
    stack.extra_env.update(
        CATCHER_RETRY_ATTEMPTS="100",
        CATCHER_RETRY_BACKOFF_INITIAL="2",
        CATCHER_RETRY_BACKOFF_MAX="2",
        CATCHER_RETRY_JITTER="0",
    )
    stack.webhook.inject(status=503, body="down", times=10_000, method="POST")
    first = await stack.start_worker()
    triggers = _triggers(8)
    await stack.publish_many(triggers)
    actions = [make_action_id(t.trigger_id, "notify") for t in triggers]
    await stack.wait_history(
        lambda ev: all("retrying" in states(ev, a) for a in actions), what="every retry"
    )
    second = await stack.start_worker()
    # It takes over by its resume scan or by reading the action requests again.
    await stack.wait_for(
        lambda: asyncio.sleep(0, "Attempt failed; will retry" in second.log),
        timeout=90,
        what="the second worker to take over some actions",
    )
    stack.webhook._faults.clear()  # the service is back
    switch = len(stack.webhook.requests)
    await stack.wait_history(
        lambda ev: all(finished(ev, a) for a in actions), timeout=90, what="every action"
    )
    await asyncio.sleep(3)  # longer than a backoff: a stray old owner would have called
    after = Counter(r.headers["Idempotency-Key"] for r in stack.webhook.requests[switch:])
    assert after == dict.fromkeys(actions, 1)
    first.assert_alive()


async def test_a_job_that_finished_while_the_worker_was_down(stack: Stack) -> None:
    stack.write_rules(
        """
rules:
  - id: pipeline
    description: A short pipeline.
    actions:
      - name: run
        type: ocps
        pipeline_url: p
        butler_repo: /repo
        data_query: q
        max_runtime: 3s
"""
    )
    stack.uws.run_time = 5
    first = await stack.start_worker()
    trigger = await stack.publish("pipeline", Severity.WARNING)
    action = make_action_id(trigger.trigger_id, "run")
    await stack.wait_history(lambda ev: "submitted" in states(ev, action), what="the job")
    first.kill()
    await asyncio.sleep(6)  # the job completes, and its max runtime passes, while down
    await stack.start_worker()
    events = await stack.wait_history(lambda ev: finished(ev, action), what="the outcome")
    assert states(events, action)[-1] == "succeeded"
    assert stack.uws.count("DELETE") == 0
    assert stack.uws.count("PUT") == 1


async def test_old_triggers_are_recorded_expired_and_not_run(stack: Stack) -> None:
    stack.write_rules(RULES)
    await stack.start_worker()
    old = await stack.publish(
        "fire", Severity.WARNING, tags={"n": "old"}, time=utcnow() - timedelta(hours=7)
    )
    late = await stack.publish(
        "fire", Severity.CRITICAL, tags={"n": "late"}, time=utcnow() - timedelta(minutes=2)
    )
    old_notify = make_action_id(old.trigger_id, "notify")
    late_ids = [make_action_id(late.trigger_id, name) for name in ("late", "notify")]
    events = await stack.wait_history(
        lambda ev: all(finished(ev, a) for a in [old_notify, *late_ids]), what="the outcomes"
    )
    await _sentinel(stack)
    assert states(events, old_notify) == ["expired"]
    expired = next(e for e in events if e.action_id == old_notify)
    assert "older than the maximum age of 6:00:00" in (expired.message or "")
    # The action with max_age 1m expires; its sibling without one (default 6h) runs.
    assert states(events, make_action_id(late.trigger_id, "late")) == ["expired"]
    assert states(events, make_action_id(late.trigger_id, "notify"))[-1] == "succeeded"
    bodies = [b["text"] for b in stack.webhook.bodies()]  # type: ignore[index]
    assert bodies == [late.trigger_id, bodies[-1]]
    assert bodies[-1].startswith("sentinel")


async def test_the_broker_cut_off_while_triggers_flow_loses_nothing(
    stack: Stack, network: CuttableProxy
) -> None:
    stack.write_rules(RULES)
    worker = await stack.start_worker()
    await _sentinel(stack)  # the worker is up and consuming
    first, second = _triggers(25), _triggers(25, start=25)
    await stack.publish_many(first)
    network.cut()
    await asyncio.sleep(6)
    network.restore()
    await stack.publish_many(second)
    expected = {make_action_id(t.trigger_id, "notify") for t in first + second}
    await _wait_keys(stack, 51, timeout=120)  # 50 and the sentinel
    keys = _keys(stack)
    assert set(keys) - expected == {k for k in keys if k.endswith(".mark")}
    assert expected <= set(keys)
    assert sum(keys[a] for a in expected) == 50
    worker.assert_alive()
    json.dumps(list(keys))  # the keys are plain text


async def test_a_registry_down_at_start_up_does_not_stop_the_worker(stack: Stack) -> None:
    stack.write_rules(RULES)
    port = stack.registry.port
    await stack.registry.stop()
    worker = await stack.start_worker()
    await stack.wait_for(
        lambda: asyncio.sleep(0, "Registering the Avro schemas" in worker.log),
        what="the worker to retry the registration",
    )
    worker.assert_alive()
    stack.registry.port = port
    await stack.registry.start()
    await _sentinel(stack)
    # The registration retries with backoff beside the agents: it may end after the
    # sentinel (whose schema the test registered), never not at all.
    await stack.wait_for(
        lambda: asyncio.sleep(0, "Registered schemas" in worker.log),
        what="the worker to register its schemas",
    )
    assert stack.webhook.count("POST") == 1


SECRET_RULES = """
rules:
  - id: secret
    description: A webhook with a token, at a receiver that echoes secrets back.
    actions:
      - name: notify
        type: webhook
        url_env: CATCHER_TEST_WEBHOOK_URL
        token_env: CATCHER_TEST_WEBHOOK_TOKEN
        body: {text: "{trigger_id}"}
"""


async def test_secrets_stay_out_of_logs_history_and_dead_letters(stack: Stack) -> None:
    stack.write_rules(SECRET_RULES)
    token = "gt-Zm9vYmFyYmF6cXV4.c2VjcmV0LXRva2VuLXZhbHVl"
    stack.extra_env.update(
        CATCHER_LOG_PROFILE="production",
        CATCHER_TEST_WEBHOOK_TOKEN=token,
        CATCHER_RETRY_ATTEMPTS="2",
    )
    url = stack.worker_env()["CATCHER_TEST_WEBHOOK_URL"]
    echo = f"upstream said: POST {url} with Authorization: Bearer {token} failed"
    stack.webhook.inject(status=503, body=echo, method="POST")
    stack.webhook.inject(status=400, body=echo, method="POST")
    worker = await stack.start_worker()
    trigger = await stack.publish("secret", Severity.WARNING)
    action = make_action_id(trigger.trigger_id, "notify")
    events = await stack.wait_history(lambda ev: finished(ev, action), what="the failure")
    assert states(events, action) == ["queued", "submitting", "retrying", "submitting", "failed"]
    assert stack.webhook.requests[0].headers["Authorization"] == f"Bearer {token}"  # it was sent
    letters = await stack.dead_letters()
    assert [letter.action_id for letter in letters] == [action]
    written = [worker.log, *(e.model_dump_json() for e in events), letters[0].reason]
    for text in written:
        assert token not in text
        assert "secret-path-abc123" not in text
    failed = events[-1].message or ""
    assert failed.startswith("webhook 'notify' answered HTTP 400: upstream said: POST http://")
    assert "Bearer ***" in failed
    # Every line is JSON, Faust's, mode's and aiokafka's included, with Catcher's keys.
    lines = [line for line in worker.log.splitlines() if line.strip()]
    records = [json.loads(line) for line in lines]
    assert all({"timestamp", "level", "message"} <= set(r) for r in records), lines[:5]
    loggers = {r.get("logger", "catcher").split(".")[0] for r in records}
    assert {"catcher", "faust", "aiokafka"} <= loggers, loggers


# -- Faults only a real broker allows: Apache Kafka killed, stopped and compacting --------


async def test_the_broker_killed_amid_2000_triggers_runs_every_action_once(stack: Stack) -> None:
    assert stack.broker is not None
    stack.write_rules(RULES)
    worker = await stack.start_worker()
    await _sentinel(stack)
    triggers = _triggers(2000)
    await stack.publish_many(triggers)
    await _wait_keys(stack, 301)  # the sentinel and 300 actions
    await asyncio.to_thread(stack.broker.kill)  # SIGKILL: no flush, no controlled shutdown
    killed_at = len(_keys(stack))
    await asyncio.to_thread(stack.broker.start)  # on its data, same ports
    await _wait_keys(stack, 2001, timeout=300)
    expected = {make_action_id(t.trigger_id, "notify") for t in triggers}

    async def all_succeeded() -> dict[str, str] | None:
        last = _last_states(await stack.history())
        return last if all(last.get(a) == "succeeded" for a in expected) else None

    await stack.wait_for(all_succeeded, timeout=120, what="every history to end")
    keys = _keys(stack)
    assert killed_at < 2001  # the broker died while actions were still to run
    assert len(set(keys) & expected) == 2000  # each action ran: 2,000 distinct keys
    assert set(keys) - expected == {k for k in keys if k.endswith(".mark")}  # and nothing else
    events = await stack.history()
    for action_id in expected:  # a POST is repeated only for an attempt recorded as such
        posts = keys[action_id]
        submitting = {e.attempt for e in events if e.action_id == action_id}
        assert posts <= max(1, len(submitting)), action_id
    assert len(stack.workers) == 1
    worker.assert_alive()  # the worker rode it out, not restarted


async def test_a_clean_broker_restart_loses_and_repeats_nothing(stack: Stack) -> None:
    assert stack.broker is not None
    stack.write_rules(RULES)
    worker = await stack.start_worker()
    before, after = _triggers(20), _triggers(20, start=20)
    await stack.publish_many(before)
    await _wait_keys(stack, 20)
    await asyncio.to_thread(stack.broker.stop)  # SIGTERM: a controlled shutdown
    await asyncio.to_thread(stack.broker.start)
    await stack.publish_many(after)
    await _sentinel(stack)
    expected = {make_action_id(t.trigger_id, "notify") for t in before + after}
    keys = _keys(stack)
    assert {k: n for k, n in keys.items() if k in expected} == dict.fromkeys(expected, 1)
    assert len(keys) == 41
    worker.assert_alive()


async def _compacted(stack: Stack, topic: str) -> tuple[int, int, int]:
    """(records, distinct keys, end offset) of a changelog read from its beginning."""
    records = await read_topic(stack.config, topic)
    end = max((r.offset for r in records), default=-1) + 1
    return len(records), len({r.key for r in records}), end


async def test_changelogs_are_compacted_and_a_restart_reads_one_record_per_key(
    stack: Stack,
) -> None:
    """The ledger and series changelogs, created as Strimzi would with quick compaction."""
    stack.write_rules(RULES)
    app_id = stack.config.app_id
    ledger, series = f"{app_id}-ledger-changelog", f"{app_id}-series-state-changelog"
    admin = AIOKafkaAdminClient(bootstrap_servers=stack.bootstrap)
    await admin.start()
    try:
        await admin.create_topics(
            [
                NewTopic(name, stack.partitions, 1, topic_configs=COMPACT_SOON)
                for name in (ledger, series)
            ]
        )
    finally:
        await admin.close()
    first = await stack.start_worker()
    # 10 series, each WARNING then NONE five times: 100 series writes, 50 actions.
    triggers = [
        Trigger.create(
            "fire", severity, reason="r", source=TriggerSource.manual, tags={"n": str(n)}
        )
        for _ in range(5)
        for n in range(10)
        for severity in (Severity.WARNING, Severity.NONE)
    ]
    await stack.publish_many(triggers)
    await _wait_keys(stack, 50)
    rounds = iter(range(1000))

    async def compacted() -> tuple[tuple[int, int, int], tuple[int, int, int]] | None:
        await _sentinel(stack, next(rounds))  # new writes roll the segments before them
        counts = await _compacted(stack, ledger), await _compacted(stack, series)
        return counts if all(n <= keys + 8 for n, keys, _ in counts) else None

    (_, ledger_keys, ledger_end), (_, series_keys, series_end) = await stack.wait_for(
        compacted, timeout=120, what="the changelogs compacted"
    )
    assert ledger_end >= 3 * ledger_keys - 8  # three writes or more per finished action
    # What is left of a finished action is its state and time, in about 20 bytes.
    last = {r.key: r.value for r in await read_topic(stack.config, ledger)}
    compact = [v for v in last.values() if v and v.startswith(b"succeeded@")]
    assert len(compact) >= 50
    assert all(re.fullmatch(rb"succeeded@\d{13}", v) for v in compact)
    assert series_end >= 100
    assert series_keys <= 10 + 1 + ledger_keys - 50  # the fire series and the sentinels'
    # A worker restarted now reads the compacted changelogs, about a record per live key,
    # and knows every series and action: the same triggers again start nothing.
    first.kill()
    second = await stack.start_worker()
    posts = len(stack.webhook.requests)
    await stack.publish_many(triggers[-10:])  # the last state of each series: NONE
    again = Trigger.create(
        "fire", Severity.WARNING, reason="r", source=TriggerSource.manual, tags={"n": "0"}
    )
    await stack.publish_many([again])
    await _sentinel(stack, 1000)
    action = make_action_id(again.trigger_id, "notify")
    await stack.wait_history(lambda ev: finished(ev, action), what="the new edge's action")
    bodies = sorted(r.json()["text"] for r in stack.webhook.requests[posts:])
    assert len(bodies) == 2  # the new edge and the sentinel, nothing from the old series
    assert bodies[0] == again.trigger_id and bodies[1].startswith("sentinel")
    second.assert_alive()
