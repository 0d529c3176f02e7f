"""The internal topics' messages, told apart by ``kind``.

The series topic carries triggers (planned by the series' owner), operator commands for
the series' alarm, and batches of commands (one request on several alarms) to forward;
the action-requests topic carries planned actions and cancellations; the samples topic
carries telemetry samples re-keyed by series, and the telemetry readers' marks.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field, TypeAdapter

from .alarms import AlarmCommand, AlarmCommandBatch
from .records import ActionRequest, CancelRequest, TriggerMessage
from .telemetry import SampleBatch, TelemetryMark

__all__ = ["InternalMessage", "parse_internal"]

InternalMessage = (
    TriggerMessage
    | ActionRequest
    | CancelRequest
    | AlarmCommand
    | AlarmCommandBatch
    | SampleBatch
    | TelemetryMark
)
"""What travels on the internal topics, told apart by ``kind``."""

_INTERNAL: TypeAdapter[InternalMessage] = TypeAdapter(
    Annotated[InternalMessage, Field(discriminator="kind")]
)


def _legacy_kind(data: dict[str, Any]) -> str:
    """The kind of a message written before messages carried one."""
    if data.pop("cancel", None) is True:
        return "cancel"
    return "action_request" if "action_id" in data else "trigger"


def parse_internal(data: Any) -> InternalMessage:
    """An internal message from its JSON form (raises pydantic's ValidationError)."""
    if isinstance(data, dict) and "kind" not in data:
        data = dict(data)
        kind = _legacy_kind(data)
        data = {"kind": kind, "trigger": data} if kind == "trigger" else {"kind": kind, **data}
    return _INTERNAL.validate_python(data)
