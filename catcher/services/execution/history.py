"""What operators do with Catcher's topics.

Publish a trigger, read and follow the history, ask for a cancel, read past triggers and
send action requests (replay).

One :class:`OperatorTopics` per command, from :meth:`catcher.factory.Factory.operator_topics`
(its Avro codec is shared, so the registry is asked for each schema once).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from datetime import datetime
from typing import Any

from ... import topics
from ...avro import AvroCodec
from ...config import Config
from ...kafka import TopicFollower, ensure_topics, make_producer, read_topic
from ...models.records import ActionEvent, CancelRequest, Trigger

__all__ = ["OperatorTopics", "latest_states"]


class OperatorTopics:
    """Reads and writes Catcher's topics on an operator's behalf."""

    def __init__(self, config: Config, codec: AvroCodec) -> None:
        self._config = config
        self._codec = codec

    async def publish_trigger(self, trigger: Trigger) -> None:
        """Produce one trigger to the triggers topic (Avro, keyed by its series)."""
        if self._config.create_topics:
            await ensure_topics(self._config, [topics.TRIGGERS])
        value = await self._codec.encode("triggers", trigger.to_avro())
        await self.send(self._config.triggers_topic, [(trigger.key, value)])

    async def send(self, topic: str, records: Iterable[tuple[bytes, bytes]]) -> int:
        """Produce records (key, value) in order, each acknowledged; returns how many."""
        producer = make_producer(self._config)
        await producer.start()
        sent = 0
        try:
            for key, value in records:
                await producer.send_and_wait(topic, value, key=key)
                sent += 1
        finally:
            await producer.stop()
        return sent

    async def send_json(self, topic: str, records: Iterable[tuple[str, dict[str, Any]]]) -> int:
        """Produce JSON records (key, value) in order; returns how many."""
        return await self.send(
            topic, ((key.encode(), json.dumps(value).encode()) for key, value in records)
        )

    async def read_history(self, since: datetime | None = None) -> list[ActionEvent]:
        """The action events on the history topic written since ``since``, oldest first.

        The start is found through the broker's offsets for that time, never by reading the
        topic from its beginning.
        """
        messages = await read_topic(self._config, self._config.actions_topic, since=since)
        events = [await self._event(message.value) for message in messages]
        return sorted(events, key=lambda e: e.time)

    async def sent_events(
        self, since: datetime, action_ids: set[str]
    ) -> set[tuple[str, str, int, int]]:
        """(action id, state, attempt, time in ms) of the actions' events since ``since``.

        Only the events of ``action_ids`` are decoded (the key is the action id); what
        cannot be decoded is left out, as if it had not been sent.
        """
        found: set[tuple[str, str, int, int]] = set()
        for message in await read_topic(self._config, self._config.actions_topic, since=since):
            if message.key is None or message.key.decode(errors="replace") not in action_ids:
                continue
            try:
                event = await self._event(message.value)
            except Exception:  # noqa: BLE001, S112 - unreadable: treated as not sent
                continue
            ms = round(event.time.timestamp() * 1000)
            found.add((event.action_id, event.state.value, event.attempt, ms))
        return found

    async def read_triggers(self, since: datetime) -> list[Trigger]:
        """The triggers written since ``since``.

        What cannot be decoded is left out: the worker dead-lettered it.
        """
        found = []
        for message in await read_topic(self._config, self._config.triggers_topic, since=since):
            if message.value is None:
                continue
            try:
                record = await self._codec.decode("triggers", message.value)
                found.append(Trigger.from_avro(record))
            except Exception:  # noqa: BLE001, S112 - the worker dead-lettered it: not replayed
                continue
        return found

    async def follow_history(self, since: datetime) -> AsyncIterator[ActionEvent]:
        """The history since ``since``, then each new event as it arrives (forever)."""
        follower = await TopicFollower(self._config, self._config.actions_topic).start()
        try:
            for event in await self.read_history(since):
                if event.time >= since:
                    yield event
            while True:
                for message in await follower.next(1.0):
                    yield await self._event(message.value)
        finally:
            await follower.stop()

    async def wait_for_final_state(
        self, action_id: str, start: Callable[[], Awaitable[None]], wait: float
    ) -> ActionEvent | None:
        """Run ``start`` (e.g. send a cancel), then follow the history until the action ends.

        Only new events are read, as they arrive; None when ``wait`` seconds pass first.
        """
        follower = await TopicFollower(self._config, self._config.actions_topic).start()
        try:
            await start()
            loop = asyncio.get_running_loop()
            deadline = loop.time() + wait
            while (left := deadline - loop.time()) > 0:
                for message in await follower.next(min(left, 1.0)):
                    if message.key != action_id.encode():
                        continue
                    event = await self._event(message.value)
                    if event.state.terminal:
                        return event
            return None
        finally:
            await follower.stop()

    async def request_cancel(self, action_id: str, requested_by: str) -> None:
        """Ask the worker that owns the action to stop it."""
        request = CancelRequest(action_id=action_id, requested_by=requested_by)
        await self.send_json(self._config.action_requests_topic, [(action_id, request.to_json())])

    async def _event(self, value: bytes | None) -> ActionEvent:
        return ActionEvent.model_validate(await self._codec.decode("actions", value or b""))


def latest_states(events: Sequence[ActionEvent]) -> list[ActionEvent]:
    """The latest event of each action, oldest action first."""
    latest: dict[str, ActionEvent] = {}
    for event in events:
        latest[event.action_id] = event
    return sorted(latest.values(), key=lambda e: e.time)
