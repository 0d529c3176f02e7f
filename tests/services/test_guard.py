"""The guard around every agent event: handled, retried in place, or dead-lettered."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from aiokafka.errors import KafkaConnectionError, MessageSizeTooLargeError

from catcher.exceptions import SchemaRegistryUnavailableError, Unprocessable
from catcher.models.enums import DeadLetterStage
from catcher.models.records import DeadLetter
from catcher.services.guard import Backoff, Guard, is_transient


@dataclass
class Message:
    topic: str = "lsst.catcher.triggers"
    partition: int = 2
    offset: int = 41
    key: bytes = b"k"
    value: bytes = b"\x00\x00\x00\x00\x01original"


def _guard(letters: list[DeadLetter], failures: list[Exception] | None = None) -> Guard:
    pending = list(failures or [])

    async def write(letter: DeadLetter) -> None:
        if pending:
            raise pending.pop(0)
        letters.append(letter)

    return Guard(write, lambda: Backoff(initial=0.001, maximum=0.002))


@pytest.mark.asyncio
async def test_a_transient_error_is_retried_in_place() -> None:
    letters: list[DeadLetter] = []
    calls = 0

    async def handler() -> None:
        nonlocal calls
        calls += 1
        if calls < 3:
            raise (KafkaConnectionError() if calls == 1 else SchemaRegistryUnavailableError("x"))

    await _guard(letters).run(Message(), DeadLetterStage.decode, handler)
    assert calls == 3
    assert letters == []


@pytest.mark.asyncio
async def test_any_other_error_dead_letters_the_record_with_a_short_reason() -> None:
    letters: list[DeadLetter] = []

    async def handler() -> None:
        raise RuntimeError("boom " + "x" * 5000)

    await _guard(letters).run(Message(), DeadLetterStage.plan, handler)
    (letter,) = letters
    assert letter.stage == DeadLetterStage.plan
    assert letter.error_type == "RuntimeError"
    assert letter.reason.startswith(
        "Cannot handle a record of lsst.catcher.triggers: RuntimeError"
    )
    assert len(letter.reason) <= 400
    assert (letter.topic, letter.partition, letter.offset) == ("lsst.catcher.triggers", 2, 41)
    assert (letter.key, letter.value) == (b"k", b"\x00\x00\x00\x00\x01original")


@pytest.mark.asyncio
async def test_a_broker_error_on_the_dead_letter_send_is_retried_not_dropped() -> None:
    letters: list[DeadLetter] = []
    guard = _guard(letters, failures=[KafkaConnectionError(), MessageSizeTooLargeError()])

    async def handler() -> None:
        raise Unprocessable(
            DeadLetterStage.plan, "No rule.", "UnknownRule", rule_id="r", trigger_id="t"
        )

    await guard.run(Message(), DeadLetterStage.decode, handler)
    (letter,) = letters
    assert (letter.stage, letter.reason, letter.rule_id) == (DeadLetterStage.plan, "No rule.", "r")


def test_what_is_transient() -> None:
    assert is_transient(KafkaConnectionError())
    assert is_transient(TimeoutError())
    assert is_transient(SchemaRegistryUnavailableError("down"))
    assert not is_transient(MessageSizeTooLargeError())
    assert not is_transient(ValueError("bad"))
