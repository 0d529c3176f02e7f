"""Admission: a request runs once, a finished one is skipped, an old one expires."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import pytest

from catcher.actions.base import Executor, Submission
from catcher.models.enums import Severity
from catcher.models.records import (
    ActionRequest,
    CancelRequest,
    DeadLetter,
    LedgerEntry,
    make_action_id,
    utcnow,
)
from catcher.retry import RetryPolicy
from catcher.services.execution.admission import Admission
from catcher.services.execution.runner import ActionRunner
from catcher.storage.ledger import Ledger
from tests.support.records import WEBHOOK_RULES as RULES
from tests.support.records import trigger_of as _trigger
from tests.support.tables import MemoryTable


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
