"""Enumerations shared by rules, records and the ledger."""

from __future__ import annotations

from enum import IntEnum, StrEnum
from typing import Annotated, Any

from pydantic import BeforeValidator

__all__ = [
    "ActionState",
    "DeadLetterStage",
    "Edge",
    "Severity",
    "SeverityField",
    "TriggerSource",
]


class Severity(IntEnum):
    """The Watcher's severity scale; NONE means nominal (recovered)."""

    NONE = 1
    WARNING = 2
    SERIOUS = 3
    CRITICAL = 4

    @classmethod
    def parse(cls, name: str) -> Severity:
        """Severity from its name, case-insensitively."""
        try:
            return cls[name.strip().upper()]
        except KeyError:
            choices = ", ".join(s.name for s in cls)
            raise ValueError(f"Unknown severity {name!r}; use one of {choices}.") from None


class Edge(StrEnum):
    """Which changes of severity start an action."""

    rising = "rising"
    falling = "falling"
    any = "any"


class TriggerSource(StrEnum):
    """What produced a trigger."""

    flux = "flux"
    stream = "stream"
    manual = "manual"
    mirror = "mirror"


class ActionState(StrEnum):
    """States of an action in the ledger and the history topic."""

    queued = "queued"
    submitting = "submitting"
    retrying = "retrying"
    submitted = "submitted"
    succeeded = "succeeded"
    failed = "failed"
    suppressed = "suppressed"
    cancelled = "cancelled"
    expired = "expired"

    @property
    def terminal(self) -> bool:
        """Whether the action is finished and must never run again."""
        return self in (
            ActionState.succeeded,
            ActionState.failed,
            ActionState.suppressed,
            ActionState.cancelled,
            ActionState.expired,
        )


class DeadLetterStage(StrEnum):
    """Where a dead-lettered record failed."""

    decode = "decode"
    plan = "plan"
    execute = "execute"


def _severity_from_text(value: Any) -> Any:
    return Severity.parse(value) if isinstance(value, str) else value


SeverityField = Annotated[Severity, BeforeValidator(_severity_from_text)]
"""A severity a rule may write by name, in any case (``warning``, ``CRITICAL``)."""
