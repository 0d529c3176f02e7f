"""Plain aiokafka clients for the CLI: topics, a producer, reading and following a topic."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

import structlog
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, TopicAlreadyExistsError

from .config import Config
from .topics import Topic

__all__ = [
    "TopicFollower",
    "ensure_topics",
    "existing_topics",
    "make_producer",
    "offsets_at",
    "own_topic_problems",
    "read_topic",
]

logger = structlog.get_logger("catcher")


def _new_topic(config: Config, topic: Topic | str) -> NewTopic:
    """A topic of the catalogue with its settings, or any other one with the broker's."""
    if isinstance(topic, str):
        return NewTopic(
            topic,
            num_partitions=config.topic_partitions,
            replication_factor=config.topic_replication_factor,
        )
    return NewTopic(
        config.topic_name(topic),
        num_partitions=topic.partitions(config.topic_partitions),
        replication_factor=config.topic_replication_factor,
        topic_configs=topic.configs(),
    )


async def ensure_topics(config: Config, wanted: Iterable[Topic | str]) -> list[str]:
    """Create the topics that do not exist yet; returns the names created.

    A :class:`~catcher.topics.Topic` of the catalogue gets its cleanup policy, retention
    and partitions; a plain name (a telemetry topic, in the demo) the broker's defaults.
    """
    new = {n.name: n for n in (_new_topic(config, t) for t in wanted)}
    admin = AIOKafkaAdminClient(**config.kafka.aiokafka_params())
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [name for name in new if name not in existing]
        if missing:
            with contextlib.suppress(TopicAlreadyExistsError):  # created meanwhile
                await admin.create_topics([new[name] for name in missing])
            logger.info("Created topics", topics=missing)
            await _until_led(admin, missing)
        return missing
    finally:
        await admin.close()


async def existing_topics(config: Config) -> dict[str, int]:
    """The topics the broker has, with their partition counts.

    Asks for every topic's metadata, never for named ones: a broker that creates topics on
    demand would create a named one it lacks.
    """
    admin = AIOKafkaAdminClient(**config.kafka.aiokafka_params())
    await admin.start()
    try:
        described = await admin.describe_topics()
    finally:
        await admin.close()
    return {t["topic"]: len(t["partitions"]) for t in described if not t["error_code"]}


async def offsets_at(
    config: Config, times: Mapping[tuple[str, int], int]
) -> dict[tuple[str, int], int | None]:
    """The first offset of each (topic, partition) at or after a time in ms (None: none)."""
    consumer = AIOKafkaConsumer(enable_auto_commit=False, **config.kafka.aiokafka_params())
    await consumer.start()
    try:
        found = await consumer.offsets_for_times(
            {TopicPartition(topic, partition): ms for (topic, partition), ms in times.items()}
        )
    finally:
        await consumer.stop()
    return {(tp.topic, tp.partition): (at.offset if at else None) for tp, at in found.items()}


def own_topic_problems(
    config: Config, wanted: Iterable[Topic], existing: Mapping[str, int]
) -> list[str]:
    """What is wrong with the broker's copies of the worker's own topics, if anything."""
    problems = []
    for topic in wanted:
        name = config.topic_name(topic)
        expected = topic.partitions(config.topic_partitions)
        found = existing.get(name)
        if found is None:
            problems.append(f"{name} does not exist")
        elif found != expected and topic.by_partition:
            setting = "" if topic.single_partition else " (CATCHER_TOPIC_PARTITIONS)"
            problems.append(f"{name} has {found} partition(s), not {expected}{setting}")
    return problems


async def _until_led(admin: AIOKafkaAdminClient, topics: list[str], limit: float = 30.0) -> None:
    """Wait until every partition of the topics has a leader in the broker's metadata.

    A topic is created by the controller and reaches the brokers' metadata a moment later; a
    consumer that subscribes in between ignores it until its next metadata refresh
    (minutes), so its records would sit unread.
    """
    deadline = asyncio.get_running_loop().time() + limit
    while True:
        described = await admin.describe_topics(topics)
        led = {
            t["topic"]
            for t in described
            if t.get("error_code") == 0
            and t.get("partitions")
            and all(p.get("leader", -1) >= 0 for p in t["partitions"])
        }
        if led >= set(topics):
            return
        if asyncio.get_running_loop().time() > deadline:
            raise ConnectionError(
                f"Topics created but without a leader after {limit:.0f} s:"
                f" {', '.join(sorted(set(topics) - led))}."
            )
        await asyncio.sleep(0.1)


def make_producer(config: Config) -> AIOKafkaProducer:
    """A producer for Catcher's topics: acks from all replicas, idempotent unless turned off."""
    return AIOKafkaProducer(
        acks="all",
        enable_idempotence=config.producer_idempotence,
        max_batch_size=config.producer_max_batch_size,
        **config.kafka.aiokafka_params(),
    )


async def _start_positions(
    consumer: AIOKafkaConsumer, tps: list[TopicPartition], since: datetime | None
) -> None:
    """Seek each partition to the first record at or after ``since`` (or the beginning).

    The broker finds the offsets by time (its time index); a partition with nothing as
    recent starts at its end.
    """
    if since is None:
        await consumer.seek_to_beginning(*tps)
        return
    found = await consumer.offsets_for_times(dict.fromkeys(tps, int(since.timestamp() * 1000)))
    ends = await consumer.end_offsets(tps)
    for tp in tps:
        hit = found.get(tp)
        consumer.seek(tp, ends[tp] if hit is None else hit.offset)


async def _start(consumer: AIOKafkaConsumer) -> None:
    """Start a consumer; one that cannot connect is closed before the error is raised."""
    try:
        await consumer.start()
    except BaseException:
        await consumer.stop()
        raise


async def _partitions(consumer: AIOKafkaConsumer, topic: str) -> list[TopicPartition]:
    partitions = consumer.partitions_for_topic(topic)
    if partitions is None:
        await consumer._client.force_metadata_update()  # noqa: SLF001 - fresh metadata
        partitions = consumer.partitions_for_topic(topic)
    return [TopicPartition(topic, p) for p in sorted(partitions or ())]


async def read_topic(
    config: Config, topic: str, *, since: datetime | None = None, limit: float = 30.0
) -> list[Any]:
    """The records of a topic from ``since`` (default: the beginning) to its end offsets.

    The end offsets are those seen at the start; records are sorted by time.
    """
    consumer = AIOKafkaConsumer(
        enable_auto_commit=False, auto_offset_reset="earliest", **config.kafka.aiokafka_params()
    )
    await _start(consumer)
    try:
        tps = await _partitions(consumer, topic)
        if not tps:
            return []
        consumer.assign(tps)
        await _start_positions(consumer, tps, since)
        end = await consumer.end_offsets(tps)
        records: list[Any] = []
        remaining = {tp for tp in tps if end[tp] > await consumer.position(tp)}
        deadline = asyncio.get_running_loop().time() + limit
        while remaining:
            if asyncio.get_running_loop().time() > deadline:
                raise TimeoutError(f"Timed out reading {topic} to its end.")
            batch = await consumer.getmany(*remaining, timeout_ms=500)
            for tp, messages in batch.items():
                records.extend(messages)
                if messages and messages[-1].offset + 1 >= end[tp]:
                    remaining.discard(tp)
            for tp in list(remaining):
                if await consumer.position(tp) >= end[tp]:
                    remaining.discard(tp)
        if since is not None:
            cutoff = int(since.timestamp() * 1000)
            records = [r for r in records if r.timestamp >= cutoff]
        return sorted(records, key=lambda m: (m.timestamp, m.partition, m.offset))
    except KafkaError as exc:
        raise ConnectionError(f"Could not read {topic}: {exc}") from exc
    finally:
        await consumer.stop()


class TopicFollower:
    """New records of a topic as they arrive, from the end offsets at :meth:`start`."""

    def __init__(self, config: Config, topic: str) -> None:
        self._topic = topic
        self._consumer = AIOKafkaConsumer(
            enable_auto_commit=False, auto_offset_reset="latest", **config.kafka.aiokafka_params()
        )

    async def start(self) -> TopicFollower:
        """Connect and remember where the topic ends now."""
        await _start(self._consumer)
        tps = await _partitions(self._consumer, self._topic)
        self._consumer.assign(tps)
        if tps:
            await self._consumer.seek_to_end(*tps)
            for tp in tps:  # resolve the lazy seek now, before anything new is written
                await self._consumer.position(tp)
        return self

    async def next(self, wait: float) -> list[Any]:
        """The records that arrived, waiting at most ``wait`` seconds for some."""
        batch = await self._consumer.getmany(timeout_ms=int(wait * 1000))
        return sorted(
            (m for messages in batch.values() for m in messages),
            key=lambda m: (m.timestamp, m.partition, m.offset),
        )

    async def stop(self) -> None:
        """Disconnect."""
        await self._consumer.stop()
