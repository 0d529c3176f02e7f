"""The worker end to end: real broker, worker process, fake services on loopback."""

from __future__ import annotations

import asyncio
import itertools
import json

import pytest

from catcher.kafka import make_producer
from catcher.models.enums import ActionState, DeadLetterStage, Severity
from catcher.models.records import Trigger, make_action_id
from tests.support.stack import Stack, finished, states

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio]

RULES = """
rules:
  - id: hexapod-temp
    description: Hexapod temperature.
    actions:
      - name: notify
        type: webhook
        url_env: CATCHER_TEST_WEBHOOK_URL
        on: {severity: WARNING, edge: rising}
        body:
          text: "{rule_id} is {severity} on salIndex {tags.salIndex}: {reason}"
          value: "{value}"
      - name: report
        type: noteburst
        notebook: report.ipynb
        on: {severity: SERIOUS, edge: rising}
        parameters:
          severity: "{severity}"
          sal_index: "{tags.salIndex}"
          value: "{value}"
  - id: sentinel
    description: Fired last, to know that everything before it was processed.
    actions:
      - name: mark
        type: webhook
        url_env: CATCHER_TEST_WEBHOOK_URL
        on: {severity: WARNING}
        body: {text: "sentinel {trigger_id}"}
"""


_SENTINELS = itertools.count()


async def run_sentinel(stack: Stack) -> None:
    """Publish a sentinel trigger and wait for its action: everything before it is done."""
    trigger = await stack.publish("sentinel", Severity.WARNING, tags={"n": str(next(_SENTINELS))})
    action_id = make_action_id(trigger.trigger_id, "mark")
    await stack.wait_history(lambda ev: finished(ev, action_id), what="the sentinel action")


async def test_trigger_runs_actions_and_history_matches_the_fakes(stack: Stack) -> None:
    stack.write_rules(RULES)
    worker = await stack.start_worker()
    trigger = await stack.publish(
        "hexapod-temp", Severity.CRITICAL, tags={"salIndex": "3"}, value=72.5
    )
    notify = make_action_id(trigger.trigger_id, "notify")
    report = make_action_id(trigger.trigger_id, "report")
    events = await stack.wait_history(
        lambda ev: finished(ev, notify) and finished(ev, report), what="both actions"
    )
    assert states(events, notify) == ["queued", "submitting", "succeeded"]
    report_states = states(events, report)
    assert report_states[:3] == ["queued", "submitting", "submitted"]
    assert report_states[-1] == "succeeded"
    assert set(report_states[3:-1]) <= {"submitted"}

    # Exactly one call each, carrying what the rule says.
    assert stack.webhook.count("POST") == 1
    hook = stack.webhook.requests[0]
    assert hook.path == "/hooks/secret-path-abc123"
    assert hook.headers["Idempotency-Key"] == notify
    assert hook.json() == {
        "text": "hexapod-temp is CRITICAL on salIndex 3: Test CRITICAL trigger.",
        "value": 72.5,
    }
    assert stack.noteburst.count("POST") == 1
    submitted = stack.noteburst.requests[0]
    assert submitted.headers["Authorization"] == f"Bearer {stack.noteburst.token}"
    body = submitted.json()
    assert body["kernel_name"] == "LSST"
    notebook = json.loads(body["ipynb"])
    injected = [
        c for c in notebook["cells"] if "injected-parameters" in c["metadata"].get("tags", [])
    ]
    assert "".join(injected[0]["source"]).splitlines()[1:] == [
        "severity = 'CRITICAL'",
        "sal_index = '3'",
        "value = 72.5",
    ]
    job_id = next(iter(stack.noteburst.jobs))
    final = [e for e in events if e.action_id == report][-1]
    assert final.job_id == job_id
    assert final.link == f"{stack.noteburst.url}/noteburst/v1/notebooks/{job_id}"

    # `catcher history --json` agrees with what the fakes recorded.
    code, out, err = await stack.cli("history", "--json", "--rule", "hexapod-temp")
    assert code == 0, err
    rows = [json.loads(line) for line in out.splitlines()]
    succeeded = [r for r in rows if r["state"] == "succeeded"]
    assert sorted(r["action_type"] for r in succeeded) == ["noteburst", "webhook"]
    assert [r["job_id"] for r in succeeded if r["action_type"] == "noteburst"] == [job_id]

    # Secrets never reach the logs or the history.
    everything = worker.log + out
    assert stack.noteburst.token not in everything
    assert "secret-path-abc123" not in everything


async def test_same_trigger_twice_runs_once(stack: Stack) -> None:
    stack.write_rules(RULES)
    await stack.start_worker()
    trigger = Trigger.create(
        "hexapod-temp",
        Severity.WARNING,
        reason="Duplicate test.",
        source="manual",
        tags={"salIndex": "1"},
    )
    value = await stack.encode_trigger(trigger)
    key = trigger.trigger_id.encode()
    await stack.publish_raw(key, value)
    await stack.publish_raw(key, value)  # while the first may still be in flight
    notify = make_action_id(trigger.trigger_id, "notify")
    await stack.wait_history(lambda ev: finished(ev, notify), what="the action")
    await stack.publish_raw(key, value)  # after it finished
    await stack.wait_for(
        lambda: asyncio.sleep(
            0, "Skipped an action that has already finished" in stack.workers[0].log
        ),
        what="the third delivery to be skipped",
    )
    await run_sentinel(stack)
    events = await stack.history()
    assert states(events, notify) == ["queued", "submitting", "succeeded"]
    assert stack.webhook.count("POST", "/hooks/") == 2  # the action once, the sentinel once
    assert stack.webhook.bodies()[0]["text"].startswith("hexapod-temp is WARNING")
    assert "Skipped an action that has already finished" in stack.workers[0].log


async def test_worker_killed_while_notebook_runs_resumes_polling(stack: Stack) -> None:
    stack.write_rules(RULES)
    stack.noteburst.run_time = 25.0
    first = await stack.start_worker()
    trigger = await stack.publish("hexapod-temp", Severity.SERIOUS, tags={"salIndex": "2"})
    report = make_action_id(trigger.trigger_id, "report")
    await stack.wait_history(
        lambda ev: "submitted" in states(ev, report), what="the notebook job to be submitted"
    )
    first.kill()
    polls_before = stack.noteburst.count("GET")
    await stack.start_worker()
    events = await stack.wait_history(
        lambda ev: finished(ev, report), timeout=90, what="the notebook job to finish"
    )
    assert stack.noteburst.count("POST") == 1
    assert stack.noteburst.count("GET") > polls_before
    assert states(events, report)[-1] == "succeeded"
    assert "submitting" not in states(events, report)[3:]
    assert "Submitting again after an uncertain outcome" not in stack.workers[1].log


async def test_worker_killed_during_submission_resubmits_and_says_so(stack: Stack) -> None:
    stack.write_rules(RULES)
    stack.noteburst.inject(delay=60, method="POST", path_prefix="/noteburst")  # a stall
    first = await stack.start_worker()
    trigger = await stack.publish("hexapod-temp", Severity.SERIOUS, tags={"salIndex": "2"})
    report = make_action_id(trigger.trigger_id, "report")
    await stack.wait_history(
        lambda ev: "submitting" in states(ev, report), what="the submission to start"
    )
    await stack.wait_for(
        lambda: asyncio.sleep(0, result=stack.noteburst.count("POST") == 1),
        what="the POST to reach noteburst",
    )
    first.kill()
    await stack.start_worker()
    events = await stack.wait_history(
        lambda ev: finished(ev, report), timeout=90, what="the resubmitted job to finish"
    )
    assert stack.noteburst.count("POST") == 2
    assert states(events, report)[-1] == "succeeded"
    resubmitted = [
        e for e in events if e.action_id == report and e.state == ActionState.submitting
    ]
    # After a restart, an unfinished action's current event may be sent once more.
    attempts = list(dict.fromkeys((e.attempt, e.message) for e in resubmitted))
    assert attempts == [(1, None), (2, "resubmitted after uncertain outcome")]


async def test_service_down_then_up_is_retried_to_success(stack: Stack) -> None:
    stack.write_rules(RULES)
    port = stack.webhook.port
    await stack.webhook.stop()  # the service is down: connections are refused
    stack.extra_env["CATCHER_RETRY_ATTEMPTS"] = "20"
    await stack.start_worker()
    trigger = await stack.publish("hexapod-temp", Severity.WARNING, tags={"salIndex": "1"})
    notify = make_action_id(trigger.trigger_id, "notify")
    await stack.wait_history(
        lambda ev: states(ev, notify).count("retrying") >= 2, what="two failed attempts"
    )
    stack.webhook.port = port
    await stack.webhook.start()  # the service is back
    events = await stack.wait_history(lambda ev: finished(ev, notify), what="the retried action")
    assert states(events, notify)[-1] == "succeeded"
    assert stack.webhook.count("POST") == 1
    retrying = [e for e in events if e.action_id == notify and e.state == ActionState.retrying]
    assert all("Could not reach webhook 'notify'" in (e.message or "") for e in retrying)
    attempts = [e.attempt for e in events if e.action_id == notify and e.state == "submitting"]
    assert attempts == list(range(1, len(attempts) + 1))


async def test_5xx_and_429_are_retried(stack: Stack) -> None:
    stack.write_rules(RULES)
    stack.webhook.inject(status=503, body="upstream unavailable", times=1, method="POST")
    stack.webhook.inject(status=429, body="rate limited", times=1, method="POST")
    await stack.start_worker()
    trigger = await stack.publish("hexapod-temp", Severity.WARNING, tags={"salIndex": "1"})
    notify = make_action_id(trigger.trigger_id, "notify")
    events = await stack.wait_history(lambda ev: finished(ev, notify), what="the action")
    assert states(events, notify) == [
        "queued",
        "submitting",
        "retrying",
        "submitting",
        "retrying",
        "submitting",
        "succeeded",
    ]
    assert stack.webhook.count("POST") == 3
    messages = [e.message for e in events if e.action_id == notify and e.state == "retrying"]
    assert "HTTP 503: upstream unavailable" in messages[0]
    assert "HTTP 429: rate limited" in messages[1]


async def test_4xx_fails_without_retry_and_is_dead_lettered(stack: Stack) -> None:
    stack.write_rules(RULES)
    stack.webhook.inject(status=404, body="no_service", method="POST")
    await stack.start_worker()
    trigger = await stack.publish("hexapod-temp", Severity.WARNING, tags={"salIndex": "1"})
    notify = make_action_id(trigger.trigger_id, "notify")
    events = await stack.wait_history(lambda ev: finished(ev, notify), what="the action")
    assert states(events, notify) == ["queued", "submitting", "failed"]
    assert stack.webhook.count("POST") == 1
    failed = [e for e in events if e.action_id == notify][-1]
    assert failed.message == "webhook 'notify' answered HTTP 404: no_service"
    letters = await stack.wait_for(stack.dead_letters, what="a dead letter")
    assert len(letters) == 1
    letter = letters[0]
    assert letter.stage == DeadLetterStage.execute
    assert letter.action_id == notify
    assert letter.reason == failed.message
    assert letter.topic == stack.config.triggers_topic
    assert letter.value == await stack.encode_trigger(trigger)  # replayable as it is


async def test_malformed_records_are_dead_lettered_and_the_next_is_processed(stack: Stack) -> None:
    stack.write_rules(RULES)
    await stack.start_worker()
    await stack.publish_raw(b"junk-key", b"not avro at all")
    await stack.publish_raw(b"bad-body", b"\x00\x00\x00\x00\x01\xff\xff\xff")
    unknown = await stack.publish("no-such-rule", Severity.CRITICAL)
    await run_sentinel(stack)
    letters = await stack.wait_for(
        lambda: _at_least(stack.dead_letters, 3), what="three dead letters"
    )
    assert len(letters) == 3
    by_key = {letter.key: letter for letter in letters}  # different keys: in no set order
    junk, bad_body, unknown_rule = by_key[b"junk-key"], by_key[b"bad-body"], by_key[unknown.key]
    assert junk.stage == DeadLetterStage.decode
    assert "not the Confluent magic byte 0" in junk.reason
    assert (junk.key, junk.value) == (b"junk-key", b"not avro at all")
    assert junk.topic == stack.config.triggers_topic
    assert junk.offset == 0
    assert bad_body.stage == DeadLetterStage.decode
    assert "does not decode with schema id 1" in bad_body.reason
    assert bad_body.offset == 1
    assert unknown_rule.stage == DeadLetterStage.plan
    assert unknown_rule.trigger_id == unknown.trigger_id
    assert "No rule with id 'no-such-rule'" in unknown_rule.reason
    assert stack.webhook.count("POST") == 1  # the sentinel


async def _at_least(read, count):
    items = await read()
    return items if len(items) >= count else None


COOLDOWN_RULES = """
rules:
  - id: dome-wind
    description: Dome wind speed.
    actions:
      - name: page
        type: webhook
        url_env: CATCHER_TEST_WEBHOOK_URL
        on: {severity: WARNING, edge: rising}
        cooldown: 1h
        body: {text: "page {severity}"}
      - name: recovered
        type: webhook
        url_env: CATCHER_TEST_WEBHOOK_URL
        on: {severity: SERIOUS, edge: falling}
        body: {text: "recovered {severity}"}
      - name: escalate
        type: webhook
        url_env: CATCHER_TEST_WEBHOOK_URL
        on: {severity: CRITICAL, edge: rising}
        body: {text: "escalate {severity}"}
  - id: sentinel
    description: Fired last.
    actions:
      - name: mark
        type: webhook
        url_env: CATCHER_TEST_WEBHOOK_URL
        body: {text: "sentinel"}
"""


async def test_edges_and_cooldown(stack: Stack) -> None:
    stack.write_rules(COOLDOWN_RULES)
    await stack.start_worker()
    sequence = [
        Severity.WARNING,  # rising to WARNING: page
        Severity.WARNING,  # no change: nothing
        Severity.CRITICAL,  # rising: page is cooling down (suppressed), escalate
        Severity.SERIOUS,  # falling from CRITICAL: recovered (previous >= SERIOUS)
        Severity.NONE,  # falling from SERIOUS: recovered
        Severity.WARNING,  # rising again: page still cooling down (suppressed)
    ]
    triggers = []
    for severity in sequence:
        triggers.append(await stack.publish("dome-wind", severity, tags={"salIndex": "1"}))
        await asyncio.sleep(0.01)  # strictly increasing evaluation times
    # A different series is judged on its own: its first WARNING pages.
    other = await stack.publish("dome-wind", Severity.WARNING, tags={"salIndex": "2"})
    await run_sentinel(stack)
    # Records of other series may still be in hand after the sentinel's: wait for all.
    await stack.wait_history(
        lambda ev: (
            sum(e.state == "succeeded" for e in ev) >= 6
            and sum(e.state == "suppressed" for e in ev) >= 2
        ),
        what="every action",
    )
    # Actions of different triggers run side by side: their calls arrive in no set order.
    texts = sorted(b["text"] for b in stack.webhook.bodies())
    assert texts == sorted(
        [
            "page WARNING",  # salIndex 1
            "escalate CRITICAL",
            "recovered SERIOUS",
            "recovered NONE",
            "page WARNING",  # salIndex 2
            "sentinel",
        ]
    )
    events = await stack.history()
    succeeded = {e.trigger_id: e.action_name for e in events if e.state == "succeeded"}
    assert [succeeded.get(t.trigger_id) for t in triggers] == [
        "page",
        None,
        "escalate",
        "recovered",
        "recovered",
        None,
    ]
    suppressed = [e for e in events if e.state == ActionState.suppressed]
    assert [(e.trigger_id, e.action_name) for e in suppressed] == [
        (triggers[2].trigger_id, "page"),
        (triggers[5].trigger_id, "page"),
    ]
    assert all("cooldown" in (e.message or "") for e in suppressed)
    assert other.trigger_id in {e.trigger_id for e in events if e.state == "succeeded"}


@pytest.mark.asyncio
async def test_bad_record_on_an_internal_topic_does_not_stop_the_worker(stack: Stack) -> None:
    stack.write_rules(RULES)
    await stack.start_worker()
    await run_sentinel(stack)  # the internal topics exist once the worker runs
    config = stack.config
    producer = make_producer(config)
    await producer.start()
    try:
        await producer.send_and_wait(config.action_requests_topic, b'{"action_id": "x"}', key=b"x")
    finally:
        await producer.stop()
    await run_sentinel(stack)
    letters = await stack.wait_for(stack.dead_letters, what="a dead letter")
    assert len(letters) == 1
    assert letters[0].stage == DeadLetterStage.execute
    assert letters[0].topic == config.action_requests_topic
    assert letters[0].value == b'{"action_id": "x"}'
    assert letters[0].error_type == "ValidationError"
    assert letters[0].reason == (
        f"Cannot handle a record of {config.action_requests_topic}: Field required at"
        " action_request.action_name (and 1 more)"
    )
    assert stack.webhook.count("POST") == 2  # both sentinels
