"""The action runner: drives each action from ``queued`` to a final state, in the background.

One asyncio task per unfinished action. The task reads the ledger, and:

- ``queued`` / ``retrying``: submits, with the retry policy (attempts, backoff with jitter,
  per-attempt timeout, total deadline); ``submitting`` is written before each attempt;
- ``submitting`` found after a restart: the outcome of that attempt is unknown, so the
  executor reconciles with the service if it can, and otherwise the action is submitted
  again and the history says so;
- ``submitted``: polls the job until it ends, ``poll_timeout`` passes, or the action's
  maximum runtime passes (then the job is aborted);
- a cancel request stops the task, aborts the job where the service allows it, and records
  ``cancelled``; a cancel interrupted by a crash is finished after the restart.

Stream handlers only write ``queued`` and call :meth:`ActionRunner.ensure`; a periodic scan
of the ledger (:meth:`ActionRunner.resume`) restarts whatever a previous process left.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import Awaitable, Callable, Mapping
from datetime import timedelta
from typing import Any

import structlog

from ..actions.base import Executor, JobStatus, Submission
from ..exceptions import ActionError, PermanentActionError, RetryableActionError
from ..models.enums import ActionState, DeadLetterStage
from ..models.records import DeadLetter, LedgerEntry, utcnow
from ..models.rules import RuleSet
from ..retry import RetryPolicy
from ..storage.ledger import Ledger

__all__ = ["ActionRunner"]

logger = structlog.get_logger("catcher")


def _always(_entry: LedgerEntry) -> bool:
    return True


class ActionRunner:
    """Runs actions in background tasks, one per unfinished action_id."""

    def __init__(
        self,
        *,
        ledger: Ledger,
        rules: RuleSet,
        executors: Mapping[str, Executor[Any]],
        policy: RetryPolicy,
        poll_interval: float,
        poll_timeout: float,
        dead_letter: Callable[[DeadLetter, LedgerEntry], Awaitable[None]],
        owns: Callable[[LedgerEntry], bool] | None = None,
    ) -> None:
        self._ledger = ledger
        self._rules = rules
        self._executors = executors
        self._policy = policy
        self._poll_interval = poll_interval
        self._poll_timeout = timedelta(seconds=poll_timeout)
        self._dead_letter = dead_letter
        self._owns: Callable[[LedgerEntry], bool] = owns or _always
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self.skipped = 0
        """Requests for actions that had already finished (counted, logged, not run)."""

    @property
    def running(self) -> set[str]:
        """Action ids with a live task."""
        return {k for k, t in self._tasks.items() if not t.done()}

    def ensure(self, entry: LedgerEntry) -> None:
        """Make sure an unfinished action has a task driving it."""
        if entry.state.terminal or entry.action_id in self.running:
            return
        task = asyncio.create_task(self._drive(entry.action_id), name=f"action:{entry.action_id}")
        self._tasks[entry.action_id] = task
        task.add_done_callback(functools.partial(self._forget, entry.action_id))

    def _forget(self, action_id: str, task: asyncio.Task[None]) -> None:
        if self._tasks.get(action_id) is task:
            del self._tasks[action_id]
        if not task.cancelled() and task.exception() is not None:
            logger.error("Action task crashed", action_id=action_id, error=repr(task.exception()))

    def resume(self) -> int:
        """Start tasks for every unfinished action this worker owns; returns how many."""
        started = 0
        for entry in self._ledger.entries():
            if (
                not entry.state.terminal
                and entry.action_id not in self.running
                and self._owns(entry)
            ):
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
        task = asyncio.create_task(
            self._cancel(action_id, requested_by, previous), name=f"cancel:{action_id}"
        )
        self._tasks[action_id] = task
        task.add_done_callback(functools.partial(self._forget, action_id))

    def _resolve(self, entry: LedgerEntry) -> tuple[Any, Executor[Any] | None]:
        rule = self._rules.get(entry.trigger.rule_id)
        action = rule.action(entry.action_name) if rule else None
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

    async def _abort(self, entry: LedgerEntry, action: Any, executor: Executor[Any]) -> str:
        try:
            done = await asyncio.wait_for(
                executor.abort(action, entry), timeout=self._policy.attempt_timeout
            )
        except (ActionError, TimeoutError) as exc:
            return f"The job could not be aborted: {exc or 'no answer in time'}"
        return done or f"{entry.action_type} jobs cannot be aborted; polling stopped."

    async def _drive(self, action_id: str) -> None:
        log = logger.bind(action_id=action_id)
        entry = self._ledger.get(action_id)
        if entry is None:
            log.error("No ledger entry for action")
            return
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
            if not self._owns(entry):
                log.info("Action moved to another worker; stopping here")
                return
            if entry.state == ActionState.submitted:
                entry = await self._follow(entry, action, executor)
            else:
                entry = await self._submit(entry, action, executor)

    async def _submit(
        self, entry: LedgerEntry, action: Any, executor: Executor[Any]
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
            entry = await self._ledger.put(
                entry, state=ActionState.submitting, attempt=attempt, message=note
            )
            note = None
            try:
                submission = await asyncio.wait_for(
                    executor.submit(action, entry), timeout=self._policy.attempt_timeout
                )
            except PermanentActionError as exc:
                return await self._fail(entry, str(exc))
            except (RetryableActionError, TimeoutError) as exc:
                error = str(exc) or f"No answer within {self._policy.attempt_timeout} s."
            except Exception as exc:  # a defect must not leave the action hanging
                log.exception("Unexpected error while submitting")
                return await self._fail(entry, f"Unexpected error: {type(exc).__name__}: {exc}")
            else:
                return await self._record_submission(entry, submission)
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
        self, entry: LedgerEntry, action: Any, executor: Executor[Any]
    ) -> Submission | None:
        try:
            return await asyncio.wait_for(
                executor.reconcile(action, entry), timeout=self._policy.attempt_timeout
            )
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
        self, entry: LedgerEntry, action: Any, executor: Executor[Any]
    ) -> LedgerEntry:
        started = entry.submitted or entry.updated
        runtime = executor.max_runtime(action)
        last_error = ""
        while True:
            if runtime is not None and utcnow() - started > runtime:
                done = await self._abort(entry, action, executor)
                return await self._fail(
                    entry, f"Exceeded its maximum runtime of {runtime}. {done}"
                )
            if utcnow() - started > self._poll_timeout:
                return await self._fail(
                    entry,
                    f"Gave up on job {entry.job_id} after {self._poll_timeout}"
                    f" (CATCHER_POLL_TIMEOUT){': ' + last_error if last_error else '.'}",
                )
            await asyncio.sleep(self._poll_interval)
            if not self._owns(entry):
                return entry
            try:
                status: JobStatus = await asyncio.wait_for(
                    executor.poll(action, entry), timeout=self._policy.attempt_timeout
                )
            except PermanentActionError as exc:
                return await self._fail(entry, str(exc))
            except (RetryableActionError, TimeoutError) as exc:
                last_error = str(exc) or "no answer in time"
                logger.warning(
                    "Polling failed; will poll again", action_id=entry.action_id, error=last_error
                )
                continue
            last_error = ""
            if status.finished:
                state = ActionState.succeeded if status.succeeded else ActionState.failed
                if state == ActionState.failed:
                    return await self._fail(entry, status.message, link=status.link or entry.link)
                return await self._ledger.put(
                    entry, state=state, message=status.message, link=status.link or entry.link
                )
            if status.message and status.message != entry.message:
                entry = await self._ledger.put(entry, message=status.message)

    async def _fail(
        self, entry: LedgerEntry, message: str, link: str | None = None
    ) -> LedgerEntry:
        entry = await self._ledger.put(
            entry, state=ActionState.failed, message=message, link=link or entry.link
        )
        logger.error("Action failed", action_id=entry.action_id, reason=message)
        await self._dead_letter(
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
