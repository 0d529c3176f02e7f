from __future__ import annotations

import json
import struct

import fastavro
import pytest

from catcher.avro import KINDS, AvroCodec, load_schema
from catcher.exceptions import RecordError, SchemaRegistryError
from catcher.fakes.registry import FakeSchemaRegistry
from catcher.models.enums import Severity, TriggerSource
from catcher.models.records import Trigger


def test_schemas_follow_sasquatch_conventions() -> None:
    for kind in KINDS:
        schema = load_schema(kind, "lsst.catcher.test")
        assert f"{schema['namespace']}.{schema['name']}" == f"lsst.catcher.test.{kind}"
        assert all(field.get("description") for field in schema["fields"]), kind
        fastavro.parse_schema(schema)


@pytest.mark.asyncio
async def test_wire_format_round_trip_through_a_registry(registry: FakeSchemaRegistry) -> None:
    codec = AvroCodec(registry.url, "lsst.catcher")
    trigger = Trigger.create(
        "r",
        Severity.SERIOUS,
        reason="why",
        source=TriggerSource.manual,
        tags={"salIndex": "1"},
        value=1.25,
    )
    data = await codec.encode("triggers", trigger.to_avro())
    magic, schema_id = struct.unpack(">bI", data[:5])
    assert magic == 0
    assert registry.subjects == {"lsst.catcher.triggers-value": [schema_id]}
    assert json.loads(registry.schemas[schema_id])["name"] == "triggers"
    # Another process (no cache) decodes it by fetching the writer schema by id.
    reader = AvroCodec(registry.url, "lsst.catcher")
    assert Trigger.from_avro(await reader.decode("triggers", data)) == trigger
    assert registry.count("GET", f"/schemas/ids/{schema_id}") == 1
    ids = await reader.register()
    assert set(ids) == {f"lsst.catcher.{k}-value" for k in KINDS}
    assert ids["lsst.catcher.triggers-value"] == schema_id  # same schema, same id


@pytest.mark.asyncio
async def test_bad_bytes_are_record_errors(registry: FakeSchemaRegistry) -> None:
    codec = AvroCodec(registry.url, "lsst.catcher")
    with pytest.raises(RecordError, match="too short"):
        await codec.decode("triggers", b"\x00\x01")
    with pytest.raises(RecordError, match="not the Confluent magic byte 0"):
        await codec.decode("triggers", b"\x07\x00\x00\x00\x01abc")
    with pytest.raises(RecordError, match="Schema id 99 is not in the Schema Registry"):
        await codec.decode("triggers", b"\x00\x00\x00\x00\x63abc")
    await codec.register()
    with pytest.raises(RecordError, match="does not decode with schema id 1"):
        await codec.decode("triggers", b"\x00\x00\x00\x00\x01\xff")
    with pytest.raises(RecordError, match="does not fit the actions schema"):
        await codec.encode("actions", {"action_id": 3})


@pytest.mark.asyncio
async def test_registry_down_is_a_registry_error(registry: FakeSchemaRegistry) -> None:
    registry.inject(status=500, body="boom", times=2)
    codec = AvroCodec(registry.url, "lsst.catcher")
    with pytest.raises(SchemaRegistryError, match="Could not register the schema of"):
        await codec.register()
