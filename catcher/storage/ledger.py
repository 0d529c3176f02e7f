"""The ledger: action_id → what Catcher knows of the action, in a changelog-backed table.

Every write is on the changelog (in the partition of the action's request) *before* the
call returns, and then in the history topic. The runner writes ``submitting`` before a side
effect and ``submitted``/``succeeded``/``failed`` after it, so after a crash the ledger says
what may have happened.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator
from typing import Any, Protocol

from ..models.records import LedgerEntry, utcnow

__all__ = ["Ledger", "LedgerTable"]


class LedgerTable(Protocol):
    """What the ledger needs of a Faust table."""

    data: Any

    def send_changelog(self, partition: int | None, key: Any, value: Any) -> Any:
        """Write one change to the changelog topic; returns an awaitable delivery."""


class Ledger:
    """Reads and durably writes ledger entries, emitting one history event per write."""

    def __init__(
        self, table: LedgerTable, on_change: Callable[[LedgerEntry], Awaitable[None]]
    ) -> None:
        self._table = table
        self._on_change = on_change

    def get(self, action_id: str) -> LedgerEntry | None:
        """The entry of an action, if the ledger has one."""
        raw = self._table.data.get(action_id)
        return None if raw is None else LedgerEntry.model_validate(raw)

    def entries(self) -> Iterator[LedgerEntry]:
        """Every entry this worker holds."""
        for raw in list(self._table.data.values()):
            if raw is not None:
                yield LedgerEntry.model_validate(raw)

    async def put(self, entry: LedgerEntry, **changes: Any) -> LedgerEntry:
        """Write the entry with ``changes`` applied, wait for the broker, record history."""
        updated = entry.model_copy(update={**changes, "updated": utcnow()})
        value = updated.to_json()
        delivery = self._table.send_changelog(updated.partition, updated.action_id, value)
        self._table.data[updated.action_id] = value
        await delivery
        await self._on_change(updated)
        return updated
