"""Avro records in the Confluent wire format, with schemas kept in a Schema Registry.

The wire format is a magic byte 0, the schema id as a 4-byte big-endian integer, then the
Avro binary body. Schemas live in ``avro_schemas/*.avsc``; their namespace is replaced by
the configured topic prefix, so that namespace + record name equals the topic name, and
they are registered under the subject ``<topic>-value``.
"""

from __future__ import annotations

import io
import json
import struct
from typing import Any, Literal

import fastavro
import httpx
from schema_registry.client import AsyncSchemaRegistryClient
from schema_registry.client.errors import ClientError

from .exceptions import RecordError, SchemaRegistryError, SchemaRegistryUnavailableError
from .redact import brief
from .resources import read_resource

__all__ = [
    "MAGIC_BYTE",
    "AvroCodec",
    "RecordKind",
    "load_schema",
    "registry_error",
    "split_wire",
]

MAGIC_BYTE = 0
_HEADER = struct.Struct(">bI")

RecordKind = Literal["triggers", "actions", "deadletter", "alarms"]
KINDS: tuple[RecordKind, ...] = ("triggers", "actions", "deadletter", "alarms")


def load_schema(kind: RecordKind, prefix: str) -> dict[str, Any]:
    """The schema of one topic, in the namespace of the configured prefix."""
    text = read_resource("avro_schemas", f"{kind}.avsc")
    schema: dict[str, Any] = json.loads(text)
    schema["namespace"] = prefix
    return schema


def split_wire(data: bytes) -> tuple[int, bytes]:
    """Schema id and Avro body of a Confluent wire-format message."""
    if len(data) < _HEADER.size:
        raise RecordError(
            f"Message of {len(data)} bytes is too short for the Confluent wire format"
            " (magic byte, 4-byte schema id, Avro body)."
        )
    magic, schema_id = _HEADER.unpack_from(data)
    if magic != MAGIC_BYTE:
        raise RecordError(
            f"Message starts with byte {magic}, not the Confluent magic byte 0: it was not"
            " written with a Schema Registry serializer."
        )
    return schema_id, data[_HEADER.size :]


def registry_error(message: str, exc: Exception) -> SchemaRegistryError:
    """The registry's failure as Catcher's error: 5xx, 408, 429 and no answer are retried."""
    code = getattr(exc, "http_code", None)
    text = f"{message}: {brief(str(exc))}"
    if code is None or code >= 500 or code in (408, 429) or isinstance(exc, httpx.HTTPError):  # noqa: PLR2004
        return SchemaRegistryUnavailableError(text)
    return SchemaRegistryError(text)


class AvroCodec:
    """Encode and decode Catcher's records, registering schemas on first use."""

    def __init__(self, registry_url: str, prefix: str, *, timeout: float = 10.0) -> None:
        self._registry_url = registry_url
        self._registry = AsyncSchemaRegistryClient(
            url=registry_url, timeout=httpx.Timeout(timeout)
        )
        self._prefix = prefix
        self._schemas = {kind: load_schema(kind, prefix) for kind in KINDS}
        self._parsed = {kind: fastavro.parse_schema(s) for kind, s in self._schemas.items()}
        self._ids: dict[str, int] = {}
        self._writers: dict[int, Any] = {}

    def subject(self, kind: RecordKind) -> str:
        """Registry subject of one topic's values."""
        return f"{self._prefix}.{kind}-value"

    def schema(self, kind: RecordKind) -> dict[str, Any]:
        """The schema Catcher writes for one topic."""
        return self._schemas[kind]

    async def register(self) -> dict[str, int]:
        """Register every schema under its subject; returns the ids by subject."""
        for kind in KINDS:
            await self._schema_id(kind)
        return dict(self._ids)

    async def latest(self, subject: str) -> dict[str, Any] | None:
        """The latest schema registered under a subject (None when there is none)."""
        try:
            found = await self._registry.get_schema(subject)
        except (ClientError, httpx.HTTPError, ValueError) as exc:
            raise registry_error(
                f"Could not read the schema of {subject} at {self._registry_url}"
                " (check CATCHER_SCHEMA_REGISTRY_URL and that the registry is up)",
                exc,
            ) from exc
        if found is None:
            return None
        raw = found.schema.raw_schema if hasattr(found.schema, "raw_schema") else found.schema
        return raw if isinstance(raw, dict) else json.loads(str(raw))

    async def _schema_id(self, kind: RecordKind) -> int:
        subject = self.subject(kind)
        if subject not in self._ids:
            try:
                schema_id = await self._registry.register(subject, json.dumps(self._schemas[kind]))
            except (ClientError, httpx.HTTPError, ValueError) as exc:
                raise registry_error(
                    f"Could not register the schema of {subject} at {self._registry_url}"
                    " (check CATCHER_SCHEMA_REGISTRY_URL and that the registry is up)",
                    exc,
                ) from exc
            self._ids[subject] = schema_id
            self._writers[schema_id] = self._parsed[kind]
        return self._ids[subject]

    async def encode(self, kind: RecordKind, record: dict[str, Any]) -> bytes:
        """Confluent wire bytes of one record."""
        schema_id = await self._schema_id(kind)
        buffer = io.BytesIO()
        buffer.write(_HEADER.pack(MAGIC_BYTE, schema_id))
        try:
            fastavro.schemaless_writer(buffer, self._parsed[kind], record)
        except (ValueError, TypeError) as exc:
            raise RecordError(f"Record does not fit the {kind} schema: {brief(str(exc))}") from exc
        return buffer.getvalue()

    async def _writer_schema(self, schema_id: int) -> Any:
        if schema_id not in self._writers:
            try:
                found = await self._registry.get_by_id(schema_id)
            except (ClientError, httpx.HTTPError, ValueError) as exc:
                raise registry_error(
                    f"Could not fetch schema id {schema_id} from {self._registry_url}", exc
                ) from exc
            if found is None:
                raise RecordError(f"Schema id {schema_id} is not in the Schema Registry.")
            self._writers[schema_id] = fastavro.parse_schema(found.raw_schema)
        return self._writers[schema_id]

    async def decode_any(self, data: bytes) -> dict[str, Any]:
        """A record of any registered schema (telemetry), read with its writer's schema."""
        schema_id, body = split_wire(data)
        return _read(schema_id, body, await self._writer_schema(schema_id), None, "record")

    async def decode(self, kind: RecordKind, data: bytes) -> dict[str, Any]:
        """One record from Confluent wire bytes, read into Catcher's current schema."""
        schema_id, body = split_wire(data)
        writer = await self._writer_schema(schema_id)
        return _read(schema_id, body, writer, self._parsed[kind], f"{kind} record")


def _read(schema_id: int, body: bytes, writer: Any, reader: Any, what: str) -> dict[str, Any]:
    """The Avro body as a record (``what`` names it in errors)."""
    try:
        record = fastavro.schemaless_reader(io.BytesIO(body), writer, reader)
    except Exception as exc:  # fastavro raises many types on bad input
        suffix = f" as a {what}" if reader is not None else ""
        raise RecordError(
            f"Avro body does not decode with schema id {schema_id}{suffix}:"
            f" {type(exc).__name__}: {brief(str(exc), 200)}"
        ) from exc
    if not isinstance(record, dict):
        raise RecordError(f"Schema id {schema_id} does not describe a {what}.")
    return record
