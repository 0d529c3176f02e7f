"""The worker's services without Faust: intake, planning, admission, typed messages."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError
from support.tables import MemoryTable

from catcher.actions.base import Executor, Submission
from catcher.avro import AvroCodec
from catcher.exceptions import Unprocessable
from catcher.fakes.registry import FakeSchemaRegistry
from catcher.models.alarms import AlarmCommand
from catcher.models.enums import ActionState, DeadLetterStage, Severity, TriggerSource
from catcher.models.messages import parse_internal
from catcher.models.records import (
    ActionEvent,
    ActionRequest,
    CancelRequest,
    DeadLetter,
    LedgerEntry,
    Trigger,
    TriggerMessage,
    make_action_id,
    utcnow,
)
from catcher.models.rules import Rule, RuleSet
from catcher.retry import RetryPolicy
from catcher.services.execution.admission import Admission
from catcher.services.execution.runner import ActionRunner
from catcher.services.planning.intake import Intake
from catcher.services.planning.series import SeriesOwner
from catcher.storage.ledger import Ledger
from catcher.storage.tables import DurableTable

RULES = RuleSet(
    [
        Rule.model_validate(
            {
                "id": "r",
                "description": "d",
                "actions": [
                    {"name": "a", "type": "webhook", "url": "http://x", "cooldown": "1h"},
                    {
                        "name": "late",
                        "type": "webhook",
                        "url": "http://x",
                        "max_age": "1m",
                        "on": {"severity": "CRITICAL"},
                    },
                ],
            }
        )
    ]
)


class Sent:
    def __init__(self) -> None:
        self.records: list[tuple[str, str, dict[str, Any]]] = []

    async def __call__(self, topic: str, key: str, value: dict[str, Any]) -> None:
        self.records.append((topic, key, value))


def _trigger(severity: Severity = Severity.WARNING, **kwargs: Any) -> Trigger:
    kwargs.setdefault("tags", {"salIndex": "1"})
    return Trigger.create("r", severity, reason="x", source=TriggerSource.manual, **kwargs)


def test_internal_messages_are_told_apart_by_kind() -> None:
    trigger = _trigger()
    request = ActionRequest(action_id="t.a", action_name="a", trigger=trigger)
    cancel = CancelRequest(action_id="t.a", requested_by="me")
    message = TriggerMessage(trigger=trigger)
    command = AlarmCommand.model_validate(
        {
            "command": "mute",
            "name": "r:salIndex=1",
            "rule_id": "r",
            "tags": {"salIndex": "1"},
            "user": "ana",
            "duration": "1h",
            "command_id": "c1",
            "time": utcnow(),
        }
    )
    for original in (request, cancel, message, command):
        assert parse_internal(original.to_json()) == original
    # Messages written before they carried a kind are still read.
    assert parse_internal(trigger.to_json()) == message
    assert parse_internal({"action_id": "t.a", "cancel": True, "requested_by": "me"}) == cancel
    legacy = {"action_id": "t.a", "action_name": "a", "trigger": trigger.to_json()}
    assert parse_internal(legacy) == request
    with pytest.raises(ValidationError):
        parse_internal({"kind": "alarm_command"})  # an alarm command lacking its fields
    with pytest.raises(ValidationError):
        parse_internal({"kind": "something else"})


@pytest.mark.asyncio
async def test_intake_routes_a_trigger_to_its_series_and_rejects_the_rest() -> None:
    sent = Sent()
    async with FakeSchemaRegistry() as registry:
        codec = AvroCodec(registry.url, "lsst.catcher")
        planned: list[tuple[Trigger, int]] = []

        class Planner:
            async def handle(self, trigger: Trigger, partition: int) -> None:
                planned.append((trigger, partition))

        intake = Intake(codec, RULES, sent, "series", Path("rules"), Planner())  # type: ignore[arg-type]
        trigger = _trigger()
        encoded = await codec.encode("triggers", trigger.to_avro())
        await intake.handle(trigger.trigger_id.encode(), encoded, 2)  # another producer's key
        assert sent.records == [
            ("series", "r|salIndex=1", TriggerMessage(trigger=trigger).to_json())
        ]
        await intake.handle(trigger.key, encoded, 2)  # keyed by its series: planned here
        assert planned == [(trigger, 2)]
        unknown = Trigger.create("nope", Severity.WARNING, reason="x", source=TriggerSource.manual)
        with pytest.raises(Unprocessable) as rejected:
            await intake.handle(b"k", await codec.encode("triggers", unknown.to_avro()), 0)
        assert (rejected.value.stage, rejected.value.error_type) == (
            DeadLetterStage.plan,
            "UnknownRule",
        )
        with pytest.raises(Unprocessable, match="not the Confluent magic byte"):
            await intake.handle(b"k", b"junk record", 0)
        with pytest.raises(Unprocessable, match="no value"):
            await intake.handle(b"k", None, 0)
    assert len(sent.records) == 1


@pytest.mark.asyncio
async def test_planning_writes_the_state_then_requests_and_records_suppressions() -> None:
    table = MemoryTable()
    sent = Sent()
    events: list[ActionEvent] = []

    async def record(event: ActionEvent) -> None:
        events.append(event)

    planning = SeriesOwner(RULES, DurableTable(table), sent, record, "requests")
    first = _trigger(time=utcnow() - timedelta(minutes=10))
    await planning.handle(first, partition=3)
    assert table.changelog[0][:2] == (3, "r|salIndex=1")  # state written first, durably
    action_id = make_action_id(first.trigger_id, "a")
    assert [(t, k, v["kind"]) for t, k, v in sent.records] == [
        ("requests", action_id, "action_request")
    ]
    await planning.handle(first, partition=3)  # delivered again: the same request again
    assert [k for _, k, _ in sent.records] == [action_id, action_id]
    await planning.handle(_trigger(Severity.NONE, time=utcnow() - timedelta(minutes=5)), 3)
    again = _trigger(Severity.WARNING)
    await planning.handle(again, partition=3)  # within the 1h cooldown
    assert len(sent.records) == 2
    assert [(e.action_id, e.state) for e in events] == [
        (make_action_id(again.trigger_id, "a"), ActionState.suppressed)
    ]


class Done(Executor[Any, Any]):
    type = "webhook"

    def __init__(self) -> None:
        self.calls = 0

    async def submit(self, action: Any, entry: LedgerEntry) -> Submission:
        self.calls += 1
        return Submission(done=True, message="ok")


@pytest.mark.asyncio
async def test_admission_runs_once_skips_finished_and_expires_old_triggers() -> None:
    states: list[tuple[str, str]] = []

    async def record(entry: LedgerEntry) -> None:
        states.append((entry.action_name, entry.state.value))

    ledger = Ledger(MemoryTable(), record)
    executor = Done()
    runner = ActionRunner(
        ledger=ledger,
        rules=RULES,
        executors={"webhook": executor},
        policy=RetryPolicy(),
        poll_interval=0.01,
        poll_timeout=60,
        failures=Failures(),
    )
    admission = Admission(RULES, ledger, runner, timedelta(hours=6))
    trigger = _trigger(Severity.CRITICAL, time=utcnow() - timedelta(minutes=2))
    request = ActionRequest(
        action_id=make_action_id(trigger.trigger_id, "a"), action_name="a", trigger=trigger
    )
    await admission.request(request, partition=1)
    while runner.running:
        await asyncio.sleep(0.01)
    await admission.request(request, partition=1)  # delivered again after it finished
    late = ActionRequest(
        action_id=make_action_id(trigger.trigger_id, "late"), action_name="late", trigger=trigger
    )
    await admission.request(late, partition=1)  # max_age 1m: expired, not run
    assert executor.calls == 1
    assert admission.skipped == 1
    assert states == [
        ("a", "queued"),
        ("a", "submitting"),
        ("a", "succeeded"),
        ("late", "expired"),
    ]
    admission.cancel(CancelRequest(action_id=request.action_id, requested_by="me"))
    assert runner.running == set()  # nothing to cancel: it has finished


class Failures:
    """Fails the test if an action fails."""

    async def action_failed(self, letter: DeadLetter, _entry: LedgerEntry) -> None:
        raise AssertionError(letter.reason)
