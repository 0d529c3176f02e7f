"""The alarm API's request bodies and answers (``catcher/web/alarms.py`` serves them)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

from .alarms import MAX_MUTE, Alarm, SeverityName, Silence
from .durations import Duration, Time
from .enums import Severity
from .patterns import Pattern

__all__ = ["CommandBody", "SilenceBody", "alarm_json", "silence_json"]


class CommandBody(BaseModel):
    """The body of ``POST /alarms/{command}``."""

    model_config = ConfigDict(extra="forbid")

    name: Pattern = Field(
        min_length=1,
        description="Regular expression (RE2 syntax, at most 500 characters) matched against"
        " whole alarm names.",
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

    model_config = ConfigDict(extra="forbid")

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


def alarm_json(alarm: Alarm) -> dict[str, Any]:
    """An alarm as the API answers it: severities by name, its display state."""
    data = alarm.model_dump(
        mode="json", exclude={"resolve_id", "escalation_attempts", "recent_commands"}
    )
    for key in ("severity", "max_severity", "muted_severity"):
        data[key] = Severity(data[key]).name
    data["state"] = alarm.display_state.value
    return data


def silence_json(silence: Silence, now: datetime) -> dict[str, Any]:
    """A silence as the API answers it, with its state now."""
    return {**silence.to_json(), "state": silence.state(now).value}
