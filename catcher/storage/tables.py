"""Changelog-backed tables whose writes are durable before they are visible, and ownership.

A Faust table keeps its data in memory and its changes on a compacted changelog topic.
:class:`DurableTable` writes the changelog first and waits for the broker's
acknowledgement; only then does the new value appear in memory, so nothing a later step
reads can be lost by a crash. :class:`Ownership` tracks which partitions this worker holds:
the topics' partitions are assigned and revoked together with the tables' (Faust
co-partitions them), and every side effect is checked against it right before it happens.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, Protocol

__all__ = ["ChangelogTable", "DurableTable", "Ownership"]


class ChangelogTable(Protocol):
    """What Catcher needs of a Faust table."""

    data: Any

    def send_changelog(self, partition: int | None, key: Any, value: Any) -> Any:
        """Write one change to the changelog topic; returns an awaitable delivery."""


class DurableTable:
    """A key → JSON value table; each write is on the broker before it is in memory."""

    def __init__(self, table: ChangelogTable) -> None:
        self._table = table

    def get(self, key: str) -> Any:
        """The value of a key, or None."""
        return self._table.data.get(key)

    def __len__(self) -> int:
        return len(self._table.data)

    def items(self) -> list[tuple[str, Any]]:
        """Every (key, value) this worker holds (a copy)."""
        return [(k, v) for k, v in list(self._table.data.items()) if v is not None]

    async def put(self, partition: int, key: str, value: Any) -> None:
        """Write a value: changelog acknowledged, then visible."""
        await self._table.send_changelog(partition, key, value)
        self._table.data[key] = value

    def put_soon(self, partition: int, key: str, value: Any) -> None:
        """Make a value visible now and write it without waiting.

        Only for values whose loss in a crash is harmless (a hint such as "the history event
        was sent"); the write keeps its order with the partition's other writes.
        """
        self._table.send_changelog(partition, key, value)
        self._table.data[key] = value

    async def delete(self, partition: int, key: str) -> None:
        """Tombstone a key on the changelog, then drop it from memory."""
        await self._table.send_changelog(partition, key, None)
        self._table.data.pop(key, None)


RevokeListener = Callable[[str, set[int]], None]


class Ownership:
    """The partitions this worker holds, fed by Faust's assignment and revocation signals."""

    def __init__(self) -> None:
        self._assigned: dict[str, set[int]] = {}
        self._listeners: list[RevokeListener] = []
        self.assignments = 0
        """Assignments received (0: the worker has not joined its consumer group yet)."""

    def owns(self, topic: str, partition: int) -> bool:
        """Whether this worker holds the partition now."""
        return partition in self._assigned.get(topic, ())

    def assigned(self) -> bool:
        """Whether this worker holds any partition."""
        return any(self._assigned.values())

    def on_revoke(self, listener: RevokeListener) -> None:
        """Call ``listener(topic, partitions)`` whenever partitions are revoked."""
        self._listeners.append(listener)

    def assign(self, tps: Iterable[tuple[str, int]]) -> None:
        """The new full assignment (Faust's ``on_partitions_assigned``)."""
        assigned: dict[str, set[int]] = {}
        for topic, partition in tps:
            assigned.setdefault(topic, set()).add(partition)
        self._assigned = assigned
        self.assignments += 1

    def revoke(self, tps: Iterable[tuple[str, int]]) -> None:
        """Partitions taken away (Faust's ``on_partitions_revoked``): listeners stop work."""
        lost: dict[str, set[int]] = {}
        for topic, partition in tps:
            self._assigned.get(topic, set()).discard(partition)
            lost.setdefault(topic, set()).add(partition)
        for topic, partitions in lost.items():
            for listener in self._listeners:
                listener(topic, partitions)
