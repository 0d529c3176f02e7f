"""The ledger: action_id → what Catcher knows of the action, in a changelog-backed table.

Every write is on the changelog (in the partition of the action's request) before it is
visible and before the call returns; then its history event is sent to the actions topic.
A crash between the two would leave a state the history never shows, so each entry says
whether its event is known to be sent (``published``): the entry is written with
``published: false``, the event is sent, and for a final state a mark ``published: true``
follows without waiting. After a restart, the entries not marked (unfinished actions, and
final states whose mark was lost) have their current event sent again: a duplicate history
event is possible after a restart; a missing one is not.

The ledger keeps indexes so that periodic work never reads the whole table: the
unfinished actions (to resume), the unpublished ones (to send again) and the finished ones
by age (to tombstone after the retention).
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
from .tables import ChangelogTable, DurableTable

__all__ = ["Ledger"]

logger = structlog.get_logger("catcher")

_TERMINAL = {s.value for s in ActionState if s.terminal}


class Ledger:
    """Reads and durably writes ledger entries, emitting one history event per write."""

    def __init__(
        self,
        table: ChangelogTable,
        on_change: Callable[[LedgerEntry], Awaitable[None]],
        clock: Callable[[], datetime] = utcnow,
        written: Callable[[LedgerEntry], None] = lambda _entry: None,
    ) -> None:
        """``written`` is called after each durable write, before its history event."""
        self._table = DurableTable(table)
        self._on_change = on_change
        self._clock = clock
        self._unfinished: set[str] = set()
        self._unpublished: set[str] = set()
        self._publishing: set[str] = set()
        """Actions whose history event is being sent now: a scan must not send it too."""
        self._finished: list[tuple[datetime, str]] = []
        self._written = written

    def get(self, action_id: str) -> LedgerEntry | None:
        """The entry of an action, if the ledger has one."""
        raw = self._table.get(action_id)
        return None if raw is None else LedgerEntry.model_validate(raw)

    def _index(self, action_id: str, raw: dict[str, Any]) -> None:
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
        """Index every entry once (after the table is recovered from its changelog)."""
        self._unfinished.clear()
        self._unpublished.clear()
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
        await self._table.put(entry.partition, entry.action_id, value)
        self._index(entry.action_id, value)
        self._written(entry)
        await self._publish_once(entry)

    async def _publish_once(self, entry: LedgerEntry) -> None:
        """Send the entry's history event, marking it in flight for the republish scan."""
        self._publishing.add(entry.action_id)
        try:
            await self._publish(entry)
        finally:
            self._publishing.discard(entry.action_id)

    async def _publish(self, entry: LedgerEntry) -> None:
        await self._on_change(entry)
        # Only a final state is marked: an unfinished action is written again soon, and
        # after a restart its current event is sent once more.
        value = {**entry.to_json(), "published": True}
        current = self._table.get(entry.action_id)
        fresh = current is not None and current.get("updated") == value["updated"]
        if entry.state.terminal and fresh:
            self._table.put_soon(entry.partition, entry.action_id, value)
        self._unpublished.discard(entry.action_id)

    async def republish(self, owns: OwnsPartition) -> int:
        """Send again the history events not known to be sent; returns how many."""
        sent = 0
        for action_id in list(self._unpublished):
            entry = self.get(action_id)
            if entry is None:
                self._unpublished.discard(action_id)
                continue
            if entry.published or action_id in self._publishing or not owns(entry.partition):
                continue  # sent, being sent right now by its writer, or not ours
            logger.info(
                "Sending a history event again after a restart",
                action_id=action_id,
                state=entry.state.value,
            )
            await asyncio.shield(self._publish_once(entry))
            sent += 1
        return sent

    async def prune(self, retention: timedelta, owns: OwnsPartition) -> int:
        """Tombstone finished entries older than ``retention``; returns how many."""
        cutoff = self._clock() - retention
        dropped = 0
        while self._finished and self._finished[0][0] < cutoff:
            _, action_id = heapq.heappop(self._finished)
            entry = self.get(action_id)
            if entry is None or not entry.state.terminal or entry.updated >= cutoff:
                continue  # gone, resumed, or written again since it was indexed
            if not owns(entry.partition):
                continue  # the owner prunes it
            await self._table.delete(entry.partition, action_id)
            self._unpublished.discard(action_id)
            dropped += 1
        if dropped:
            logger.info("Dropped finished actions past the ledger retention", count=dropped)
        return dropped
