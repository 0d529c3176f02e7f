"""Intake: a trigger is decoded, checked and sent to its series' owner, or rejected."""

from __future__ import annotations

from pathlib import Path

import pytest

from catcher.avro import AvroCodec
from catcher.exceptions import Unprocessable
from catcher.fakes.registry import FakeSchemaRegistry
from catcher.models.enums import DeadLetterStage, Severity, TriggerSource
from catcher.models.records import Trigger, TriggerMessage
from catcher.services.planning.intake import Intake
from tests.support.records import WEBHOOK_RULES as RULES
from tests.support.records import Sent, trigger_of


@pytest.mark.asyncio
async def test_intake_routes_a_trigger_to_its_series_and_rejects_the_rest() -> None:
    sent = Sent()
    async with FakeSchemaRegistry() as registry:
        codec = AvroCodec(registry.url, "lsst.catcher")
        planned: list[tuple[Trigger, int]] = []

        class Planner:
            async def handle(self, trigger: Trigger, partition: int) -> None:
                planned.append((trigger, partition))

        intake = Intake(codec, RULES, sent, "series", Path("rules"), Planner())  # type: ignore[arg-type]
        trigger = trigger_of()
        encoded = await codec.encode("triggers", trigger.to_avro())
        await intake.handle(trigger.trigger_id.encode(), encoded, 2)  # another producer's key
        assert sent.records == [
            ("series", "r|salIndex=1", TriggerMessage(trigger=trigger).to_json())
        ]
        await intake.handle(trigger.key, encoded, 2)  # keyed by its series: planned here
        assert planned == [(trigger, 2)]
        unknown = Trigger.create("nope", Severity.WARNING, reason="x", source=TriggerSource.manual)
        with pytest.raises(Unprocessable) as rejected:
            await intake.handle(b"k", await codec.encode("triggers", unknown.to_avro()), 0)
        assert (rejected.value.stage, rejected.value.error_type) == (
            DeadLetterStage.plan,
            "UnknownRule",
        )
        with pytest.raises(Unprocessable, match="not the Confluent magic byte"):
            await intake.handle(b"k", b"junk record", 0)
        with pytest.raises(Unprocessable, match="no value"):
            await intake.handle(b"k", None, 0)
    assert len(sent.records) == 1
