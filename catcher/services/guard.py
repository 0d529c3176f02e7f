"""No record let go unhandled: the one guard around every event of every agent.

An agent that raises loses its record (Faust acknowledges the event in flight when an
agent crashes), so every handler runs inside :meth:`Guard.run`:

- a transient error (the broker or the Schema Registry unreachable, a timeout) is retried
  in place with backoff, and the record stays unacknowledged until it is handled;
- :class:`Unprocessable` (a record the handler rejects on purpose) and any other error
  dead-letter the record with a short reason and its original bytes, and the agent moves
  on; a dead letter that cannot be written is itself retried, never dropped.

:func:`keep_trying` is the same retry loop for background work (schema registration, the
mirror, periodic scans): it logs and tries again, and never stops the worker.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import structlog
from aiokafka.errors import KafkaError, KafkaTimeoutError
from pydantic import ValidationError

from ..exceptions import SchemaRegistryUnavailableError, Unprocessable
from ..models.enums import DeadLetterStage
from ..models.records import DeadLetter
from ..redact import brief

__all__ = ["Backoff", "Guard", "describe", "is_transient", "keep_trying"]

logger = structlog.get_logger("catcher")


def is_transient(exc: BaseException) -> bool:
    """Whether asking again later may succeed: broker or registry unreachable, timeouts."""
    if isinstance(exc, KafkaError):
        return bool(exc.retriable) or isinstance(exc, KafkaTimeoutError)
    return isinstance(exc, SchemaRegistryUnavailableError | ConnectionError | TimeoutError)


def describe(exc: BaseException) -> str:
    """A short, safe sentence for an error (pydantic errors by their first problem)."""
    if isinstance(exc, ValidationError):
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
        return brief(f"{first['msg']} at {where or 'the top level'}{more}")
    return brief(f"{type(exc).__name__}: {exc}")


@dataclass
class Backoff:
    """Exponential delays for retrying in place."""

    initial: float = 0.5
    maximum: float = 30.0
    delay: float = field(init=False, default=0.0)

    async def wait(self) -> float:
        """Sleep for the next delay; returns it."""
        self.delay = min(self.maximum, self.delay * 2 if self.delay else self.initial)
        await asyncio.sleep(self.delay)
        return self.delay


async def keep_trying(
    what: str, call: Callable[[], Awaitable[Any]], *, backoff: Backoff | None = None
) -> Any:
    """Call until it succeeds; every failure is logged and retried with backoff."""
    backoff = backoff or Backoff()
    while True:
        try:
            return await call()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - background work must never stop the worker
            delay = await backoff.wait()
            logger.warning(
                "Work failed; trying again", work=what, error=describe(exc), delay=delay
            )


DeadLetterWriter = Callable[[DeadLetter], Awaitable[None]]


class Guard:
    """Runs one handler per event so that every record is handled or dead-lettered."""

    def __init__(self, dead_letter: DeadLetterWriter, backoff: Callable[[], Backoff]) -> None:
        self._dead_letter = dead_letter
        self._backoff = backoff

    async def run(
        self,
        message: Any,
        stage: DeadLetterStage,
        handler: Callable[[], Awaitable[None]],
    ) -> None:
        """Handle the record of ``message``; return once it is handled or dead-lettered."""
        backoff = self._backoff()
        while True:
            try:
                await handler()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - the point: nothing escapes unhandled
                if is_transient(exc):
                    delay = await backoff.wait()
                    logger.warning(
                        "Could not handle a record for now; trying again",
                        topic=message.topic,
                        partition=message.partition,
                        offset=message.offset,
                        error=describe(exc),
                        delay=delay,
                    )
                    continue
                await self._reject(message, stage, exc)
            return

    async def _reject(self, message: Any, stage: DeadLetterStage, exc: Exception) -> None:
        if isinstance(exc, Unprocessable):
            letter = DeadLetter(
                stage=exc.stage,
                reason=exc.reason,
                error_type=exc.error_type,
                rule_id=exc.rule_id,
                trigger_id=exc.trigger_id,
                **_original(message),
            )
        else:
            if not isinstance(exc, ValidationError | ValueError | KeyError | TypeError):
                logger.error("Unexpected error while handling a record", exc_info=exc)
            letter = DeadLetter(
                stage=stage,
                reason=f"Cannot handle a record of {message.topic}: {describe(exc)}",
                error_type=type(exc).__name__,
                **_original(message),
            )
        await keep_trying("Writing a dead letter", lambda: self._dead_letter(letter))


def _original(message: Any) -> dict[str, Any]:
    return {
        "topic": message.topic,
        "partition": message.partition,
        "offset": message.offset,
        "key": message.key if isinstance(message.key, bytes) else None,
        "value": message.value if isinstance(message.value, bytes) else None,
    }
