"""Alarms: one per rule and series, with the Watcher's fields and semantics.

An :class:`Alarm` is the whole state of one alarm, as the alarm table and the alarms topic
hold it. Timers are due times in the state (``auto_acknowledge_at``, ``auto_unacknowledge_at``,
``unmute_at``, ``escalate_at``), fired by the owner's periodic scan, so that they survive a
restart. The transitions are pure functions in :mod:`catcher.services.alarms.machine`.
"""

from __future__ import annotations

import fnmatch
import re
import uuid
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Annotated, Any, Literal, Self

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    WithJsonSchema,
    field_serializer,
    field_validator,
    model_validator,
)

from .durations import Duration
from .enums import Severity
from .patterns import Pattern, full_match
from .records import series_id, series_key, utcnow

__all__ = [
    "MAX_COMMAND_ALARMS",
    "MAX_MUTE",
    "RECENT_COMMANDS",
    "Alarm",
    "AlarmCommand",
    "AlarmCommandBatch",
    "AlarmSettings",
    "CommandKind",
    "DisplayState",
    "Escalation",
    "RuleState",
    "Silence",
    "SilenceState",
    "alarm_name",
    "escalation_event_id",
]

MAX_MUTE = timedelta(days=366)
"""The longest mute or silence an operator may set."""

SEVERITY_NAMES = [s.name for s in Severity]

SeverityName = Annotated[
    Severity,
    BeforeValidator(lambda v: Severity.parse(v) if isinstance(v, str) else v),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "string", "enum": SEVERITY_NAMES},
                {"type": "integer", "enum": [s.value for s in Severity]},
            ],
            "description": "A severity by name (any case) or number (1 to 4).",
        },
        mode="validation",
    ),
]
"""A severity given by name (``CRITICAL``) or number (4)."""

_NAMESPACE = uuid.UUID("0c6b2f7e-5c1a-4f51-9a51-6c2f0e1f4a10")


def alarm_name(rule_id: str, tags: dict[str, str]) -> str:
    """``<rule id>``, or ``<rule id>:<series>`` when the rule groups by tags."""
    series = series_key(tags)
    return f"{rule_id}:{series}" if series else rule_id


def escalation_event_id(name: str, since: datetime) -> str:
    """The incident's ``event_id``: the same alarm and escalation always give the same id."""
    return str(uuid.uuid5(_NAMESPACE, f"{name}|{since.isoformat()}"))


class Escalation(BaseModel):
    """Who is paged, and after how long, when a CRITICAL alarm stays unacknowledged."""

    model_config = ConfigDict(extra="forbid")

    responder: str = Field(min_length=1, description="SquadCast responder (team or person).")
    delay: Duration = Field(description="How long the alarm may stay CRITICAL first.")

    @field_validator("delay")
    @classmethod
    def _positive(cls, value: timedelta) -> timedelta:
        if value <= timedelta(0):
            raise ValueError("must be longer than zero")
        return value


MAX_GLOB = 500
"""Longest glob of an escalation table."""


class EscalationRoute(BaseModel):
    """An entry of a rules file's ``escalation`` table: alarms by name glob, and who is paged.

    As the Watcher's escalation table: the first entry with a glob matching an alarm's
    name pages its responder after its delay; a rule's own ``alarm.escalate`` comes first.
    """

    model_config = ConfigDict(extra="forbid")

    alarms: list[str] = Field(
        min_length=1,
        max_length=100,
        description="Globs over whole alarm names (`*`, `?`, `[...]`, case ignored), e.g."
        " `m1m3-*`.",
    )
    responder: str = Field(min_length=1, description="SquadCast responder (team or person).")
    delay: Duration = Field(description="How long the alarm may stay CRITICAL first.")
    _globs_compiled: list[re.Pattern[str]] | None = PrivateAttr(None)

    @field_validator("alarms")
    @classmethod
    def _globs(cls, value: list[str]) -> list[str]:
        for glob in value:
            if not glob or len(glob) > MAX_GLOB:
                raise ValueError(f"each glob is 1 to {MAX_GLOB} characters")
        return value

    @field_validator("delay")
    @classmethod
    def _positive(cls, value: timedelta) -> timedelta:
        if value <= timedelta(0):
            raise ValueError("must be longer than zero")
        return value

    def covers(self, name: str) -> bool:
        """Whether a glob matches the whole name, case ignored (as in the Watcher's table)."""
        return any(glob.match(name) is not None for glob in self._compiled())

    def _compiled(self) -> list[re.Pattern[str]]:
        if self._globs_compiled is None:
            self._globs_compiled = [
                re.compile(fnmatch.translate(glob), re.IGNORECASE) for glob in self.alarms
            ]
        return self._globs_compiled

    def escalation(self) -> Escalation:
        """The escalation of the alarms it covers."""
        return Escalation(responder=self.responder, delay=self.delay)


class AlarmSettings(BaseModel):
    """A rule's ``alarm`` block: the timers of its alarms and their escalation."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = Field(True, description="Whether the rule raises alarms at all.")
    auto_acknowledge_delay: Duration = Field(
        timedelta(hours=1),
        description="A stale alarm (back to NONE, never acknowledged) is acknowledged after"
        " this long; 0 turns it off.",
    )
    auto_unacknowledge_delay: Duration = Field(
        timedelta(hours=1),
        description="An acknowledged alarm still active is unacknowledged after this long;"
        " 0 turns it off.",
    )
    escalate: Escalation | None = Field(
        None, description="Page a responder when the alarm stays CRITICAL and unacknowledged."
    )

    @field_validator("auto_acknowledge_delay", "auto_unacknowledge_delay")
    @classmethod
    def _not_negative(cls, value: timedelta) -> timedelta:
        if value < timedelta(0):
            raise ValueError("must not be negative")
        return value


class DisplayState(StrEnum):
    """The Watcher's display states."""

    nominal = "nominal"
    active = "active"
    semi_active = "semi-active"
    stale = "stale"


class Alarm(BaseModel):
    """The state of one alarm (the Watcher's alarm event, plus Catcher's fields)."""

    model_config = ConfigDict(extra="ignore")

    name: str
    rule_id: str
    tags: dict[str, str] = Field(default_factory=dict)
    severity: Severity = Severity.NONE
    reason: str = ""
    max_severity: Severity = Severity.NONE
    acknowledged: bool = False
    acknowledged_by: str = ""
    muted_severity: Severity = Severity.NONE
    muted_by: str = ""
    escalate_to: str = ""
    escalated_id: str = ""
    escalation_attempts: int = 0
    resolve_id: str = ""
    """An incident to resolve (the alarm was acknowledged or cleared after paging)."""
    recent_commands: list[str] = Field(default_factory=list)
    """Ids of the last commands applied, so that one delivered again is not applied twice."""
    silence_id: str = ""
    comment: str = ""
    severity_oldest: datetime | None = None
    severity_newest: datetime | None = None
    max_severity_time: datetime | None = None
    acknowledged_time: datetime | None = None
    auto_acknowledge_at: datetime | None = None
    auto_unacknowledge_at: datetime | None = None
    escalate_at: datetime | None = None
    unmute_at: datetime | None = None
    updated: datetime | None = None

    @property
    def nominal(self) -> bool:
        """Severity and maximum severity are both NONE."""
        return self.severity == Severity.NONE and self.max_severity == Severity.NONE

    @property
    def paged(self) -> bool:
        """An incident was sent for it (and not failed)."""
        return bool(self.escalated_id) and not self.escalated_id.startswith("Failed")

    @property
    def muted(self) -> bool:
        """Muted by an operator or covered by a silence."""
        return self.muted_severity > Severity.NONE

    @property
    def display_state(self) -> DisplayState:
        """Nominal, active, semi-active (severity below its maximum) or stale."""
        if self.nominal:
            return DisplayState.nominal
        if self.severity == Severity.NONE and not self.acknowledged:
            return DisplayState.stale
        if self.severity < self.max_severity:
            return DisplayState.semi_active
        return DisplayState.active

    def next_due(self) -> datetime | None:
        """The earliest timer, if any is set."""
        times = [
            t
            for t in (
                self.auto_acknowledge_at,
                self.auto_unacknowledge_at,
                None if self.paged else self.escalate_at,
                self.unmute_at,
            )
            if t is not None
        ]
        return min(times) if times else None

    def to_json(self) -> dict[str, Any]:
        """The form the alarm table and the API hold."""
        return self.model_dump(mode="json")

    def to_avro(self, command: AlarmCommand | None = None) -> dict[str, Any]:
        """The alarms topic's record of this state, with the command that made it, if any."""
        return {
            "name": self.name,
            "rule_id": self.rule_id,
            "tags": self.tags,
            "severity": self.severity.name,
            "max_severity": self.max_severity.name,
            "state": self.display_state.value.replace("-", "_"),
            "reason": self.reason,
            "acknowledged": self.acknowledged,
            "acknowledged_by": self.acknowledged_by,
            "muted_severity": self.muted_severity.name,
            "muted_by": self.muted_by,
            "silence_id": self.silence_id,
            "escalate_to": self.escalate_to,
            "escalated_id": self.escalated_id,
            "comment": self.comment,
            "timestamp_severity_oldest": self.severity_oldest,
            "timestamp_severity_newest": self.severity_newest,
            "timestamp_max_severity": self.max_severity_time,
            "timestamp_acknowledged": self.acknowledged_time,
            "timestamp_auto_acknowledge": self.auto_acknowledge_at,
            "timestamp_auto_unacknowledge": self.auto_unacknowledge_at,
            "timestamp_escalate": self.escalate_at,
            "timestamp_unmute": self.unmute_at,
            "time": self.updated or utcnow(),
            "command": command.command.value if command else None,
            "command_user": command.user if command else None,
            "command_refused": command.refused or None if command else None,
        }

    @classmethod
    def from_avro(cls, record: dict[str, Any]) -> Alarm:
        """An alarm's state read back from the alarms topic (for reads on any worker)."""
        return cls(
            name=record["name"],
            rule_id=record["rule_id"],
            tags=record.get("tags") or {},
            severity=Severity[record["severity"]],
            max_severity=Severity[record["max_severity"]],
            reason=record["reason"],
            acknowledged=record["acknowledged"],
            acknowledged_by=record["acknowledged_by"],
            muted_severity=Severity[record["muted_severity"]],
            muted_by=record["muted_by"],
            silence_id=record.get("silence_id") or "",
            escalate_to=record["escalate_to"],
            escalated_id=record["escalated_id"],
            comment=record.get("comment") or "",
            severity_oldest=record.get("timestamp_severity_oldest"),
            severity_newest=record.get("timestamp_severity_newest"),
            max_severity_time=record.get("timestamp_max_severity"),
            acknowledged_time=record.get("timestamp_acknowledged"),
            auto_acknowledge_at=record.get("timestamp_auto_acknowledge"),
            auto_unacknowledge_at=record.get("timestamp_auto_unacknowledge"),
            escalate_at=record.get("timestamp_escalate"),
            unmute_at=record.get("timestamp_unmute"),
            updated=record.get("time"),
        )


class CommandKind(StrEnum):
    """Operator commands on alarms."""

    acknowledge = "acknowledge"
    unacknowledge = "unacknowledge"
    mute = "mute"
    unmute = "unmute"


class AlarmCommand(BaseModel):
    """One operator command for one alarm, sent to the alarm's owner."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["alarm_command"] = "alarm_command"
    command: CommandKind
    name: str = Field(min_length=1)
    rule_id: str
    tags: dict[str, str] = Field(default_factory=dict)
    user: str = Field(min_length=1)
    severity: SeverityName | None = None
    duration: Duration | None = None
    comment: str = ""
    command_id: str = Field(min_length=1, description="Echoed in the command's record.")
    time: datetime
    refused: str = Field("", description="Set by the owner when it refused the command.")

    @field_validator("name")
    @classmethod
    def _plain_name(cls, value: str) -> str:
        if re.search(r"\s", value):
            raise ValueError("an alarm name has no spaces")
        return value

    @field_serializer("duration")
    def _seconds(self, value: timedelta | None) -> float | None:
        return None if value is None else value.total_seconds()

    @property
    def series(self) -> str:
        """The series key the alarm belongs to (the key of its trigger's series)."""
        return series_id(self.rule_id, self.tags)

    def to_json(self) -> dict[str, Any]:
        """The internal message's JSON."""
        return self.model_dump(mode="json")


RECENT_COMMANDS = 32
"""How many applied command ids an alarm remembers."""

MAX_COMMAND_ALARMS = 1000
"""Most alarms one operator command may name (one record carries them all)."""


class AlarmCommandBatch(BaseModel):
    """The commands of one operator request on several alarms, written as one record.

    One write makes the request durable as a whole; the series' owner that reads it sends
    each command on to its alarm's owner (:meth:`catcher.services.planning.intake.Intake`).
    """

    model_config = ConfigDict(extra="forbid")

    kind: Literal["alarm_commands"] = "alarm_commands"
    commands: list[AlarmCommand] = Field(min_length=1, max_length=MAX_COMMAND_ALARMS)

    def to_json(self) -> dict[str, Any]:
        """The internal message's JSON."""
        return self.model_dump(mode="json")


class SilenceState(StrEnum):
    """Where a silence is in its life."""

    pending = "pending"
    active = "active"
    expired = "expired"


class Silence(BaseModel):
    """A maintenance window: mutes every alarm it matches, present or future.

    ``name`` is a regular expression matched against whole alarm names; ``tags`` maps tag
    names to regular expressions matched against whole tag values. A silence with neither
    would silence everything, so at least one is required.
    """

    model_config = ConfigDict(extra="forbid")

    id: str = Field(default_factory=lambda: str(uuid.uuid4()))
    name: Pattern | None = Field(None, description="Regex (RE2) over whole alarm names.")
    tags: dict[str, Pattern] = Field(
        default_factory=dict, description="Tag name → regex (RE2) over the whole tag value."
    )
    starts_at: datetime
    ends_at: datetime
    comment: str = Field(min_length=1, max_length=1000)
    created_by: str = Field(min_length=1)
    created_at: datetime
    expired_at: datetime | None = Field(None, description="When it was expired by hand.")

    @model_validator(mode="after")
    def _bounded(self) -> Self:
        if self.ends_at - self.starts_at > MAX_MUTE:
            raise ValueError(f"a silence lasts at most {MAX_MUTE.days} days")
        return self

    def state(self, now: datetime) -> SilenceState:
        """Pending before it starts, expired after it ends or was expired, else active."""
        end = min(self.ends_at, self.expired_at) if self.expired_at else self.ends_at
        if now >= end:
            return SilenceState.expired
        return SilenceState.pending if now < self.starts_at else SilenceState.active

    def matches(self, alarm: Alarm) -> bool:
        """Whether the silence covers the alarm (whatever its time)."""
        if self.name is not None and not full_match(self.name, alarm.name):
            return False
        return all(
            tag in alarm.tags and full_match(pattern, alarm.tags[tag])
            for tag, pattern in self.tags.items()
        )

    def to_json(self) -> dict[str, Any]:
        """JSON form, as the silences topic holds it."""
        return self.model_dump(mode="json")


class RuleState(BaseModel):
    """Whether a rule's alarms follow its triggers, set by an operator at run time.

    While disabled, the rule's triggers change none of its alarms (and create none); its
    actions run as before, and its alarms can still be acknowledged, muted and silenced.
    Kept on the compacted rule-states topic, keyed by rule id.
    """

    model_config = ConfigDict(extra="forbid")

    rule_id: str
    alarms_enabled: bool
    by: str = Field(description="Who enabled or disabled them.")
    at: datetime = Field(description="When.")
    comment: str = Field("", max_length=1000, description="Why.")

    def to_json(self) -> dict[str, Any]:
        """The rule-states topic's record."""
        return self.model_dump(mode="json")
