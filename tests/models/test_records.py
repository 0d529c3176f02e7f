from __future__ import annotations

from datetime import UTC, datetime

from catcher.models.enums import Severity, TriggerSource
from catcher.models.records import Trigger, make_action_id, make_trigger_id

TIME = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


def test_trigger_id_is_deterministic_per_rule_series_and_time() -> None:
    one = make_trigger_id("r", TIME, {"a": "1", "b": "2"})
    assert one == make_trigger_id("r", TIME, {"b": "2", "a": "1"})
    assert len(one) == 32
    assert one != make_trigger_id("r", TIME, {"a": "1"})
    assert one != make_trigger_id("r2", TIME, {"a": "1", "b": "2"})
    assert one != make_trigger_id("r", TIME.replace(microsecond=1), {"a": "1", "b": "2"})


def test_action_id_adds_generation_only_for_reruns() -> None:
    assert make_action_id("abc", "notify") == "abc.notify"
    assert make_action_id("abc", "notify", 2) == "abc.notify.g2"


def test_trigger_avro_round_trip_and_series() -> None:
    trigger = Trigger.create(
        "r",
        Severity.CRITICAL,
        reason="hot",
        source=TriggerSource.flux,
        time=TIME,
        tags={"salIndex": "1"},
        value=3.5,
    )
    record = trigger.to_avro()
    assert record["severity"] == "CRITICAL"
    assert record["source"] == "flux"
    assert Trigger.from_avro(record) == trigger
    assert trigger.series == "r|salIndex=1"
    naive = Trigger.from_avro({**record, "time": TIME.replace(tzinfo=None)})
    assert naive.time == TIME
