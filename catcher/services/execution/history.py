"""What operators do with Catcher's topics: publish a trigger, read the history."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime

from ... import topics
from ...avro import AvroCodec
from ...config import Config
from ...kafka import TopicFollower, ensure_topics, make_producer, read_topic
from ...models.records import ActionEvent, CancelRequest, Trigger

__all__ = [
    "latest_states",
    "publish_trigger",
    "read_history",
    "request_cancel",
    "wait_for_final_state",
]


async def publish_trigger(config: Config, trigger: Trigger) -> None:
    """Produce one trigger to the triggers topic (Avro, key trigger_id)."""
    if config.create_topics:
        await ensure_topics(config, [topics.TRIGGERS])
    codec = AvroCodec(config.schema_registry_url, config.topic_prefix)
    value = await codec.encode("triggers", trigger.to_avro())
    producer = make_producer(config)
    await producer.start()
    try:
        await producer.send_and_wait(config.triggers_topic, value, key=trigger.key)
    finally:
        await producer.stop()


async def read_history(config: Config, since: datetime | None = None) -> list[ActionEvent]:
    """The action events on the history topic written since ``since``, oldest first.

    The start is found through the broker's offsets for that time, never by reading the
    topic from its beginning.
    """
    codec = AvroCodec(config.schema_registry_url, config.topic_prefix)
    events = []
    for message in await read_topic(config, config.actions_topic, since=since):
        record = await codec.decode("actions", message.value)
        events.append(ActionEvent.model_validate(record))
    return sorted(events, key=lambda e: e.time)


async def wait_for_final_state(
    config: Config, action_id: str, start: Callable[[], Awaitable[None]], wait: float
) -> ActionEvent | None:
    """Run ``start`` (e.g. send a cancel), then follow the history until the action ends.

    Only new events are read, as they arrive; None when ``wait`` seconds pass first.
    """
    codec = AvroCodec(config.schema_registry_url, config.topic_prefix)
    follower = await TopicFollower(config, config.actions_topic).start()
    try:
        await start()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait
        while (left := deadline - loop.time()) > 0:
            for message in await follower.next(min(left, 1.0)):
                if message.key != action_id.encode():
                    continue
                event = ActionEvent.model_validate(await codec.decode("actions", message.value))
                if event.state.terminal:
                    return event
        return None
    finally:
        await follower.stop()


def latest_states(events: Sequence[ActionEvent]) -> list[ActionEvent]:
    """The latest event of each action, oldest action first."""
    latest: dict[str, ActionEvent] = {}
    for event in events:
        latest[event.action_id] = event
    return sorted(latest.values(), key=lambda e: e.time)


async def request_cancel(config: Config, action_id: str, requested_by: str) -> None:
    """Ask the worker that owns the action to stop it."""
    request = CancelRequest(action_id=action_id, requested_by=requested_by)
    producer = make_producer(config)
    await producer.start()
    try:
        await producer.send_and_wait(
            config.action_requests_topic,
            json.dumps(request.to_json()).encode(),
            key=action_id.encode(),
        )
    finally:
        await producer.stop()
