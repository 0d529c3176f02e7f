"""Records that travel on Catcher's topics and live in its tables."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from typing import Any, Literal
from urllib.parse import quote

from pydantic import BaseModel, ConfigDict, Field, field_validator

from .enums import ActionState, DeadLetterStage, Severity, TriggerSource

__all__ = [
    "ActionEvent",
    "ActionRequest",
    "CancelRequest",
    "DeadLetter",
    "LedgerEntry",
    "ReplayInfo",
    "SeriesState",
    "Trigger",
    "TriggerMessage",
    "isoformat",
    "make_action_id",
    "make_trigger_id",
    "series_id",
    "series_key",
    "utcnow",
]


MAX_REASON = 1000
"""Longest reason a dead letter carries, in characters."""
MAX_KEY = 1024
"""Longest original key a truncated dead letter carries, in bytes."""


def utcnow() -> datetime:
    """The current time, timezone-aware UTC."""
    return datetime.now(tz=UTC)


def isoformat(time: datetime | None) -> str | None:
    """ISO 8601 UTC with a Z suffix, or None."""
    if time is None:
        return None
    return time.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _escaped(text: str) -> str:
    """Text with the separators of series keys and alarm names percent-encoded.

    ``%``, ``,``, ``=``, ``|``, ``:``, whitespace and anything not ASCII are escaped, so
    that ``{salIndex: "1,x=2"}`` and ``{salIndex: "1", x: "2"}`` are different series, and
    an alarm name never holds a space.
    """
    return quote(text, safe="/")


def series_key(tags: dict[str, str]) -> str:
    """Canonical text of a series' tags: ``k=v`` pairs sorted by key, comma-separated.

    Keys and values are escaped (:func:`_escaped`): distinct tags give distinct keys.
    """
    return ",".join(f"{_escaped(k)}={_escaped(tags[k])}" for k in sorted(tags))


def series_id(rule_id: str, tags: dict[str, str]) -> str:
    """A rule's series: ``rule|k=v,...``, the key that makes one worker own a series.

    Triggers, alarm commands and the stream engine's state are keyed by it, so that a
    command reaches the worker that owns its alarm.
    """
    return f"{rule_id}|{series_key(tags)}"


def make_trigger_id(rule_id: str, time: datetime, tags: dict[str, str]) -> str:
    """Deterministic trigger id: the same rule, series and evaluation time give the same id."""
    micros = int(time.timestamp() * 1_000_000)
    canonical = json.dumps([rule_id, micros, sorted(tags.items())], separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:32]


def make_action_id(trigger_id: str, action_name: str, generation: int = 0) -> str:
    """Action id: the trigger id, the action's name and, for forced re-runs, the generation."""
    action_id = f"{trigger_id}.{action_name}"
    return f"{action_id}.g{generation}" if generation else action_id


def _aware(value: datetime | None) -> datetime | None:
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value


class Trigger(BaseModel):
    """One evaluation of a rule for one series (the ``triggers`` topic).

    Its value is finite: actions carry it in JSON, which has no NaN or infinity.
    """

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    trigger_id: str = Field(min_length=1)
    rule_id: str = Field(min_length=1)
    time: datetime
    severity: Severity
    reason: str
    value: float | None = None
    tags: dict[str, str] = Field(default_factory=dict)
    source: TriggerSource
    window_start: datetime | None = None
    window_stop: datetime | None = None
    generation: int = Field(0, ge=0)

    _aware_times = field_validator("time", "window_start", "window_stop")(_aware)

    @field_validator("severity", mode="before")
    @classmethod
    def _severity_by_name(cls, value: Any) -> Any:
        return Severity.parse(value) if isinstance(value, str) else value

    @classmethod
    def create(
        cls,
        rule_id: str,
        severity: Severity,
        *,
        reason: str,
        source: TriggerSource,
        time: datetime | None = None,
        tags: dict[str, str] | None = None,
        value: float | None = None,
        window_start: datetime | None = None,
        window_stop: datetime | None = None,
    ) -> Trigger:
        """Build a trigger, deriving its id from the rule, the series and the time."""
        time = time or utcnow()
        tags = dict(tags or {})
        return cls(
            trigger_id=make_trigger_id(rule_id, time, tags),
            rule_id=rule_id,
            time=time,
            severity=severity,
            reason=reason,
            value=value,
            tags=tags,
            source=source,
            window_start=window_start,
            window_stop=window_stop,
        )

    @property
    def series(self) -> str:
        """Key of the rule and series this trigger belongs to."""
        return series_id(self.rule_id, self.tags)

    @property
    def key(self) -> bytes:
        """Kafka key of the trigger record: its rule and series.

        A record so keyed lands in the partition that plans its series and is planned
        there; one keyed otherwise (by another producer) is re-keyed through the internal
        series topic first.
        """
        return self.series.encode()

    def to_avro(self) -> dict[str, Any]:
        """The record as fastavro writes it."""
        record = self.model_dump()
        record["severity"] = self.severity.name
        record["source"] = self.source.value
        return record

    @classmethod
    def from_avro(cls, record: dict[str, Any]) -> Trigger:
        """The record as fastavro reads it."""
        return cls.model_validate(record)

    def to_json(self) -> dict[str, Any]:
        """JSON-ready form, with the severity by name."""
        data = self.model_dump(mode="json")
        data["severity"] = self.severity.name
        return data

    def template_context(self) -> dict[str, Any]:
        """Values the placeholders of an action may use (without the action's own)."""
        return {
            "rule_id": self.rule_id,
            "trigger_id": self.trigger_id,
            "severity": self.severity.name,
            "reason": self.reason,
            "value": self.value,
            "time": isoformat(self.time),
            "window_start": isoformat(self.window_start),
            "window_stop": isoformat(self.window_stop),
            "source": self.source.value,
            "generation": self.generation,
            "tags": dict(self.tags),
        }


class TriggerMessage(BaseModel):
    """A trigger on its way to the owner of its rule and series (internal series topic)."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["trigger"] = "trigger"
    trigger: Trigger

    def to_json(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {"kind": self.kind, "trigger": self.trigger.to_json()}


class ReplayInfo(BaseModel):
    """Who replayed an action, and why (``catcher replay``)."""

    model_config = ConfigDict(extra="forbid")

    by: str = Field(min_length=1)
    reason: str = ""
    forced: bool = Field(False, description="A re-run under a new generation.")


class ActionRequest(BaseModel):
    """An action the planner decided to start, or a replay (internal action-request topic)."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["action_request"] = "action_request"
    action_id: str
    action_name: str
    trigger: Trigger
    replay: ReplayInfo | None = None

    def to_json(self) -> dict[str, Any]:
        """JSON-ready form."""
        data: dict[str, Any] = {
            "kind": self.kind,
            "action_id": self.action_id,
            "action_name": self.action_name,
            "trigger": self.trigger.to_json(),
        }
        if self.replay is not None:
            data["replay"] = self.replay.model_dump()
        return data


class CancelRequest(BaseModel):
    """An operator's request to stop an action (internal action-request topic)."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["cancel"] = "cancel"
    action_id: str
    requested_by: str = Field(min_length=1)

    def to_json(self) -> dict[str, Any]:
        """JSON-ready form."""
        return self.model_dump(mode="json")


class LedgerEntry(BaseModel):
    """What Catcher knows of one action; the ledger table maps action_id to this."""

    model_config = ConfigDict(extra="forbid")

    action_id: str
    action_name: str
    action_type: str
    trigger: Trigger
    partition: int = Field(
        description="Partition of the action-request topic (and ledger changelog) it lives in."
    )
    state: ActionState
    attempt: int = 0
    updated: datetime = Field(default_factory=utcnow)
    started: datetime = Field(default_factory=utcnow)
    submitted: datetime | None = Field(None, description="When the job was accepted.")
    job_id: str | None = None
    link: str | None = None
    message: str | None = None
    cancel_requested: bool = False
    published: bool = Field(
        False,
        description="Whether the history event of this state is known to be on the actions"
        " topic; when not, it is sent again.",
    )

    def to_json(self) -> dict[str, Any]:
        """JSON-ready form, as stored in the changelog."""
        data = self.model_dump(mode="json")
        data["trigger"] = self.trigger.to_json()
        return data


class ActionEvent(BaseModel):
    """One state change of one action (the ``actions`` topic)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    action_id: str
    trigger_id: str
    rule_id: str
    action_name: str
    action_type: str
    state: ActionState
    attempt: int
    time: datetime
    severity: str
    message: str | None = None
    link: str | None = None
    job_id: str | None = None
    generation: int = 0

    _aware_time = field_validator("time")(_aware)

    @classmethod
    def from_entry(cls, entry: LedgerEntry) -> ActionEvent:
        """The event that records the entry's current state."""
        return cls(
            action_id=entry.action_id,
            trigger_id=entry.trigger.trigger_id,
            rule_id=entry.trigger.rule_id,
            action_name=entry.action_name,
            action_type=entry.action_type,
            state=entry.state,
            attempt=entry.attempt,
            time=entry.updated,
            severity=entry.trigger.severity.name,
            message=entry.message,
            link=entry.link,
            job_id=entry.job_id,
            generation=entry.trigger.generation,
        )

    def to_avro(self) -> dict[str, Any]:
        """The record as fastavro writes it."""
        record = self.model_dump()
        record["state"] = self.state.value
        return record


class DeadLetter(BaseModel):
    """A record Catcher could not decode, plan or carry out (the ``deadletter`` topic)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    time: datetime = Field(default_factory=utcnow)
    stage: DeadLetterStage
    reason: str
    error_type: str
    topic: str | None = None
    partition: int | None = None
    offset: int | None = None
    key: bytes | None = None
    value: bytes | None = None
    rule_id: str | None = None
    trigger_id: str | None = None
    action_id: str | None = None
    value_truncated: bool = False
    value_size: int | None = None

    _aware_time = field_validator("time")(_aware)

    @field_validator("reason")
    @classmethod
    def _short_reason(cls, value: str) -> str:
        return value if len(value) <= MAX_REASON else value[: MAX_REASON - 3] + "..."

    def truncated(self, room: int) -> DeadLetter:
        """A copy whose value keeps only its first bytes, so that the letter fits ``room``."""
        if self.value is None or len(self.value) <= room:
            return self
        return self.model_copy(
            update={
                "key": self.key[:MAX_KEY] if self.key else self.key,
                "value": self.value[: max(room, 0)],
                "value_truncated": True,
                "value_size": len(self.value),
                "reason": f"{self.reason} (The original value of {len(self.value)} bytes was"
                f" too large to carry whole; the first {max(room, 0)} are kept.)",
            }
        )

    def to_avro(self) -> dict[str, Any]:
        """The record as fastavro writes it."""
        record = self.model_dump()
        record["stage"] = self.stage.value
        return record


class SeriesState(BaseModel):
    """The planner's memory of one rule and series (the series-state table)."""

    model_config = ConfigDict(extra="forbid")

    severity: Severity = Severity.NONE
    time: datetime | None = None
    last_trigger_id: str | None = None
    last_actions: list[str] = Field(
        default_factory=list,
        description="Names of the actions planned for the last trigger; planned again if the"
        " same trigger is delivered again (the ledger makes that harmless).",
    )
    last_fired: dict[str, datetime] = Field(
        default_factory=dict, description="Per action name, when it last started (cooldown)."
    )

    def to_json(self) -> dict[str, Any]:
        """JSON-ready form, as stored in the changelog."""
        return self.model_dump(mode="json")
