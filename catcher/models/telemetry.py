"""Messages of the samples topic: telemetry re-keyed by series for the stream engine.

The worker that reads a telemetry partition sends each series' new samples to the owner of
the series (one record per series and batch, keyed by the series id), and tells every
owner, once a second, how far it has read that partition (:class:`TelemetryMark`): an
owner closes a window by its own clock only while the reader is caught up.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["SampleBatch", "TelemetryMark"]


class SampleBatch(BaseModel):
    """New samples of one rule's series, in event-time order, from one telemetry partition."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=True)

    kind: Literal["samples"] = "samples"
    rule_id: str
    tags: dict[str, str] = Field(default_factory=dict)
    topic: str = Field(description="The telemetry topic.")
    partition: int = Field(ge=0, description="The telemetry partition.")
    samples: list[tuple[float, float]] = Field(
        min_length=1, description="(event time in UTC seconds, value); NaN is no reading."
    )

    def to_json(self) -> dict[str, Any]:
        """The internal message's JSON."""
        return self.model_dump(mode="json")


class TelemetryMark(BaseModel):
    """How far the reader of one telemetry partition has got."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["telemetry_mark"] = "telemetry_mark"
    topic: str
    partition: int = Field(ge=0)
    caught_up: bool = Field(
        description="It has read what the partition held when the reader was assigned it."
    )
    sent: float = Field(description="When the mark was sent (UTC seconds, the reader's clock).")
    read_until: float | None = Field(
        None,
        description="Every record the partition held at this time (UTC seconds) has been read"
        " and its samples sent before this mark; None: the reader is behind.",
    )

    def to_json(self) -> dict[str, Any]:
        """The internal message's JSON."""
        return self.model_dump(mode="json")
