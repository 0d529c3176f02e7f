"""The alarm API's request bodies and answers (``catcher/web/alarms.py`` serves them)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

from .alarms import Alarm, SeverityName, Silence
from .durations import Duration
from .enums import Severity

__all__ = ["CommandBody", "SilenceBody", "alarm_json", "silence_json"]


class CommandBody(BaseModel):
    """The body of ``POST /alarms/{command}``."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(
        min_length=1, description="Regular expression matched against whole alarm names."
    )
    severity: SeverityName | None = Field(
        None,
        description="acknowledge: the severity acknowledged (not below the maximum severity);"
        " mute: the highest severity muted.",
    )
    duration: Duration | None = Field(None, description="mute: how long, e.g. 30m or 2h.")
    comment: str = Field("", max_length=1000, description="Why; recorded with the command.")


class SilenceBody(BaseModel):
    """The body of ``POST /silences``."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(None, description="Regex over whole alarm names.")
    tags: dict[str, str] = Field(
        default_factory=dict, description="Tag name → regex over the whole tag value."
    )
    starts_at: datetime | None = Field(None, description="Default: now.")
    ends_at: datetime | None = Field(None, description="When it ends (or give duration).")
    duration: Duration | None = Field(None, description="How long, e.g. 2h.")
    comment: str = Field(min_length=1, max_length=1000, description="Why (required).")

    @model_validator(mode="after")
    def _something_to_match(self) -> Self:
        if self.name is None and not self.tags:
            raise ValueError("give name or tags: a silence of everything is not allowed")
        return self


def alarm_json(alarm: Alarm) -> dict[str, Any]:
    """An alarm as the API answers it: severities by name, its display state."""
    data = alarm.model_dump(mode="json", exclude={"resolve_id", "escalation_attempts"})
    for key in ("severity", "max_severity", "muted_severity"):
        data[key] = Severity(data[key]).name
    data["state"] = alarm.display_state.value
    return data


def silence_json(silence: Silence, now: datetime) -> dict[str, Any]:
    """A silence as the API answers it, with its state now."""
    return {**silence.to_json(), "state": silence.state(now).value}
