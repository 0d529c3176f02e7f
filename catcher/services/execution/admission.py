"""Admission: the owner of an action's partition takes a planned action into the ledger.

A request for an action the ledger already holds is skipped when it has finished and
continued when it has not; a new action is written ``queued`` (or ``expired`` when its
trigger is older than its maximum age) and handed to the runner. Cancel requests travel on
the same topic, so the owner applies them in order with the requests.
"""

from __future__ import annotations

from datetime import timedelta

import structlog

from ...models.enums import ActionState
from ...models.records import ActionRequest, CancelRequest, LedgerEntry, utcnow
from ...models.rules import RuleSet
from ...storage.ledger import Ledger
from .runner import ActionRunner

__all__ = ["Admission"]

logger = structlog.get_logger("catcher")


def _started(request: ActionRequest) -> str:
    trigger = request.trigger
    text = f"Started by a {trigger.severity.name} trigger ({trigger.source.value})."
    replay = request.replay
    if replay is None:
        return text
    how = f"Re-run (generation {trigger.generation})" if replay.forced else "Replayed"
    why = f": {replay.reason}" if replay.reason else ""
    return f"{how} by {replay.by}{why}. {text}"


class Admission:
    """Turns action requests into ledger entries and running actions."""

    def __init__(
        self, rules: RuleSet, ledger: Ledger, runner: ActionRunner, max_trigger_age: timedelta
    ) -> None:
        self._rules = rules
        self._ledger = ledger
        self._runner = runner
        self._max_trigger_age = max_trigger_age
        self.skipped = 0
        """Requests for actions that had already finished (counted, logged, not run)."""

    async def request(self, request: ActionRequest, partition: int) -> None:
        """Admit one planned action held in ``partition`` of the action-request topic."""
        state = self._ledger.state_of(request.action_id)
        if state is not None and state.terminal:
            self.skipped += 1
            logger.info(
                "Skipped an action that has already finished",
                action_id=request.action_id,
                state=state.value,
                skipped_total=self.skipped,
            )
            return
        entry = self._ledger.get(request.action_id)
        if entry is not None:
            logger.info(
                "Continuing an unfinished action from the ledger",
                action_id=request.action_id,
                state=entry.state.value,
            )
            self._runner.ensure(entry)
            return
        entry = await self._ledger.put(self._new_entry(request, partition))
        self._runner.ensure(entry)

    def _new_entry(self, request: ActionRequest, partition: int) -> LedgerEntry:
        action = self._rules.action(request.trigger.rule_id, request.action_name)
        entry = LedgerEntry(
            action_id=request.action_id,
            action_name=request.action_name,
            action_type=action.type if action else "unknown",
            trigger=request.trigger,
            partition=partition,
            state=ActionState.queued,
            message=_started(request),
        )
        max_age = (action.max_age if action else None) or self._max_trigger_age
        age = utcnow() - request.trigger.time
        if age <= max_age or (request.replay is not None and request.replay.forced):
            return entry  # a forced replay runs an old trigger's action on purpose
        logger.warning("Expired an action whose trigger is too old", action_id=entry.action_id)
        rounded = timedelta(seconds=round(age.total_seconds()))
        return entry.model_copy(
            update={
                "state": ActionState.expired,
                "message": f"Not run: its trigger is {rounded} old, older than the maximum"
                f" age of {max_age} (max_age or CATCHER_MAX_TRIGGER_AGE).",
            }
        )

    def cancel(self, cancel: CancelRequest) -> None:
        """Stop a running action (the runner aborts its job and records ``cancelled``)."""
        state = self._ledger.state_of(cancel.action_id)
        if state is None or state.terminal:
            logger.warning(
                "Ignored a cancel request for an action that is not running",
                action_id=cancel.action_id,
                state=state.value if state else None,
            )
            return
        logger.info("Cancelling an action", action_id=cancel.action_id, by=cancel.requested_by)
        self._runner.cancel(cancel.action_id, cancel.requested_by)
