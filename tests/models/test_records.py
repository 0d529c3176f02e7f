from __future__ import annotations

from datetime import UTC, datetime

from catcher.models.alarms import AlarmCommand, CommandKind, alarm_name
from catcher.models.enums import Severity, TriggerSource
from catcher.models.records import (
    Trigger,
    make_action_id,
    make_trigger_id,
    series_id,
    series_key,
    utcnow,
)

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


def test_a_trigger_and_a_command_for_its_alarm_name_the_same_series() -> None:
    tags = {"salIndex": "2", "axis": "x"}
    trigger = Trigger.create(
        "r", Severity.WARNING, reason="r", source=TriggerSource.manual, tags=tags
    )
    command = AlarmCommand.model_validate(
        {
            "command": "acknowledge",
            "rule_id": "r",
            "tags": dict(reversed(tags.items())),
            "name": "n",
            "user": "u",
            "command_id": "c",
            "time": TIME,
        }
    )
    assert trigger.series == command.series == series_id("r", tags) == "r|axis=x,salIndex=2"


def test_series_identity_is_unambiguous() -> None:
    assert series_key({"salIndex": "1,x=2"}) != series_key({"salIndex": "1", "x": "2"})
    assert series_id("r", {"a": "1|b"}) != series_id("r", {"a": "1", "b": ""})
    assert series_key({"salIndex": "1"}) == "salIndex=1"  # plain values read as before
    name = alarm_name("r", {"cscName": "MT Mount", "where": "a:b"})
    assert name == "r:cscName=MT%20Mount,where=a%3Ab"
    command = AlarmCommand(  # a space in a tag value no longer breaks commands on its alarm
        command=CommandKind.acknowledge,
        name=name,
        rule_id="r",
        tags={"cscName": "MT Mount", "where": "a:b"},
        user="ana",
        severity="CRITICAL",
        command_id="c1",
        time=utcnow(),
    )
    assert command.series == "r|cscName=MT%20Mount,where=a%3Ab"
