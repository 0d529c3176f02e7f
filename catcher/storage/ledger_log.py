"""The ledger's own changelog: a compacted topic that Catcher writes and reads itself.

The ledger is not a Faust table. Faust recovers a table record by record through its
stream machinery (about 7,000 small records a second on a 2-core machine, fewer for
larger ones), so a restart grew with every action the ledger remembered. Catcher reads
the ledger's partitions itself when they are assigned, with a plain consumer, before any
action request of those partitions is handled (Faust pauses newly assigned partitions
until its ``on_partitions_assigned`` handlers return): a few hundred thousand records a
second, so that reading the ledger is a small part of a restart.

Records (key: the action id, as text):

- an action that has not finished, or a final state whose history event is not known to
  be sent yet: its whole entry as compact JSON (what resuming the action and sending its
  event again need);
- a finished action whose event is sent: ``<state>@<updated, ms since the epoch>``, about
  20 bytes, all that deduplication and pruning need. After compaction this is the only
  record of a finished action;
- a tombstone, once a finished action is older than the ledger's retention.

Records written by the earlier Faust table (JSON keys and values) are read as well.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Iterable
from datetime import UTC, datetime
from typing import Any, NamedTuple

import structlog
from aiokafka import AIOKafkaConsumer, TopicPartition

from ..models.enums import ActionState

__all__ = ["Finished", "LedgerLog", "decode_value", "encode_value"]

logger = structlog.get_logger("catcher")

_TERMINAL = {s.value: s for s in ActionState if s.terminal}


class Finished(NamedTuple):
    """A finished action whose history event is sent: all the ledger keeps of it."""

    state: ActionState
    updated: datetime
    partition: int


def encode_value(value: dict[str, Any] | Finished | None) -> bytes | None:
    """A ledger value as its changelog record's value (None: a tombstone)."""
    if value is None:
        return None
    if isinstance(value, Finished):
        return f"{value.state.value}@{round(value.updated.timestamp() * 1000)}".encode()
    return json.dumps(value, separators=(",", ":")).encode()


def decode_value(raw: bytes | None, partition: int) -> dict[str, Any] | Finished | None:
    """A changelog record's value as the ledger holds it; raises ValueError if malformed."""
    if raw is None:
        return None
    if raw[:1] == b"{":
        value = json.loads(raw)
        if not isinstance(value, dict) or "state" not in value:
            raise ValueError("not a ledger entry")
        state = _TERMINAL.get(value["state"])
        if state is not None and value.get("published"):  # the earlier table's marks
            updated = datetime.fromisoformat(value["updated"])
            return Finished(state, updated, partition)
        return value
    text = raw.decode()
    name, _, ms = text.partition("@")
    state = _TERMINAL.get(name)
    if state is None or not ms.isdigit():
        raise ValueError(f"not a ledger record: {text[:40]!r}")
    return Finished(state, datetime.fromtimestamp(int(ms) / 1000, UTC), partition)


def decode_key(raw: bytes) -> str:
    """A record's key as an action id (the earlier table quoted its keys as JSON)."""
    if raw[:1] == b'"':
        return str(json.loads(raw))
    return raw.decode()


SendSoon = Callable[[int, bytes, bytes | None], Awaitable[Any]]
"""Hand a record (partition, key, value) to the producer in order; returns its delivery."""

ConsumerFactory = Callable[[], AIOKafkaConsumer]


class LedgerLog:
    """The ledger's entries in memory, for the partitions this worker holds, and their topic.

    Satisfies :class:`~catcher.storage.tables.ChangelogTable`: ``data`` and
    ``send_changelog``.
    """

    def __init__(self, topic: str, send_soon: SendSoon, consumer: ConsumerFactory) -> None:
        self.topic = topic
        self.data: dict[str, dict[str, Any] | Finished] = {}
        self._send_soon = send_soon
        self._consumer = consumer
        self._positions: dict[int, int] = {}
        """Partitions held, each with the offset up to which it was read."""
        self.loaded = asyncio.Event()
        """Set once the first assignment's partitions are read."""
        self.last_load: tuple[int, int, float] = (0, 0, 0.0)
        """(partitions, records, seconds) of the last read, for the logs and the bench."""

    def send_changelog(self, partition: int | None, key: str, value: Any) -> Awaitable[Any]:
        """Write one value (None: a tombstone); returns its delivery, in order with the rest."""
        assert partition is not None, "ledger writes name their partition"
        return self._send_soon(partition, key.encode(), encode_value(value))

    def held(self) -> set[int]:
        """The partitions whose entries are in memory."""
        return set(self._positions)

    async def assign(self, partitions: Iterable[int]) -> None:
        """Hold exactly ``partitions``, each read up to its end; forget the others.

        A partition held before is read on from where this worker last read it (another
        worker may have written it meanwhile; this worker's own writes read again are
        the values it holds already), a new one from its beginning.
        """
        wanted = set(partitions)
        self.drop(set(self._positions) - wanted)
        if wanted:
            await self._read(sorted(wanted))
        self.loaded.set()

    def drop(self, partitions: Iterable[int]) -> None:
        """Forget the entries of partitions this worker no longer holds."""
        lost = set(partitions) & set(self._positions)
        if not lost:
            return
        for partition in lost:
            del self._positions[partition]
        for key in [k for k, v in self.data.items() if _partition(v) in lost]:
            del self.data[key]

    async def _read(self, partitions: list[int]) -> None:
        started = asyncio.get_running_loop().time()
        consumer = self._consumer()
        await consumer.start()
        count = 0
        try:
            tps = [TopicPartition(self.topic, p) for p in partitions]
            consumer.assign(tps)
            for tp in tps:
                if tp.partition in self._positions:
                    consumer.seek(tp, self._positions[tp.partition])
                else:
                    await consumer.seek_to_beginning(tp)
            end = await consumer.end_offsets(tps)
            remaining = {tp for tp in tps if end[tp] > await consumer.position(tp)}
            while remaining:
                batch = await consumer.getmany(*remaining, timeout_ms=1000, max_records=10000)
                for tp, messages in batch.items():
                    for message in messages:
                        if message.offset < end[tp]:
                            self._apply(message.key, message.value, tp.partition)
                            count += 1
                for tp in list(remaining):
                    if await consumer.position(tp) >= end[tp]:
                        remaining.discard(tp)
            for tp in tps:
                self._positions[tp.partition] = end[tp]
        finally:
            await consumer.stop()
        seconds = asyncio.get_running_loop().time() - started
        self.last_load = (len(partitions), count, seconds)
        logger.info(
            "Read the ledger",
            partitions=partitions,
            records=count,
            entries=len(self.data),
            seconds=round(seconds, 3),
        )

    def _apply(self, raw_key: bytes | None, raw_value: bytes | None, partition: int) -> None:
        decoded = _decoded(raw_key, raw_value, partition)
        if isinstance(decoded, str):
            # Only Catcher writes this topic; a record it cannot read is reported and
            # skipped, never allowed to stop the worker from starting.
            logger.error("Skipped an unreadable ledger record", partition=partition, error=decoded)
            return
        key, value = decoded
        if value is None:
            self.data.pop(key, None)
        else:
            self.data[key] = value


def _decoded(
    raw_key: bytes | None, raw_value: bytes | None, partition: int
) -> tuple[str, dict[str, Any] | Finished | None] | str:
    """A record as (action id, value), or what is wrong with it."""
    if not raw_key:
        return "no key"
    try:
        return decode_key(raw_key), decode_value(raw_value, partition)
    except (ValueError, UnicodeDecodeError) as exc:
        return str(exc)


def _partition(value: dict[str, Any] | Finished) -> int:
    if isinstance(value, Finished):
        return value.partition
    return int(value.get("partition", -1))
