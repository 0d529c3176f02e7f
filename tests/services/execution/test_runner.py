"""The runner's state machine, with an in-memory table and scripted executors."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import pytest

from catcher.actions.base import Executor, JobStatus, Submission
from catcher.exceptions import PermanentActionError, RetryableActionError
from catcher.models.enums import ActionState, Severity, TriggerSource
from catcher.models.records import DeadLetter, LedgerEntry, Trigger, utcnow
from catcher.models.rules import Rule, RuleSet
from catcher.retry import RetryPolicy
from catcher.services.execution.runner import ActionRunner
from catcher.storage.ledger import Ledger
from catcher.storage.ledger_log import Finished
from catcher.storage.tables import Ownership
from tests.support.tables import MemoryTable


class Scripted(Executor[Any, Any]):
    type = "webhook"
    runtime: timedelta | None = None
    aborted: list[str | None]

    def __init__(
        self,
        submits: list[Any],
        polls: list[Any] | None = None,
        reconciled: Submission | None = None,
    ) -> None:
        self.submits = submits
        self.polls = polls or []
        self.reconciled = reconciled
        self.calls: list[str] = []
        self.aborted = []

    async def _next(self, script: list[Any]) -> Any:
        step = script.pop(0)
        if isinstance(step, float):
            await asyncio.sleep(step)
            return None
        if isinstance(step, Exception):
            raise step
        return step

    async def submit(self, action: Any, entry: LedgerEntry) -> Submission:
        self.calls.append("submit")
        return await self._next(self.submits)

    async def poll(self, action: Any, entry: LedgerEntry) -> JobStatus:
        self.calls.append("poll")
        return await self._next(self.polls)

    async def reconcile(self, action: Any, entry: LedgerEntry) -> Submission | None:
        self.calls.append("reconcile")
        return self.reconciled

    def max_runtime(self, action: Any) -> timedelta | None:
        return self.runtime

    async def abort(self, action: Any, entry: LedgerEntry) -> str | None:
        self.aborted.append(entry.job_id)
        return f"job {entry.job_id} aborted." if self.runtime is not None else None


TOPIC = "catcher.internal.action-requests"

RULES = RuleSet(
    [
        Rule.model_validate(
            {
                "id": "r",
                "description": "d",
                "actions": [{"name": "a", "type": "webhook", "url": "http://x"}],
            }
        )
    ]
)


async def run(
    executor: Scripted,
    *,
    state: ActionState = ActionState.queued,
    policy: RetryPolicy | None = None,
    poll_timeout: float = 5.0,
    attempt: int = 0,
    cancel_after: float | None = None,
    cancel_requested: bool = False,
    ownership: Ownership | None = None,
    submitted_ago: timedelta | None = None,
) -> tuple[list[LedgerEntry], list[DeadLetter]]:
    table = MemoryTable()
    history: list[LedgerEntry] = []
    letters: list[DeadLetter] = []

    async def record(entry: LedgerEntry) -> None:
        history.append(entry)

    ledger = Ledger(table, record)
    trigger = Trigger.create("r", Severity.WARNING, reason="x", source=TriggerSource.manual)
    entry = LedgerEntry(
        action_id="t.a",
        action_name="a",
        action_type="webhook",
        trigger=trigger,
        partition=0,
        state=state,
        attempt=attempt,
        link="http://job",
        cancel_requested=cancel_requested,
        submitted=utcnow() - submitted_ago if submitted_ago else None,
    )
    table.data[entry.action_id] = entry.to_json()
    runner = ActionRunner(
        ledger=ledger,
        rules=RULES,
        executors={"webhook": executor},
        policy=policy
        or RetryPolicy(attempts=3, backoff_initial=0.01, attempt_timeout=0.5, deadline=5),
        poll_interval=0.01,
        poll_timeout=poll_timeout,
        failures=Letters(letters),
        ownership=ownership,
        topic=TOPIC,
    )
    runner.ensure(entry)
    if cancel_after is not None:
        await asyncio.sleep(cancel_after)
        runner.cancel(entry.action_id, "tester")
    while runner._tasks:
        done = asyncio.gather(*runner._tasks.values(), return_exceptions=True)
        for result in await asyncio.wait_for(done, timeout=10):
            # A revoked partition cancels its tasks; nothing else may end one with an error.
            assert result is None or isinstance(result, asyncio.CancelledError), result
    # Every state durably written before its history event; a final one then marked as
    # sent, in its compact form (all that deduplication and pruning need).
    states = [v for _, _, v in table.changelog if isinstance(v, dict)]
    marks = [v for _, _, v in table.changelog if isinstance(v, Finished)]
    assert not any(v["published"] for v in states)  # short-lived states are not marked
    assert [v["state"] for v in states] == [e.state.value for e in history]
    finals = [e.state for e in history if e.state.terminal]
    assert [v.state for v in marks] == finals
    assert [v.updated for v in marks] == [e.updated for e in history if e.state.terminal]
    assert {p for p, _, _ in table.changelog} <= {0}
    assert isinstance(table.data[entry.action_id], Finished) == bool(finals)
    return history, letters


@pytest.mark.asyncio
async def test_success_first_time() -> None:
    history, letters = await run(Scripted([Submission(done=True, message="ok")]))
    assert [e.state for e in history] == ["submitting", "succeeded"]
    assert letters == []


@pytest.mark.asyncio
async def test_retryable_errors_then_success() -> None:
    executor = Scripted(
        [RetryableActionError("HTTP 503."), 5.0, Submission(done=True, message="ok")]
    )
    history, _ = await run(executor)
    assert [(e.state.value, e.attempt) for e in history] == [
        ("submitting", 1),
        ("retrying", 1),
        ("submitting", 2),
        ("retrying", 2),
        ("submitting", 3),
        ("succeeded", 3),
    ]
    assert history[1].message.startswith("HTTP 503. Next attempt in")
    assert history[3].message.startswith("No answer within 0.5 s.")  # the slow attempt


@pytest.mark.asyncio
async def test_attempts_run_out() -> None:
    executor = Scripted([RetryableActionError("down")] * 3)
    history, letters = await run(executor)
    assert history[-1].state == ActionState.failed
    assert history[-1].message == "Gave up after 3 attempts: down"
    assert executor.calls == ["submit"] * 3
    assert letters[0].reason == "Gave up after 3 attempts: down"
    assert letters[0].action_id == "t.a"


@pytest.mark.asyncio
async def test_deadline_ends_retries() -> None:
    policy = RetryPolicy(attempts=10, backoff_initial=2, jitter=0, deadline=1)
    history, _ = await run(Scripted([RetryableActionError("down")]), policy=policy)
    assert [e.state for e in history] == ["submitting", "failed"]
    assert history[-1].message == "Gave up at the 1 s deadline after 1 attempts: down"


@pytest.mark.asyncio
async def test_permanent_error_is_not_retried() -> None:
    executor = Scripted([PermanentActionError("HTTP 400: bad")])
    history, letters = await run(executor)
    assert [e.state for e in history] == ["submitting", "failed"]
    assert executor.calls == ["submit"]
    assert len(letters) == 1


@pytest.mark.asyncio
async def test_unexpected_exception_fails_the_action() -> None:
    history, _ = await run(Scripted([ZeroDivisionError("boom")]))
    assert history[-1].message == "Unexpected error: ZeroDivisionError: boom"


@pytest.mark.asyncio
async def test_job_is_polled_to_completion() -> None:
    executor = Scripted(
        [Submission(done=False, message="queued", job_id="j1", link="http://j1")],
        [
            JobStatus(finished=False, message="running"),
            RetryableActionError("blip"),
            JobStatus(finished=False, message="running"),
            JobStatus(finished=True, succeeded=True, message="done"),
        ],
    )
    history, _ = await run(executor)
    assert [(e.state.value, e.message) for e in history] == [
        ("submitting", None),
        ("submitted", "queued"),
        ("submitted", "running"),
        ("succeeded", "done"),
    ]
    assert history[-1].job_id == "j1"


@pytest.mark.asyncio
async def test_job_failure_and_poll_timeout() -> None:
    executor = Scripted(
        [Submission(done=False, message="q", job_id="j")],
        [JobStatus(finished=True, message="The notebook raised X: y")],
    )
    history, letters = await run(executor)
    assert history[-1].state == ActionState.failed
    assert letters[0].reason == "The notebook raised X: y"
    slow = Scripted(
        [Submission(done=False, message="q", job_id="j")],
        [JobStatus(finished=False, message="q")] * 1000,
    )
    history, _ = await run(slow, poll_timeout=0.2)
    assert history[-1].message.startswith("Gave up on job j after 0:00:00.200000")


@pytest.mark.asyncio
async def test_interrupted_submission_is_resubmitted_and_said() -> None:
    executor = Scripted([Submission(done=True, message="ok")])
    history, _ = await run(executor, state=ActionState.submitting, attempt=1)
    assert executor.calls == ["reconcile", "submit"]
    assert [(e.state.value, e.attempt, e.message) for e in history] == [
        ("submitting", 2, "resubmitted after uncertain outcome"),
        ("succeeded", 2, "ok"),
    ]


@pytest.mark.asyncio
async def test_interrupted_submission_found_by_reconcile_is_not_resubmitted() -> None:
    found = Submission(done=False, message="found it", job_id="j9")
    executor = Scripted([], [JobStatus(finished=True, succeeded=True, message="done")], found)
    history, _ = await run(executor, state=ActionState.submitting, attempt=1)
    assert executor.calls == ["reconcile", "poll"]
    assert [e.state for e in history] == ["submitted", "succeeded"]


@pytest.mark.asyncio
async def test_cancel_a_polled_job_stops_polling_and_aborts() -> None:
    executor = Scripted(
        [Submission(done=False, message="q", job_id="j7")],
        [JobStatus(finished=False, message="q")] * 10000,
    )
    executor.runtime = timedelta(hours=1)
    history, letters = await run(executor, cancel_after=0.2, poll_timeout=600)
    assert [e.state.value for e in history][-2:] == ["submitted", "cancelled"]
    assert history[-1].message == "Cancelled by tester. job j7 aborted."
    assert history[-1].cancel_requested
    assert executor.aborted == ["j7"]
    assert letters == []


@pytest.mark.asyncio
async def test_cancel_a_job_that_cannot_be_aborted_only_stops_polling() -> None:
    executor = Scripted(
        [Submission(done=False, message="q", job_id="j8")],
        [JobStatus(finished=False, message="q")] * 10000,
    )
    history, _ = await run(executor, cancel_after=0.2, poll_timeout=600)
    assert history[-1].state == ActionState.cancelled
    assert history[-1].message == (
        "Cancelled by tester. webhook jobs cannot be aborted; polling stopped."
    )


@pytest.mark.asyncio
async def test_cancel_interrupted_by_a_crash_is_finished_on_resume() -> None:
    executor = Scripted([])
    history, _ = await run(executor, state=ActionState.retrying, attempt=1, cancel_requested=True)
    assert [e.state for e in history] == [ActionState.cancelled]
    assert executor.calls == []


@pytest.mark.asyncio
async def test_max_runtime_aborts_the_job() -> None:
    executor = Scripted(
        [Submission(done=False, message="q", job_id="j9")],
        [JobStatus(finished=False, message="q")] * 10000,
    )
    executor.runtime = timedelta(seconds=0.2)
    history, letters = await run(executor)
    assert history[-1].state == ActionState.failed
    assert history[-1].message == "Exceeded its maximum runtime of 0:00:00.200000. job j9 aborted."
    assert executor.aborted == ["j9"]
    assert len(letters) == 1


@pytest.mark.asyncio
async def test_a_job_that_finished_during_an_outage_is_asked_before_any_deadline() -> None:
    # Resumed long after its max runtime and the poll timeout: the service says completed.
    executor = Scripted([], polls=[JobStatus(finished=True, succeeded=True, message="done")])
    executor.runtime = timedelta(seconds=1)
    history, letters = await run(
        executor,
        state=ActionState.submitted,
        poll_timeout=2.0,
        submitted_ago=timedelta(hours=3),
    )
    assert [e.state for e in history] == ["succeeded"]
    assert executor.calls == ["poll"]
    assert executor.aborted == []
    assert letters == []


@pytest.mark.asyncio
async def test_a_job_still_running_past_its_runtime_is_aborted_after_the_poll() -> None:
    executor = Scripted([], polls=[JobStatus(finished=False, message="running")])
    executor.runtime = timedelta(seconds=1)
    history, _ = await run(executor, state=ActionState.submitted, submitted_ago=timedelta(hours=3))
    assert executor.calls == ["poll"]
    assert executor.aborted == [None]
    assert history[-1].state == ActionState.failed
    assert history[-1].message.startswith("Exceeded its maximum runtime of 0:00:01.")


@pytest.mark.asyncio
async def test_a_malformed_poll_answer_fails_the_action_with_the_reason() -> None:
    executor = Scripted([], polls=[AttributeError("'str' object has no attribute 'get'")])
    history, letters = await run(executor, state=ActionState.submitted)
    assert [e.state for e in history] == ["failed"]
    assert history[-1].message == (
        "Unexpected error: AttributeError: 'str' object has no attribute 'get'"
    )
    assert [letter.reason for letter in letters] == [history[-1].message]


@pytest.mark.asyncio
async def test_the_old_owner_sends_nothing_once_its_partition_is_revoked() -> None:
    ownership = Ownership()
    ownership.assign([(TOPIC, 0)])
    executor = Scripted([RetryableActionError("HTTP 503."), Submission(done=True, message="ok")])
    policy = RetryPolicy(attempts=5, backoff_initial=0.3, jitter=0, deadline=5)

    async def revoke_during_backoff() -> None:
        await asyncio.sleep(0.1)
        ownership.revoke([(TOPIC, 0)])

    revoking = asyncio.create_task(revoke_during_backoff())
    history, letters = await run(executor, policy=policy, ownership=ownership)
    await revoking
    assert executor.calls == ["submit"]  # the second attempt is the new owner's to make
    assert [e.state for e in history] == ["submitting", "retrying"]
    assert letters == []


@pytest.mark.asyncio
async def test_an_action_of_a_partition_this_worker_does_not_hold_calls_nothing() -> None:
    ownership = Ownership()
    ownership.assign([(TOPIC, 1)])  # the action's request is in partition 0
    executor = Scripted([Submission(done=True, message="ok")])
    history, letters = await run(executor, ownership=ownership)
    assert executor.calls == []
    assert history == []
    assert letters == []


def _runner(executor: Executor[Any, Any], limits: dict[str, int] | None = None) -> ActionRunner:
    """A runner over an in-memory ledger, for tests that drive several actions."""
    return ActionRunner(
        ledger=Ledger(MemoryTable(), _ignore),
        rules=RULES,
        executors={"webhook": executor},
        policy=RetryPolicy(attempt_timeout=5),
        poll_interval=0.01,
        poll_timeout=60,
        failures=Letters([]),
        limits=limits,
    )


def _start(runner: ActionRunner, action_id: str, partition: int, state: ActionState) -> None:
    trigger = Trigger.create("r", Severity.WARNING, reason="x", source=TriggerSource.manual)
    entry = LedgerEntry(
        action_id=action_id,
        action_name="a",
        action_type="webhook",
        trigger=trigger,
        partition=partition,
        state=state,
        link="http://job",
    )
    runner._ledger._table._table.data[action_id] = entry.to_json()
    runner.ensure(entry)


@pytest.mark.asyncio
async def test_revocation_cancels_the_tasks_of_the_lost_partitions() -> None:
    runner = _runner(Scripted([], polls=[JobStatus(finished=False, message="running")] * 1000))
    for partition in (0, 1):
        _start(runner, f"t{partition}.a", partition, ActionState.submitted)
    await asyncio.sleep(0.05)
    assert runner.release({1}) == 1
    await asyncio.sleep(0.05)
    assert runner.running == {"t0.a"}
    await runner.stop()


@pytest.mark.asyncio
async def test_calls_to_a_service_are_bounded() -> None:
    in_flight = 0
    most = 0

    class Slow(Scripted):
        async def submit(self, action: Any, entry: LedgerEntry) -> Submission:
            nonlocal in_flight, most
            in_flight += 1
            most = max(most, in_flight)
            await asyncio.sleep(0.05)
            in_flight -= 1
            return Submission(done=True, message="ok")

    runner = _runner(Slow([]), limits={"webhook": 2})
    for n in range(6):
        _start(runner, f"t{n}.a", 0, ActionState.queued)
    while runner.running:
        await asyncio.sleep(0.02)
    assert most == 2
    assert [runner._ledger.state_of(f"t{n}.a") for n in range(6)] == ["succeeded"] * 6


async def _ignore(_entry: LedgerEntry) -> None:
    return None


class Letters:
    """Collects the dead letters of failed actions."""

    def __init__(self, letters: list[DeadLetter]) -> None:
        self.letters = letters

    async def action_failed(self, letter: DeadLetter, _entry: LedgerEntry) -> None:
        self.letters.append(letter)
