"""The ledger: action_id → what Catcher knows of the action, durable on a compacted topic.

Every write is on the changelog (in the partition of the action's request) before it is
visible and before the call returns; then its history event is sent to the actions topic.
A crash between the two would leave a state the history never shows, so each entry says
whether its event is known to be sent (``published``): the entry is written with
``published: false``, the event is sent, and a mark follows without waiting: for a final
state at once, and then the entry shrinks to ``<state>@<time>``
(:class:`~catcher.storage.ledger_log.Finished`); for a state an action stays in (a job
being followed, a retry being waited for) at the next scan. After a restart, the entries
not marked have their events looked up on the actions topic (:data:`SentEvents`) and only
those not found there are sent again: a history event is neither missing nor repeated.

Finished actions are kept for the retention (longer than the longest a trigger can be
delivered again and still run), then tombstoned. The ledger keeps indexes so that periodic
work never reads the whole table: the unfinished actions (to resume), the unpublished ones
(to send again) and the finished ones by age (to tombstone after the retention).
"""

from __future__ import annotations

import asyncio
import heapq
from collections.abc import Awaitable, Callable, Iterator
from datetime import datetime, timedelta
from typing import Any

import structlog

from ..models.enums import ActionState
from ..models.records import LedgerEntry, utcnow
from ..types import OwnsPartition
from .ledger_log import Finished
from .tables import ChangelogTable, DurableTable

__all__ = ["Ledger", "SentEvents"]

logger = structlog.get_logger("catcher")

_TERMINAL = {s.value for s in ActionState if s.terminal}

SentEvents = Callable[[datetime, set[str]], Awaitable[set[tuple[str, str, int, int]]]]
"""Given a time and action ids: the (action id, state, attempt, time in ms) of those
actions' events on the actions topic since that time."""

_LOOKBACK = timedelta(minutes=1)
"""How much earlier than an unpublished entry its event is looked for (clock skew)."""

_SETTLED = timedelta(seconds=10)
"""How long an unfinished action stays in a state before the scan marks its event sent."""

_TOMBSTONES_AT_ONCE = 1000


class Ledger:
    """Reads and durably writes ledger entries, emitting one history event per write."""

    def __init__(
        self,
        table: ChangelogTable,
        on_change: Callable[[LedgerEntry], Awaitable[None]],
        clock: Callable[[], datetime] = utcnow,
        written: Callable[[LedgerEntry], None] = lambda _entry: None,
        sent_events: SentEvents | None = None,
    ) -> None:
        """``written`` is called after each durable write, before its history event.

        ``sent_events`` looks up events on the actions topic before one is sent again
        (without it, an event whose mark was lost in a crash is sent again).
        """
        self._table = DurableTable(table)
        self._on_change = on_change
        self._clock = clock
        self._unfinished: set[str] = set()
        self._unpublished: set[str] = set()
        self._unmarked: dict[str, datetime] = {}
        """Unfinished actions whose current event is sent but not yet marked so: when."""
        self._publishing: set[str] = set()
        """Actions whose history event is being sent now: a scan must not send it too."""
        self._writing: dict[str, int] = {}
        """Actions with a write on its way to the broker: a mark of their older state,
        queued behind it, would overwrite it."""
        self._finished: list[tuple[datetime, str]] = []
        self._written = written
        self._sent_events = sent_events

    def get(self, action_id: str) -> LedgerEntry | None:
        """The whole entry of an action not finished (or whose final event is not marked)."""
        raw = self._table.get(action_id)
        if raw is None or isinstance(raw, Finished):
            return None
        return LedgerEntry.model_validate(raw)

    def state_of(self, action_id: str) -> ActionState | None:
        """The state of an action, finished or not, if the ledger has it."""
        raw = self._table.get(action_id)
        if raw is None:
            return None
        if isinstance(raw, Finished):
            return raw.state
        return ActionState(raw["state"])

    def _index(self, action_id: str, raw: dict[str, Any] | Finished) -> None:
        self._unmarked.pop(action_id, None)
        if isinstance(raw, Finished):
            self._unfinished.discard(action_id)
            self._unpublished.discard(action_id)
            heapq.heappush(self._finished, (raw.updated, action_id))
            return
        if raw.get("state") in _TERMINAL:
            self._unfinished.discard(action_id)
            heapq.heappush(self._finished, (datetime.fromisoformat(raw["updated"]), action_id))
        else:
            self._unfinished.add(action_id)
        if raw.get("published"):
            self._unpublished.discard(action_id)
        else:
            self._unpublished.add(action_id)

    def rebuild_index(self) -> None:
        """Index every entry once (after the ledger's partitions are read)."""
        self._unfinished.clear()
        self._unpublished.clear()
        self._unmarked.clear()
        self._finished.clear()
        for action_id, raw in self._table.items():
            self._index(action_id, raw)

    def sizes(self) -> tuple[int, int]:
        """Entries held, and how many of them are unfinished (for the metrics)."""
        return len(self._table), len(self._unfinished)

    def unfinished(self) -> Iterator[LedgerEntry]:
        """Entries of actions that have not finished."""
        for action_id in list(self._unfinished):
            entry = self.get(action_id)
            if entry is not None and not entry.state.terminal:
                yield entry

    async def put(self, entry: LedgerEntry, **changes: Any) -> LedgerEntry:
        """Write the entry with ``changes`` applied, wait for the broker, record history.

        A write in progress is finished even when the calling task is cancelled (a
        revoked partition), so that memory, changelog and history stay in step.
        """
        updated = entry.model_copy(
            update={**changes, "updated": self._clock(), "published": False}
        )
        await asyncio.shield(self._write(updated))
        return updated.model_copy(update={"published": True})

    async def _write(self, entry: LedgerEntry) -> None:
        value = entry.to_json()
        self._writing[entry.action_id] = self._writing.get(entry.action_id, 0) + 1
        try:
            await self._table.put(entry.partition, entry.action_id, value)
        finally:
            left = self._writing.pop(entry.action_id) - 1
            if left:
                self._writing[entry.action_id] = left
        self._index(entry.action_id, value)
        self._written(entry)
        await self._publish_once(entry)

    async def _publish_once(self, entry: LedgerEntry) -> None:
        """Send the entry's history event, marking it in flight for the republish scan."""
        self._publishing.add(entry.action_id)
        try:
            await self._on_change(entry)
        finally:
            self._publishing.discard(entry.action_id)
        self._sent(entry)

    def _sent(self, entry: LedgerEntry) -> None:
        """The entry's event is on the actions topic: mark it (a final state at once)."""
        current = self._table.get(entry.action_id)
        fresh = isinstance(current, dict) and _time(current["updated"]) == entry.updated
        if not fresh:
            return  # written again since: the newer write has its own event
        if entry.state.terminal:
            self._mark(entry)
        else:
            # An action usually leaves this state in moments; one that stays (a job being
            # followed, a retry waited for) is marked by the next scan (:meth:`settle`).
            self._unmarked[entry.action_id] = self._clock()
        self._unpublished.discard(entry.action_id)

    def _mark(self, entry: LedgerEntry) -> None:
        value: dict[str, Any] | Finished
        if entry.state.terminal:
            value = Finished(entry.state, entry.updated, entry.partition)
        else:
            value = {**entry.to_json(), "published": True}
        self._table.put_soon(entry.partition, entry.action_id, value)
        self._unmarked.pop(entry.action_id, None)
        self._unpublished.discard(entry.action_id)

    def settle(self) -> int:
        """Mark the events of actions that have stayed in their state; returns how many."""
        cutoff = self._clock() - _SETTLED
        marked = 0
        for action_id, since in list(self._unmarked.items()):
            if since > cutoff:
                continue
            if action_id in self._writing or action_id in self._publishing:
                continue  # a newer state is on its way: it will be marked in its turn
            entry = self.get(action_id)
            if entry is None or entry.state.terminal or entry.published:
                self._unmarked.pop(action_id, None)
                continue
            self._mark(entry)
            marked += 1
        return marked

    async def republish(self, owns: OwnsPartition) -> int:
        """Send the history events not known to be sent and not found sent; returns how many."""
        pending = self._pending(owns)
        if not pending:
            return 0
        found: set[tuple[str, str, int, int]] = set()
        if self._sent_events is not None:
            since = min(e.updated for e in pending) - _LOOKBACK
            found = await self._sent_events(since, {e.action_id for e in pending})
        sent = 0
        for entry in pending:
            current = self.get(entry.action_id)
            if current is None or current.updated != entry.updated or current.published:
                continue  # written again while the topic was read
            if entry.action_id in self._writing or entry.action_id in self._publishing:
                continue  # being written or sent now: that write sends its own event
            ms, known = _ms(entry.updated), (entry.action_id, entry.state.value, entry.attempt)
            if any((*known, t) in found for t in (ms - 1, ms, ms + 1)):
                logger.info(
                    "Found a history event on the actions topic; not sending it again",
                    action_id=entry.action_id,
                    state=entry.state.value,
                )
                self._mark(entry)
                continue
            logger.info(
                "Sending a history event again after a restart",
                action_id=entry.action_id,
                state=entry.state.value,
            )
            await asyncio.shield(self._publish_once(entry))
            sent += 1
        return sent

    def _pending(self, owns: OwnsPartition) -> list[LedgerEntry]:
        """The owned entries whose events are not known to be sent, nor being sent."""
        pending: list[LedgerEntry] = []
        for action_id in list(self._unpublished):
            entry = self.get(action_id)
            if entry is None:
                self._unpublished.discard(action_id)
                continue
            if entry.published or action_id in self._publishing or not owns(entry.partition):
                continue  # sent, being sent right now by its writer, or not ours
            pending.append(entry)
        return pending

    async def prune(self, retention: timedelta, owns: OwnsPartition) -> int:
        """Tombstone finished entries older than ``retention``; returns how many."""
        cutoff = self._clock() - retention
        deliveries: list[Awaitable[None]] = []
        dropped = 0
        while self._finished and self._finished[0][0] < cutoff:
            _, action_id = heapq.heappop(self._finished)
            raw = self._table.get(action_id)
            if raw is None:
                continue
            if isinstance(raw, Finished):
                partition, updated = raw.partition, raw.updated
            else:
                entry = LedgerEntry.model_validate(raw)
                if not entry.state.terminal:
                    continue  # resumed since it was indexed
                partition, updated = entry.partition, entry.updated
            if updated >= cutoff:
                continue  # written again since it was indexed
            if not owns(partition):
                continue  # the owner prunes it
            deliveries.append(self._table.delete(partition, action_id))
            self._unpublished.discard(action_id)
            dropped += 1
            if len(deliveries) >= _TOMBSTONES_AT_ONCE:
                await asyncio.gather(*deliveries)
                deliveries.clear()
        await asyncio.gather(*deliveries)
        if dropped:
            logger.info("Dropped finished actions past the ledger retention", count=dropped)
        return dropped


def _time(text: str) -> datetime:
    return datetime.fromisoformat(text)


def _ms(time: datetime) -> int:
    """A time in whole milliseconds since the epoch, as the actions topic keeps it."""
    return round(time.timestamp() * 1000)
