"""Writes history events and dead letters to their topics, in Avro."""

from __future__ import annotations

import structlog

from ...avro import AvroCodec
from ...metrics import METRICS
from ...models.enums import ActionState
from ...models.records import ActionEvent, DeadLetter, LedgerEntry
from ...redact import mask
from ...types import Send
from ..guard import keep_trying

__all__ = ["Publisher"]

logger = structlog.get_logger("catcher")

_HEADROOM = 1024
"""Bytes kept free in a request for the record's framing and headers."""


class Publisher:
    """History (one event per state change) and dead letters."""

    def __init__(
        self,
        codec: AvroCodec,
        send: Send,
        actions_topic: str,
        deadletter_topic: str,
        *,
        max_record_size: int = 1048576,
        triggers_topic: str = "",
    ) -> None:
        self._codec = codec
        self._send = send
        self._actions_topic = actions_topic
        self._deadletter_topic = deadletter_topic
        self._max_record_size = max_record_size
        self._triggers_topic = triggers_topic

    async def action_event(self, event: ActionEvent) -> None:
        """Record one state change of an action (registered secrets masked)."""
        if event.message:
            event = event.model_copy(update={"message": mask(event.message)})
        METRICS.action_events.labels(event.action_type, event.state.value).inc()
        if event.state == ActionState.submitting:
            METRICS.attempts.labels(event.action_type).inc()
        elif event.state == ActionState.retrying:
            METRICS.retries.labels(event.action_type).inc()
        value = await self._codec.encode("actions", event.to_avro())
        await self._send(self._actions_topic, event.action_id.encode(), value)

    async def entry_changed(self, entry: LedgerEntry) -> None:
        """Record the ledger entry's new state."""
        if entry.state == ActionState.submitting and entry.attempt == 1:
            latency = (entry.updated - entry.trigger.time).total_seconds()
            METRICS.start_latency.labels(entry.action_type).observe(max(latency, 0.0))
        await self.action_event(ActionEvent.from_entry(entry))

    async def action_failed(self, letter: DeadLetter, entry: LedgerEntry) -> None:
        """Dead-letter a failed action with its trigger, so that it can be replayed.

        The trigger is encoded again as the triggers topic holds it and keyed as Catcher
        keys triggers; a broker that does not answer is waited for, never given up on.
        """

        async def write() -> None:
            value = await self._codec.encode("triggers", entry.trigger.to_avro())
            await self.dead_letter(
                letter.model_copy(
                    update={
                        "topic": self._triggers_topic,
                        "key": entry.trigger.key,
                        "value": value,
                    }
                )
            )

        await keep_trying("Writing the dead letter of a failed action", write)

    async def dead_letter(self, letter: DeadLetter) -> None:
        """Record what could not be decoded, planned or done, and why.

        A letter too large for one record carries the first bytes of the original value;
        registered secrets are masked in the reason.
        """
        letter = letter.model_copy(update={"reason": mask(letter.reason)})
        key = (letter.action_id or letter.trigger_id or "").encode() or (letter.key or b"")[:256]
        value = await self._codec.encode("deadletter", letter.to_avro())
        if len(key) + len(value) + _HEADROOM > self._max_record_size:
            bare = await self._codec.encode(
                "deadletter", letter.model_copy(update={"value": None}).to_avro()
            )
            room = self._max_record_size - _HEADROOM * 2 - len(key) - len(bare)
            letter = letter.truncated(room)
            value = await self._codec.encode("deadletter", letter.to_avro())
        await self._send(self._deadletter_topic, key, value)
        METRICS.dead_letters.labels(letter.stage.value).inc()
        logger.warning(
            "Sent a record to the dead letter topic",
            stage=letter.stage.value,
            reason=letter.reason,
            topic=letter.topic,
            partition=letter.partition,
            offset=letter.offset,
            trigger_id=letter.trigger_id,
            action_id=letter.action_id,
            value_truncated=letter.value_truncated,
        )
