"""The mirror: trigger rows in the trigger bucket → Avro trigger records on the triggers topic.

No InfluxDB source connector is deployable at Rubin, so Catcher carries the rows itself. It
reads them with InfluxQL over ``/query``, which InfluxDB 1.x (Sasquatch) and 2.x (v1
compatibility) both answer, and publishes each row once, keyed by its ``trigger_id``.

A checkpoint remembers the latest row time and the ids published within the lookback. Each
poll reads back ``lookback`` before that time, so rows written late are still found, and
skips the ids it has published. The checkpoint lives on a compacted Kafka topic
(``<prefix>.internal.mirror``), not in a file, so the mirror needs no volume and survives
being rescheduled. It is written after the records are acknowledged: a crash in between
publishes those rows again, which the worker absorbs (the same trigger_id maps onto the
same ledger entries).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx
import structlog

from ...avro import AvroCodec
from ...config import Config
from ...exceptions import MirrorError
from ...kafka import read_topic
from ...models.enums import Severity, TriggerSource
from ...models.records import Trigger, make_trigger_id
from ...redact import brief
from ...storage.influxdb import InfluxQL, quote_identifier
from ...types import Send

__all__ = ["Checkpoint", "KafkaCheckpoints", "Mirror", "row_to_trigger"]

logger = structlog.get_logger("catcher")

_FRACTION = re.compile(r"(\.\d{6})\d+")


@dataclass
class Checkpoint:
    """The latest row time mirrored and the trigger ids published within the lookback."""

    high_water_ns: int = 0
    published: dict[str, int] = field(default_factory=dict)

    @classmethod
    def from_json(cls, data: bytes) -> Checkpoint:
        """A checkpoint from its JSON form."""
        try:
            value = json.loads(data)
            return cls(int(value.get("high_water_ns", 0)), dict(value.get("published", {})))
        except (ValueError, TypeError, AttributeError) as exc:
            raise MirrorError(f"The mirror checkpoint cannot be read: {exc}") from exc

    def to_json(self) -> bytes:
        """The JSON form."""
        return json.dumps(
            {"high_water_ns": self.high_water_ns, "published": self.published}
        ).encode()

    def forget_before(self, time_ns: int) -> None:
        """Drop ids of rows older than ``time_ns``: no poll reads that far back again."""
        self.published = {k: v for k, v in self.published.items() if v >= time_ns}


def _time(text: Any) -> datetime | None:
    if not isinstance(text, str) or not text:
        return None
    return datetime.fromisoformat(_FRACTION.sub(r"\1", text))


def row_to_trigger(tags: dict[str, str], row: dict[str, Any]) -> Trigger:
    """A trigger record from one row of the trigger measurement.

    Its id is derived from the rule, the series and the evaluation time, as the stream
    engine's and ``catcher trigger``'s are, so an evaluation has one id whichever engine
    made it; the row's own ``trigger_id`` text only tells the mirror which rows it has
    published.
    """
    tags = dict(tags)
    rule_id = str(tags.pop("rule_id", None) or row.get("rule_id"))
    series_tags = {k: v for k, v in tags.items() if v != ""}
    source = str(row.get("source") or "")
    value = row.get("value")
    time = datetime.fromtimestamp(int(row["time"]) / 1e9, tz=UTC)
    return Trigger(
        trigger_id=make_trigger_id(rule_id, time, series_tags),
        rule_id=rule_id,
        time=time,
        severity=Severity.parse(str(row["severity"])),
        reason=str(row.get("reason") or ""),
        value=float(value) if value is not None else None,
        tags=series_tags,
        source=TriggerSource(source)
        if source in TriggerSource.__members__
        else TriggerSource.mirror,
        window_start=_time(row.get("window_start")),
        window_stop=_time(row.get("window_stop")),
    )


CHECKPOINT_KEY = b"mirror"


class KafkaCheckpoints:
    """The checkpoint on its compacted topic: the latest value of one key."""

    def __init__(self, config: Config, send: Send) -> None:
        self._config = config
        self._send = send

    async def load(self) -> Checkpoint:
        """The latest checkpoint written, or an empty one."""
        latest: bytes | None = None
        try:
            for message in await read_topic(self._config, self._config.mirror_topic):
                if message.key == CHECKPOINT_KEY:
                    latest = message.value
        except ConnectionError as exc:
            raise MirrorError(f"Cannot read the mirror checkpoint: {exc}") from exc
        return Checkpoint.from_json(latest) if latest else Checkpoint()

    async def save(self, checkpoint: Checkpoint) -> None:
        """Write the checkpoint (acknowledged by the broker on return)."""
        await self._send(self._config.mirror_topic, CHECKPOINT_KEY, checkpoint.to_json())


class Mirror:
    """Polls the trigger bucket and publishes new rows."""

    @classmethod
    def from_config(
        cls, config: Config, codec: AvroCodec, send: Send, client: httpx.AsyncClient
    ) -> Mirror:
        """A mirror set up from CATCHER_MIRROR_* and the trigger bucket settings."""
        token = config.influxdb_token.get_secret_value() if config.influxdb_token else None
        return cls(
            url=config.mirror_url,
            bucket=config.trigger_bucket,
            measurement=config.trigger_measurement,
            lookback_s=config.mirror_lookback,
            checkpoints=KafkaCheckpoints(config, send),
            codec=codec,
            send=send,
            topic=config.triggers_topic,
            client=client,
            token=token,
        )

    def __init__(
        self,
        *,
        url: str,
        bucket: str,
        measurement: str,
        lookback_s: float,
        checkpoints: KafkaCheckpoints,
        codec: AvroCodec,
        send: Send,
        topic: str,
        client: httpx.AsyncClient,
        token: str | None = None,
    ) -> None:
        database, _, retention = bucket.partition("/")
        self._retention = retention or "autogen"
        self._measurement = measurement
        self._lookback_ns = int(lookback_s * 1e9)
        self._checkpoints = checkpoints
        self._codec = codec
        self._send = send
        self._topic = topic
        headers: dict[str, str] = {}
        auth: httpx.BasicAuth | None = None
        if token and ":" in token:
            user, _, password = token.partition(":")
            auth = httpx.BasicAuth(user, password)
        elif token:
            headers["Authorization"] = f"Token {token}"
        self._influx = InfluxQL(
            client, url, database, what="InfluxDB", error=MirrorError, auth=auth, headers=headers
        )
        self.checkpoint: Checkpoint | None = None

    async def _rows(self, since_ns: int) -> list[tuple[dict[str, str], dict[str, Any]]]:
        # Identifiers are quoted and escaped; the time is an int: nothing else is spliced in.
        query = (
            f"SELECT * FROM {quote_identifier(self._retention)}"  # noqa: S608 - quoted
            f".{quote_identifier(self._measurement)} WHERE time >= {int(since_ns)} GROUP BY *"
        )
        return [
            (series.tags, row)
            for series in await self._influx.query(query)
            for row in series.rows()
        ]

    async def poll_once(self) -> int:
        """Publish the rows not yet published; returns how many were."""
        if self.checkpoint is None:
            self.checkpoint = await self._checkpoints.load()
        checkpoint = self.checkpoint
        since = max(checkpoint.high_water_ns - self._lookback_ns, 0)
        rows = sorted(await self._rows(since), key=lambda item: int(item[1]["time"]))
        published = 0
        for tags, row in rows:
            trigger_id = row.get("trigger_id")
            if not trigger_id or trigger_id in checkpoint.published:
                continue
            try:
                trigger = row_to_trigger(tags, row)
            except (KeyError, ValueError, TypeError) as exc:
                logger.warning("Skipped a trigger row that is not valid", row=row, error=str(exc))
                checkpoint.published[str(trigger_id)] = int(row["time"])
                continue
            value = await self._codec.encode("triggers", trigger.to_avro())
            await self._send(self._topic, trigger.key, value)
            checkpoint.published[str(trigger_id)] = int(row["time"])
            published += 1
        if rows:
            checkpoint.high_water_ns = max(checkpoint.high_water_ns, int(rows[-1][1]["time"]))
        checkpoint.forget_before(checkpoint.high_water_ns - self._lookback_ns)
        await self._checkpoints.save(checkpoint)
        if published:
            logger.info("Mirrored trigger rows", published=published)
        return published

    async def run(self, interval: float, stop: asyncio.Event) -> None:
        """Poll until ``stop`` is set; every error is logged and the next poll tries again."""
        while not stop.is_set():
            try:
                await self.poll_once()
            except MirrorError as exc:
                logger.warning("Could not mirror trigger rows; will retry", error=str(exc))
            except Exception as exc:  # noqa: BLE001 - the mirror must never stop the worker
                logger.warning(
                    "Could not mirror trigger rows; will retry",
                    error=f"{type(exc).__name__}: {brief(str(exc))}",
                )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=interval)
