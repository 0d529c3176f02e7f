"""The action runner: drives each action from ``queued`` to a final state, in the background.

One asyncio task per unfinished action. The task reads the ledger, and:

- ``queued`` / ``retrying``: submits, with the retry policy (attempts, backoff with jitter,
  per-attempt timeout, total deadline); ``submitting`` is written before each attempt;
- ``submitting`` found after a restart: the outcome of that attempt is unknown, so the
  executor reconciles with the service if it can, and otherwise the action is submitted
  again and the history says so;
- ``submitted``: polls the job until it ends, ``poll_timeout`` passes, or the action's
  maximum runtime passes (then the job is aborted). The service is always asked first: a
  job resumed after an outage is polled before any deadline is applied, so a job that
  finished meanwhile is recorded with its real outcome;
- a cancel request stops the task, aborts the job where the service allows it, and records
  ``cancelled``; a cancel interrupted by a crash is finished after the restart.

Only the owner of an action's partition acts on it: ownership is checked right before
every side effect (each submit attempt, each poll, an abort), and a revoked partition
cancels its tasks (:meth:`ActionRunner.release`). Calls to each service are bounded
(``limits``, by action type): excess calls wait their turn.

Stream handlers only write ``queued`` and call :meth:`ActionRunner.ensure`; a periodic scan
of the ledger's index of unfinished actions (:meth:`ActionRunner.resume`) restarts whatever
a previous process, or a previous owner, left.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Protocol

import structlog

from ...actions.base import Executor, JobStatus, Submission
from ...exceptions import ActionError, PermanentActionError, RetryableActionError
from ...models.enums import ActionState, DeadLetterStage
from ...models.records import DeadLetter, LedgerEntry, utcnow
from ...models.rules import RuleSet
from ...redact import brief
from ...retry import RetryPolicy
from ...storage.ledger import Ledger
from ...storage.tables import Ownership

__all__ = ["ActionRunner"]

logger = structlog.get_logger("catcher")


class FailureSink(Protocol):
    """Where a failed action's dead letter goes (:meth:`Publisher.action_failed`)."""

    async def action_failed(self, letter: DeadLetter, entry: LedgerEntry) -> None: ...


ServiceCall = Callable[[Any, LedgerEntry], Awaitable[Any]]
"""An executor's method: ``submit``, ``poll``, ``reconcile`` or ``abort``."""


@dataclass(frozen=True)
class _Outcome:
    """What one call gave: a result, or a retryable or final error message."""

    result: Any = None
    retry: str = ""
    final: str = ""


class _Fenced(Exception):  # noqa: N818 - a signal inside the runner, never raised out of it
    """The action's partition is no longer this worker's: stop without a side effect."""


class ActionRunner:
    """Runs actions in background tasks, one per unfinished action_id."""

    def __init__(
        self,
        *,
        ledger: Ledger,
        rules: RuleSet,
        executors: Mapping[str, Executor[Any, Any]],
        policy: RetryPolicy,
        poll_interval: float,
        poll_timeout: float,
        failures: FailureSink,
        ownership: Ownership | None = None,
        topic: str = "",
        limits: Mapping[str, int] | None = None,
    ) -> None:
        """Drive actions; ``failures`` takes the dead letters of failed actions.

        ``ownership`` says which partitions of ``topic`` (the action requests) this worker
        holds; without it every action is this worker's (tools and tests).
        """
        self._ledger = ledger
        self._rules = rules
        self._executors = executors
        self._policy = policy
        self._poll_interval = poll_interval
        self._poll_timeout = timedelta(seconds=poll_timeout)
        self._failures = failures
        self._ownership = ownership
        self._topic = topic
        if ownership is not None:
            ownership.on_revoke(self._revoked)
        self._limits = {kind: asyncio.Semaphore(n) for kind, n in (limits or {}).items()}
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._partitions: dict[str, int] = {}

    @property
    def running(self) -> set[str]:
        """Action ids with a live task."""
        return {k for k, t in self._tasks.items() if not t.done()}

    def ensure(self, entry: LedgerEntry) -> None:
        """Make sure an unfinished action has a task driving it."""
        if entry.state.terminal or entry.action_id in self.running:
            return
        self._start(entry, self._drive(entry.action_id), "action")

    def _start(self, entry: LedgerEntry, work: Coroutine[Any, Any, None], kind: str) -> None:
        task = asyncio.create_task(
            self._fenced(entry.action_id, work), name=f"{kind}:{entry.action_id}"
        )
        self._tasks[entry.action_id] = task
        self._partitions[entry.action_id] = entry.partition
        task.add_done_callback(functools.partial(self._forget, entry.action_id))

    def _forget(self, action_id: str, task: asyncio.Task[None]) -> None:
        if self._tasks.get(action_id) is task:
            del self._tasks[action_id]
            self._partitions.pop(action_id, None)
        if not task.cancelled() and task.exception() is not None:
            logger.error("Action task crashed", action_id=action_id, error=repr(task.exception()))

    def _owns(self, entry: LedgerEntry) -> bool:
        return self._ownership is None or self._ownership.owns(self._topic, entry.partition)

    def _revoked(self, topic: str, partitions: set[int]) -> None:
        if topic == self._topic:
            self.release(partitions)

    def release(self, partitions: Iterable[int]) -> int:
        """Cancel the tasks of actions in partitions this worker lost; returns how many."""
        lost = set(partitions)
        cancelled = 0
        for action_id, partition in list(self._partitions.items()):
            task = self._tasks.get(action_id)
            if partition in lost and task is not None and not task.done():
                task.cancel()
                cancelled += 1
        if cancelled:
            logger.info("Stopped the actions of revoked partitions", count=cancelled)
        return cancelled

    def resume(self) -> int:
        """Start tasks for every unfinished action this worker owns; returns how many."""
        started = 0
        for entry in self._ledger.unfinished():
            if entry.action_id not in self.running and self._owns(entry):
                logger.info(
                    "Resuming unfinished action", action_id=entry.action_id, state=entry.state
                )
                self.ensure(entry)
                started += 1
        return started

    async def stop(self) -> None:
        """Cancel every task (their state is in the ledger, to be resumed later)."""
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    def cancel(self, action_id: str, requested_by: str) -> None:
        """Stop an action now: its task is cancelled and a cancelling task takes over."""
        previous = self._tasks.get(action_id)
        if previous is not None:
            previous.cancel()
        entry = self._ledger.get(action_id)
        if entry is None:
            logger.info("Nothing to cancel", action_id=action_id)
            return
        self._start(entry, self._cancel(action_id, requested_by, previous), "cancel")

    async def _call(self, entry: LedgerEntry, method: ServiceCall, action: Any) -> Any:
        """One call to the action's service: owner checked, concurrency bounded, timed out."""
        limit = self._limits.get(entry.action_type) or contextlib.nullcontext()
        async with limit:
            self._fence(entry)  # right before the call, after waiting for a turn
            # asyncio.timeout, not wait_for: wait_for can swallow a cancellation that
            # arrives as the call ends, and a cancelled action would then poll on.
            async with asyncio.timeout(self._policy.attempt_timeout):
                return await method(action, entry)

    async def _attempt(self, entry: LedgerEntry, method: ServiceCall, action: Any) -> _Outcome:
        """One call, its failure sorted into retryable or final."""
        try:
            return _Outcome(result=await self._call(entry, method, action))
        except _Fenced:
            raise
        except PermanentActionError as exc:
            return _Outcome(final=str(exc))
        except (RetryableActionError, TimeoutError) as exc:
            return _Outcome(
                retry=str(exc) or f"No answer within {self._policy.attempt_timeout} s."
            )
        except Exception as exc:  # a defect or a malformed answer must not leave it hanging
            logger.exception("Unexpected error from a service call", action_id=entry.action_id)
            return _Outcome(final=f"Unexpected error: {type(exc).__name__}: {brief(str(exc))}")

    def _fence(self, entry: LedgerEntry) -> None:
        if not self._owns(entry):
            raise _Fenced

    def _resolve(self, entry: LedgerEntry) -> tuple[Any, Executor[Any, Any] | None]:
        action = self._rules.action(entry.trigger.rule_id, entry.action_name)
        return action, self._executors.get(entry.action_type)

    async def _cancel(
        self, action_id: str, requested_by: str, previous: asyncio.Task[None] | None
    ) -> None:
        if previous is not None:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await previous
        entry = self._ledger.get(action_id)
        if entry is None or entry.state.terminal:
            logger.info("Nothing to cancel", action_id=action_id)
            return
        if not entry.cancel_requested:
            entry = await self._ledger.put(
                entry, cancel_requested=True, message=f"Cancel requested by {requested_by}."
            )
        await self._finish_cancel(entry)

    async def _finish_cancel(self, entry: LedgerEntry) -> LedgerEntry:
        self._fence(entry)
        action, executor = self._resolve(entry)
        message = (entry.message or "Cancelled.").replace("Cancel requested", "Cancelled")
        if action is not None and executor is not None:
            if entry.state == ActionState.submitting and entry.job_id is None:
                found = await self._reconcile(entry, action, executor)
                if found is not None:
                    entry = entry.model_copy(update={"job_id": found.job_id, "link": found.link})
            if entry.job_id is not None:
                message += " " + await self._abort(entry, action, executor)
        entry = await self._ledger.put(entry, state=ActionState.cancelled, message=message)
        logger.info("Action cancelled", action_id=entry.action_id, reason=message)
        return entry

    async def _abort(self, entry: LedgerEntry, action: Any, executor: Executor[Any, Any]) -> str:
        try:
            done = await self._call(entry, executor.abort, action)
        except (ActionError, TimeoutError) as exc:
            return f"The job could not be aborted: {exc or 'no answer in time'}"
        return done or f"{entry.action_type} jobs cannot be aborted; polling stopped."

    @staticmethod
    async def _fenced(action_id: str, work: Coroutine[Any, Any, None]) -> None:
        try:
            await work
        except _Fenced:
            logger.info("Action moved to another worker; stopping here", action_id=action_id)

    async def _drive(self, action_id: str) -> None:
        log = logger.bind(action_id=action_id)
        entry = self._ledger.get(action_id)
        if entry is None:
            if self._ledger.state_of(action_id) is None:
                log.error("No ledger entry for action")
            return  # or it has finished
        if entry.cancel_requested:
            await self._finish_cancel(entry)
            return
        action, executor = self._resolve(entry)
        if action is None or executor is None:
            await self._fail(
                entry,
                f"Rule {entry.trigger.rule_id!r} has no {entry.action_type} action"
                f" {entry.action_name!r} any more; it cannot run.",
            )
            return
        while not entry.state.terminal:
            self._fence(entry)
            if entry.state == ActionState.submitted:
                entry = await self._follow(entry, action, executor)
            else:
                entry = await self._submit(entry, action, executor)

    async def _submit(
        self, entry: LedgerEntry, action: Any, executor: Executor[Any, Any]
    ) -> LedgerEntry:
        log = logger.bind(action_id=entry.action_id, rule_id=entry.trigger.rule_id)
        note: str | None = None
        if entry.state == ActionState.submitting:
            found = await self._reconcile(entry, action, executor)
            if found is not None:
                log.info("Reconciled an interrupted submission", job_id=found.job_id)
                return await self._record_submission(entry, found)
            note = executor.resubmit_message
            log.warning("Submitting again after an uncertain outcome", attempt=entry.attempt)
        deadline = entry.started + timedelta(seconds=self._policy.deadline)
        attempt = entry.attempt
        while True:
            attempt += 1
            self._fence(entry)
            entry = await self._ledger.put(
                entry, state=ActionState.submitting, attempt=attempt, message=note
            )
            note = None
            outcome = await self._attempt(entry, executor.submit, action)
            if outcome.final:
                return await self._fail(entry, outcome.final)
            if not outcome.retry:
                return await self._record_submission(entry, outcome.result)
            error = outcome.retry
            delay = self._policy.backoff(attempt)
            if attempt >= self._policy.attempts:
                return await self._fail(entry, f"Gave up after {attempt} attempts: {error}")
            if utcnow() + timedelta(seconds=delay) > deadline:
                return await self._fail(
                    entry,
                    f"Gave up at the {self._policy.deadline:g} s deadline after {attempt}"
                    f" attempts: {error}",
                )
            log.warning("Attempt failed; will retry", attempt=attempt, error=error, delay=delay)
            entry = await self._ledger.put(
                entry,
                state=ActionState.retrying,
                message=f"{error} Next attempt in {delay:.1f} s.",
            )
            await asyncio.sleep(delay)

    async def _reconcile(
        self, entry: LedgerEntry, action: Any, executor: Executor[Any, Any]
    ) -> Submission | None:
        try:
            return await self._call(entry, executor.reconcile, action)
        except (ActionError, TimeoutError) as exc:
            logger.warning(
                "Could not reconcile an interrupted submission",
                action_id=entry.action_id,
                error=str(exc),
            )
            return None

    async def _record_submission(self, entry: LedgerEntry, submission: Submission) -> LedgerEntry:
        state = ActionState.succeeded if submission.done else ActionState.submitted
        entry = await self._ledger.put(
            entry,
            state=state,
            message=submission.message,
            job_id=submission.job_id,
            link=submission.link,
            submitted=utcnow(),
        )
        logger.info(
            "Action submitted" if not submission.done else "Action succeeded",
            action_id=entry.action_id,
            job_id=entry.job_id,
            link=entry.link,
        )
        return entry

    async def _follow(
        self, entry: LedgerEntry, action: Any, executor: Executor[Any, Any]
    ) -> LedgerEntry:
        """Poll the job until it ends; deadlines apply only to what the service says."""
        started = entry.submitted or entry.updated
        runtime = executor.max_runtime(action)
        last_error = ""
        first = True
        while True:
            if not first:
                await asyncio.sleep(self._poll_interval)
            first = False
            outcome = await self._attempt(entry, executor.poll, action)
            if outcome.final:
                return await self._fail(entry, outcome.final)
            last_error = outcome.retry
            if last_error:
                logger.warning(
                    "Polling failed; will poll again", action_id=entry.action_id, error=last_error
                )
            else:
                status: JobStatus = outcome.result
                if status.finished:
                    if not status.succeeded:
                        return await self._fail(
                            entry, status.message, link=status.link or entry.link
                        )
                    return await self._ledger.put(
                        entry,
                        state=ActionState.succeeded,
                        message=status.message,
                        link=status.link or entry.link,
                    )
                if status.message and status.message != entry.message:
                    entry = await self._ledger.put(entry, message=status.message)
            elapsed = utcnow() - started
            if runtime is not None and elapsed > runtime:
                done = await self._abort(entry, action, executor)
                return await self._fail(
                    entry, f"Exceeded its maximum runtime of {runtime}. {done}"
                )
            if elapsed > self._poll_timeout:
                return await self._fail(
                    entry,
                    f"Gave up on job {entry.job_id} after {self._poll_timeout}"
                    f" (CATCHER_POLL_TIMEOUT){': ' + last_error if last_error else '.'}",
                )

    async def _fail(
        self, entry: LedgerEntry, message: str, link: str | None = None
    ) -> LedgerEntry:
        entry = await self._ledger.put(
            entry, state=ActionState.failed, message=message, link=link or entry.link
        )
        logger.error("Action failed", action_id=entry.action_id, reason=message)
        await self._failures.action_failed(
            DeadLetter(
                stage=DeadLetterStage.execute,
                reason=message,
                error_type="ActionFailed",
                rule_id=entry.trigger.rule_id,
                trigger_id=entry.trigger.trigger_id,
                action_id=entry.action_id,
            ),
            entry,
        )
        return entry
