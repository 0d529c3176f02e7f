"""Compacted topics as every worker sees them: the alarms and the silences.

A view reads a compacted topic from its beginning and then follows it, keeping the latest
value of each key. Listeners are told after each batch of changes (the LOVE producer
re-sends the whole alarm map then). Reads never wait for the owner of an alarm.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
from collections.abc import Awaitable, Callable
from typing import Any, Generic, TypeVar

import structlog
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError

from ...avro import AvroCodec
from ...config import Config
from ...exceptions import CatcherError
from ...kafka import _partitions
from ...models.alarms import Alarm
from ...redact import brief

__all__ = ["AlarmView", "TopicView"]

logger = structlog.get_logger("catcher")

T = TypeVar("T")


Decode = Callable[[bytes], Awaitable[T]]


class TopicView(Generic[T]):
    """The latest value of every key of a compacted topic, followed as it changes."""

    def __init__(self, config: Config, topic: str, decode: Decode[T]) -> None:
        self._config = config
        self._topic = topic
        self._decode = decode
        self.values: dict[str, T] = {}
        self.version = 0
        """Counts the batches of changes seen."""
        self.loaded = asyncio.Event()
        """Set once the topic has been read up to the end it had at the start."""
        self._listeners: list[Callable[[], None]] = []
        self._task: asyncio.Task[None] | None = None

    def on_change(self, listener: Callable[[], None]) -> None:
        """Call ``listener()`` after each batch of changes."""
        self._listeners.append(listener)

    def start(self) -> None:
        """Follow the topic in the background (retrying while the broker is away)."""
        self._task = asyncio.create_task(self._run(), name=f"view:{self._topic}")

    async def stop(self) -> None:
        """Stop following."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task

    async def _run(self) -> None:
        delay = 1.0
        while True:
            try:
                await self._follow()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - the view must outlive a broker outage
                logger.warning(
                    "Reading a topic failed; will try again",
                    topic=self._topic,
                    error=brief(str(exc)),
                    delay=delay,
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, 30.0)

    async def _follow(self) -> None:
        topic = self._topic
        consumer = AIOKafkaConsumer(
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            **self._config.kafka.aiokafka_params(),
        )
        await consumer.start()
        try:
            partitions = await _wait_for_partitions(consumer, topic)
            consumer.assign(partitions)
            await consumer.seek_to_beginning(*partitions)
            end = await consumer.end_offsets(partitions)
            pending = {tp for tp, offset in end.items() if offset > 0}
            if not pending:
                self.loaded.set()
            while True:
                batch = await consumer.getmany(timeout_ms=1000)
                changed = False
                for tp, messages in batch.items():
                    for message in messages:
                        changed |= await self._apply(message.key, message.value)
                    if messages and messages[-1].offset + 1 >= end[tp]:
                        pending.discard(tp)
                if not pending:
                    self.loaded.set()
                if changed:
                    self.version += 1
                    for listener in self._listeners:
                        listener()
        except KafkaError as exc:
            raise CatcherError(f"Could not read {topic}: {exc}") from exc
        finally:
            await consumer.stop()

    async def _apply(self, key: bytes | None, value: bytes | None) -> bool:
        name = key.decode() if key else ""
        if value is None:
            return self.values.pop(name, None) is not None
        try:
            self.values[name] = await self._decode(value)
        except Exception as exc:  # noqa: BLE001 - one bad record must not stop the view
            logger.warning(
                "Skipped a record that cannot be read", topic=self._topic, key=name, error=str(exc)
            )
            return False
        return True


RECENT_CHANGES = 20
"""Changes remembered per alarm, for the operator page."""


class AlarmView(TopicView[Alarm]):
    """The latest state of every alarm, followed from the alarms topic.

    It also remembers each alarm's last :data:`RECENT_CHANGES` records as read (the topic
    is compacted: after compaction only the latest of an alarm is left to read at start).
    """

    def __init__(self, config: Config, codec: AvroCodec) -> None:
        self.recent: dict[str, collections.deque[dict[str, Any]]] = {}

        async def decode(value: bytes) -> Alarm:
            record = await codec.decode("alarms", value)
            alarm = Alarm.from_avro(record)
            self._remember(alarm, record)
            return alarm

        super().__init__(config, config.alarms_topic, decode)

    def _remember(self, alarm: Alarm, record: dict[str, Any]) -> None:
        changes = self.recent.setdefault(alarm.name, collections.deque(maxlen=RECENT_CHANGES))
        changes.append(
            {
                "time": alarm.updated.isoformat() if alarm.updated else None,
                "severity": alarm.severity.name,
                "max_severity": alarm.max_severity.name,
                "state": alarm.display_state.value,
                "command": record.get("command"),
                "user": record.get("command_user"),
                "refused": record.get("command_refused"),
                "comment": record.get("comment") if record.get("command") else "",
            }
        )

    @property
    def alarms(self) -> dict[str, Alarm]:
        """Alarms by name."""
        return self.values


async def _wait_for_partitions(consumer: AIOKafkaConsumer, topic: str) -> list[TopicPartition]:
    """The topic's partitions, waiting while the topic does not exist yet."""
    partitions = await _partitions(consumer, topic)
    while not partitions:
        await asyncio.sleep(1)
        partitions = await _partitions(consumer, topic)
    return partitions
