"""The alarm API's request bodies and answers (``catcher/web/alarms.py`` serves them)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, create_model, model_validator

from .alarms import (
    MAX_MUTE,
    Alarm,
    CommandKind,
    DisplayState,
    SeverityName,
    Silence,
    SilenceState,
)
from .durations import Duration, Time
from .enums import Severity
from .patterns import Pattern

__all__ = [
    "AlarmAnswer",
    "AlarmList",
    "CommandAnswer",
    "CommandBody",
    "Problem",
    "SilenceAnswer",
    "SilenceBody",
    "SilenceList",
    "alarm_json",
    "silence_json",
]


class CommandBody(BaseModel):
    """The body of ``POST /alarms/{command}``."""

    model_config = ConfigDict(extra="forbid")

    name: Pattern = Field(
        min_length=1,
        description="Regular expression (RE2 syntax, at most 500 characters) matched from the"
        " start of alarm names, as the Watcher's commands are: `m1m3` names every alarm"
        " whose name begins with m1m3; end it with $ for one whole name.",
    )
    severity: SeverityName | None = Field(
        None,
        description="acknowledge: the severity acknowledged (not below the maximum severity);"
        " mute: the highest severity muted.",
    )
    duration: Duration | None = Field(
        None, description="mute: how long, e.g. 30m or 2h (at most 366 days)."
    )
    comment: str = Field("", max_length=1000, description="Why; recorded with the command.")

    @model_validator(mode="after")
    def _bounded(self) -> Self:
        if self.duration is not None and not timedelta(0) < self.duration <= MAX_MUTE:
            raise ValueError(
                f"duration: a mute lasts more than 0 s and at most {MAX_MUTE.days} days"
            )
        return self


class SilenceBody(BaseModel):
    """The body of ``POST /silences``."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "allOf": [
                {  # something to match
                    "anyOf": [
                        {"required": ["name"], "properties": {"name": {"type": "string"}}},
                        {"required": ["tags"], "properties": {"tags": {"minProperties": 1}}},
                    ]
                },
                {  # an end
                    "anyOf": [
                        {
                            "required": ["duration"],
                            "properties": {"duration": {"not": {"type": "null"}}},
                        },
                        {"required": ["ends_at"], "properties": {"ends_at": {"type": "string"}}},
                    ]
                },
            ]
        },
    )

    name: Pattern | None = Field(None, description="Regex (RE2 syntax) over whole alarm names.")
    tags: dict[str, Pattern] = Field(
        default_factory=dict, description="Tag name → regex (RE2 syntax) over the whole tag value."
    )
    starts_at: Time | None = Field(None, description="Default: now. Without a zone: UTC.")
    ends_at: Time | None = Field(
        None, description="When it ends (or give duration). Without a zone: UTC."
    )
    duration: Duration | None = Field(None, description="How long, e.g. 2h (at most 366 days).")
    comment: str = Field(min_length=1, max_length=1000, description="Why (required).")

    @model_validator(mode="after")
    def _something_to_match(self) -> Self:
        if self.name is None and not self.tags:
            raise ValueError("give name or tags: a silence of everything is not allowed")
        return self


_INTERNAL_FIELDS = frozenset({"resolve_id", "escalation_attempts", "recent_commands"})
"""Fields of an alarm's state the API does not show."""

_SEVERITY_FIELDS = ("severity", "max_severity", "muted_severity")

SeverityLabel = Literal["NONE", "WARNING", "SERIOUS", "CRITICAL"]


def _answer_of(model: type[BaseModel], replaced: dict[str, Any], hidden: frozenset[str]) -> Any:
    """The fields of an answer made from a model: every field present, some retyped."""
    fields: dict[str, Any] = {}
    for name, info in model.model_fields.items():
        if name not in hidden:
            annotation = replaced.get(name, info.annotation)
            fields[name] = (annotation, Field(description=info.description))
    return fields


AlarmAnswer = create_model(
    "AlarmAnswer",
    __doc__="An alarm as the API answers it: severities by name, and its display state.",
    __config__=ConfigDict(extra="forbid"),
    **_answer_of(Alarm, dict.fromkeys(_SEVERITY_FIELDS, SeverityLabel), _INTERNAL_FIELDS),
    state=(DisplayState, Field(description="The Watcher's display state.")),
)

SilenceAnswer = create_model(
    "SilenceAnswer",
    __doc__="A silence as the API answers it, with its state now.",
    __config__=ConfigDict(extra="forbid"),
    **_answer_of(Silence, {}, frozenset()),
    state=(SilenceState, Field(description="pending, active or expired, now.")),
)


class AlarmList(BaseModel):
    """``GET /alarms``."""

    alarms: list[AlarmAnswer]  # type: ignore[valid-type]


class SilenceList(BaseModel):
    """``GET /silences``."""

    silences: list[SilenceAnswer]  # type: ignore[valid-type]


class Refusal(BaseModel):
    """An alarm that would refuse a command, and why."""

    name: str
    reason: str


class CommandAnswer(BaseModel):
    """``POST /alarms/{command}``: the alarms it was sent to (202), or those refusing (409)."""

    command: CommandKind
    alarms: list[str]
    refused: list[Refusal]


class ProblemItem(BaseModel):
    """One invalid input: where it is (``body``, ``query`` or ``header``, then the field)."""

    loc: list[str | int]
    msg: str
    type: str | None = None


class Problem(BaseModel):
    """Every error answer: a sentence, or the invalid inputs."""

    detail: str | list[ProblemItem]


def alarm_json(alarm: Alarm) -> dict[str, Any]:
    """An alarm as the API answers it (:data:`AlarmAnswer`)."""
    data = alarm.model_dump(mode="json", exclude=set(_INTERNAL_FIELDS))
    for key in _SEVERITY_FIELDS:
        data[key] = Severity(data[key]).name
    data["state"] = alarm.display_state.value
    return data


def silence_json(silence: Silence, now: datetime) -> dict[str, Any]:
    """A silence as the API answers it, with its state now (:data:`SilenceAnswer`)."""
    return {**silence.to_json(), "state": silence.state(now).value}


class RuleStateBody(BaseModel):
    """The body of ``POST /rules/{rule_id}/{enable|disable}``."""

    model_config = ConfigDict(extra="forbid")

    comment: str = Field("", max_length=1000, description="Why; recorded with the change.")


class RuleStateAnswer(BaseModel):
    """A loaded rule, and whether its alarms follow its triggers."""

    model_config = ConfigDict(extra="forbid")

    rule_id: str
    alarms_enabled: bool = Field(description="False while disabled at run time.")
    configured: bool = Field(description="The rule's alarm.enabled in its rules file.")
    by: str = Field("", description="Who last enabled or disabled them (empty: nobody).")
    at: datetime | None = Field(None, description="When.")
    comment: str = Field("", description="Why.")


class RuleStateList(BaseModel):
    """``GET /rules``."""

    rules: list[RuleStateAnswer]
