"""Plain aiokafka clients for the CLI: topic creation, a producer, reading a topic to its end."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterable
from typing import Any

import structlog
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, TopicAlreadyExistsError

from .config import Config

__all__ = ["ensure_topics", "make_producer", "read_topic"]

logger = structlog.get_logger("catcher")


async def ensure_topics(config: Config, names: Iterable[str]) -> list[str]:
    """Create the topics that do not exist yet; returns the names created."""
    admin = AIOKafkaAdminClient(**config.kafka.aiokafka_params())
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [n for n in names if n not in existing]
        if missing:
            with contextlib.suppress(TopicAlreadyExistsError):  # created meanwhile
                await admin.create_topics(
                    [
                        NewTopic(
                            name,
                            num_partitions=config.topic_partitions,
                            replication_factor=config.topic_replication_factor,
                        )
                        for name in missing
                    ]
                )
            logger.info("Created topics", topics=missing)
        return missing
    finally:
        await admin.close()


def make_producer(config: Config) -> AIOKafkaProducer:
    """A producer for Catcher's topics (idempotence off: not every broker supports it)."""
    return AIOKafkaProducer(
        acks="all",
        enable_idempotence=False,
        max_batch_size=config.producer_max_batch_size,
        **config.kafka.aiokafka_params(),
    )


async def read_topic(config: Config, topic: str, *, limit: float = 30.0) -> list[Any]:
    """Every record of a topic, from the beginning to the end offsets seen at the start."""
    consumer = AIOKafkaConsumer(
        enable_auto_commit=False, auto_offset_reset="earliest", **config.kafka.aiokafka_params()
    )
    await consumer.start()
    try:
        partitions = consumer.partitions_for_topic(topic)
        if partitions is None:
            await consumer._client.force_metadata_update()  # noqa: SLF001 - fresh metadata
            partitions = consumer.partitions_for_topic(topic)
        if not partitions:
            return []
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        end = await consumer.end_offsets(tps)
        records: list[Any] = []
        remaining = {tp for tp in tps if end[tp] > 0}
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
        return sorted(records, key=lambda m: (m.timestamp, m.partition, m.offset))
    except KafkaError as exc:
        raise ConnectionError(f"Could not read {topic}: {exc}") from exc
    finally:
        await consumer.stop()
