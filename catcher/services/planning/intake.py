"""Intake: a trigger record from the triggers topic, decoded, checked and routed.

The record is Confluent-framed Avro; a trigger that decodes, validates and names a loaded
rule is planned: at once when the record is keyed by its rule and series (it is then in
the partition that owns the series), or by the owner of its series after the internal
series topic (keyed by rule and series) when another producer keyed it otherwise.
Anything else is rejected with :class:`Unprocessable` and dead-lettered by the guard; a
Schema Registry that cannot be reached is left to the guard to retry.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from ...avro import AvroCodec
from ...exceptions import RecordError, SchemaRegistryUnavailableError, Unprocessable
from ...models.alarms import AlarmCommandBatch
from ...models.enums import DeadLetterStage
from ...models.records import Trigger, TriggerMessage
from ...models.rules import RuleSet
from ...types import SendJson
from ..guard import describe

if TYPE_CHECKING:
    from .series import SeriesOwner

__all__ = ["Intake"]


class Intake:
    """Decodes trigger records and routes them to their series' owner."""

    def __init__(  # noqa: PLR0917 - the collaborators, each named at the call
        self,
        codec: AvroCodec,
        rules: RuleSet,
        send: SendJson,
        series_topic: str,
        rules_path: Path,
        planning: SeriesOwner,
    ) -> None:
        self._planning = planning
        self._codec = codec
        self._rules = rules
        self._send = send
        self._series_topic = series_topic
        self._rules_path = rules_path

    async def decode(self, value: Any) -> Trigger:
        """The trigger in a record's value, or :class:`Unprocessable` saying why not."""
        if not isinstance(value, bytes):
            raise Unprocessable(
                DeadLetterStage.decode,
                "Cannot decode the trigger: the record has no value (a tombstone?).",
                "RecordError",
            )
        try:
            return Trigger.from_avro(await self._codec.decode("triggers", value))
        except SchemaRegistryUnavailableError:
            raise  # not the record's fault: the guard retries it in place
        except RecordError as exc:
            raise Unprocessable(
                DeadLetterStage.decode, f"Cannot decode the trigger: {exc}", type(exc).__name__
            ) from exc
        except ValidationError as exc:
            raise Unprocessable(
                DeadLetterStage.decode,
                f"The trigger is not valid: {describe(exc)}",
                "ValidationError",
            ) from exc

    async def handle(self, key: Any, value: Any, partition: int) -> None:
        """Decode one record; plan it here when keyed by its series, else send it on.

        A record keyed by its rule and series (Catcher's own producers) is in the partition
        that owns the series, so it is planned at once, without the re-keying hop.
        """
        trigger = await self.decode(value)
        if self._rules.get(trigger.rule_id) is None:
            raise Unprocessable(
                DeadLetterStage.plan,
                f"No rule with id {trigger.rule_id!r} is loaded (rules from {self._rules_path}).",
                "UnknownRule",
                rule_id=trigger.rule_id,
                trigger_id=trigger.trigger_id,
            )
        if key == trigger.key:
            await self._planning.handle(trigger, partition)
            return
        await self._send(
            self._series_topic, trigger.series, TriggerMessage(trigger=trigger).to_json()
        )

    async def forward(self, batch: AlarmCommandBatch) -> None:
        """Send each command of an operator's request on to its alarm's owner.

        Done again from the start if interrupted; the owners ignore a command they have
        applied already (by its id).
        """
        for command in batch.commands:
            await self._send(self._series_topic, command.series, command.to_json())
