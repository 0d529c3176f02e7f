"""The alarm engine without Faust: triggers, commands and timers on an in-memory table."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta

import fastavro
import httpx
import pytest

from catcher.avro import load_schema
from catcher.fakes.squadcast import FakeSquadCast
from catcher.models.alarms import (
    Alarm,
    AlarmCommand,
    CommandKind,
    EscalationRoute,
    RuleState,
    Silence,
)
from catcher.models.enums import Severity, TriggerSource
from catcher.models.records import Trigger
from catcher.models.rules import Rule, RuleSet
from catcher.retry import RetryPolicy
from catcher.services.alarms.engine import AlarmEngine, series_partition
from catcher.services.alarms.escalation import Escalator
from catcher.storage.tables import DurableTable
from tests.support.tables import MemoryTable

RULES = RuleSet(
    [
        Rule.model_validate(
            {
                "id": "m1m3-temperature",
                "description": "d",
                "alarm": {"auto_acknowledge_delay": "10m"},
            }
        ),
        Rule.model_validate({"id": "quiet", "description": "d", "alarm": {"enabled": False}}),
    ]
)


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 11, 24, 3, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


class Sent:
    def __init__(self) -> None:
        self.records: list[tuple[Alarm, AlarmCommand | None]] = []

    async def __call__(self, alarm: Alarm, command: AlarmCommand | None) -> None:
        self.records.append((alarm, command))


def _engine() -> tuple[AlarmEngine, MemoryTable, Sent, Clock]:
    table, sent, clock = MemoryTable(), Sent(), Clock()
    return AlarmEngine(RULES, DurableTable(table), sent, clock), table, sent, clock


def _trigger(severity: Severity, rule: str = "m1m3-temperature") -> Trigger:
    return Trigger.create(
        rule, severity, reason="too warm", source=TriggerSource.manual, tags={"salIndex": "1"}
    )


def _command(kind: CommandKind, clock: Clock, **fields: object) -> AlarmCommand:
    return AlarmCommand.model_validate(
        {
            "command": kind,
            "name": "m1m3-temperature:salIndex=1",
            "rule_id": "m1m3-temperature",
            "tags": {"salIndex": "1"},
            "user": "ana",
            "command_id": str(uuid.uuid4()),
            "time": clock.now,
            **fields,
        }
    )


@pytest.mark.asyncio
async def test_triggers_set_the_alarm_durably_then_publish() -> None:
    engine, table, sent, _ = _engine()
    await engine.on_trigger(_trigger(Severity.NONE), 0)  # nominal stays nominal: nothing
    assert sent.records == []
    await engine.on_trigger(_trigger(Severity.SERIOUS), 2)
    assert [(p, k) for p, k, _ in table.changelog] == [(2, "m1m3-temperature:salIndex=1")]
    ((alarm, command),) = sent.records
    assert (alarm.severity, alarm.max_severity, command) == (
        Severity.SERIOUS,
        Severity.SERIOUS,
        None,
    )
    assert engine.get(alarm.name) == alarm


@pytest.mark.asyncio
async def test_a_rule_with_alarms_disabled_raises_none() -> None:
    engine, table, sent, _ = _engine()
    await engine.on_trigger(_trigger(Severity.CRITICAL, rule="quiet"), 0)
    assert table.changelog == [] and sent.records == []


@pytest.mark.asyncio
async def test_commands_are_applied_and_recorded_even_when_refused_or_unchanged() -> None:
    engine, _, sent, clock = _engine()
    await engine.on_trigger(_trigger(Severity.CRITICAL), 0)
    refused = await engine.on_command(
        _command(CommandKind.acknowledge, clock, severity=Severity.WARNING), 0
    )
    assert refused is not None and not refused.acknowledged
    # A refused command changes nothing, and is recorded with the reason.
    assert sent.records[-1][0] == refused
    record = sent.records[-1][1]
    assert record is not None and record.refused.startswith("m1m3-temperature:salIndex=1:")
    assert "below its maximum severity CRITICAL" in record.refused
    acked = await engine.on_command(_command(CommandKind.acknowledge, clock, comment="looking"), 0)
    assert acked is not None and acked.acknowledged and acked.acknowledged_by == "ana"
    assert sent.records[-1][1] is not None and sent.records[-1][0].comment == "looking"
    muted = await engine.on_command(
        _command(CommandKind.mute, clock, duration=timedelta(minutes=30), severity="CRITICAL"),
        0,
    )
    assert muted is not None and muted.muted_severity == Severity.CRITICAL
    assert await engine.on_command(_command(CommandKind.unmute, clock), 0) is not None
    assert [c.command for _, c in sent.records[2:] if c] == ["acknowledge", "mute", "unmute"]


@pytest.mark.asyncio
async def test_a_command_for_an_unknown_alarm_is_ignored() -> None:
    engine, _, sent, clock = _engine()
    assert await engine.on_command(_command(CommandKind.unmute, clock), 0) is None
    assert sent.records == []


@pytest.mark.asyncio
async def test_timers_fire_on_the_owner_after_a_restart() -> None:
    engine, table, sent, clock = _engine()
    await engine.on_trigger(_trigger(Severity.SERIOUS), 1)
    await engine.on_trigger(_trigger(Severity.NONE), 1)  # stale: auto-acknowledge in 10 min
    # A new worker recovers the table and rebuilds its timer index.
    restarted = AlarmEngine(RULES, DurableTable(table), sent, clock)
    restarted.rebuild_index()
    clock.now += timedelta(minutes=10)
    assert await restarted.scan(lambda partition: partition != 1) == 0  # not the owner
    restarted.rebuild_index()
    assert await restarted.scan(lambda partition: partition == 1) == 1
    alarm = restarted.get("m1m3-temperature:salIndex=1")
    assert alarm is not None and alarm.nominal
    assert await restarted.scan(lambda _p: True) == 0


def test_the_alarms_record_round_trips_through_its_avro_schema() -> None:
    schema = fastavro.parse_schema(load_schema("alarms", "lsst.catcher"))
    clock = Clock()
    alarm = Alarm(
        name="a:b=1",
        rule_id="a",
        tags={"b": "1"},
        severity=Severity.WARNING,
        max_severity=Severity.CRITICAL,
        reason="r",
        severity_oldest=clock.now,
        unmute_at=clock.now + timedelta(hours=1),
        updated=clock.now,
    )
    record = alarm.to_avro(_command(CommandKind.mute, clock))
    assert fastavro.validate(record, schema)
    assert record["state"] == "semi_active" and record["command"] == "mute"
    assert Alarm.from_avro(record) == alarm


def test_a_command_survives_its_trip_through_the_series_topic() -> None:
    command = _command(
        CommandKind.mute, Clock(), duration="1h30m", severity="SERIOUS", comment="maintenance"
    )
    again = AlarmCommand.model_validate(json.loads(json.dumps(command.to_json())))
    assert again == command
    assert again.duration == timedelta(hours=1, minutes=30)
    assert again.series == "m1m3-temperature|salIndex=1"


PAGED = RuleSet(
    [
        Rule.model_validate(
            {
                "id": "m1m3-temperature",
                "description": "d",
                "alarm": {"escalate": {"responder": "m1m3-team", "delay": "10m"}},
            }
        )
    ]
)


@pytest.mark.asyncio
async def test_escalation_pages_once_resolves_on_acknowledge_and_is_fenced() -> None:
    async with FakeSquadCast() as squadcast, httpx.AsyncClient() as http:
        table, sent, clock = MemoryTable(), Sent(), Clock()
        escalator = Escalator(squadcast.url, squadcast.key, http)
        engine = AlarmEngine(
            PAGED,
            DurableTable(table),
            sent,
            clock,
            escalator=escalator,
            policy=RetryPolicy(attempts=3, backoff_initial=30, jitter=0),
        )
        await engine.on_trigger(_trigger(Severity.CRITICAL), 0)
        clock.now += timedelta(minutes=9)
        assert await engine.scan(lambda _p: True) == 0
        clock.now += timedelta(minutes=1)
        assert await engine.scan(lambda _p: False) == 0  # not the owner: no page
        engine.rebuild_index()
        squadcast.inject(status=503, body="busy")
        await engine.scan(lambda _p: True)
        alarm = engine.get("m1m3-temperature:salIndex=1")
        assert alarm is not None
        assert alarm.escalated_id == "Failed: SquadCast answered HTTP 503: busy"
        assert squadcast.incidents == {}
        clock.now += timedelta(seconds=30)
        await engine.scan(lambda _p: True)
        await engine.scan(lambda _p: True)
        ((event_id, incident),) = squadcast.incidents.items()
        assert incident["tags"] == {
            "responder": "m1m3-team",
            "alarm_name": "m1m3-temperature:salIndex=1",
        }
        assert len(squadcast.posts("trigger")) == 2  # the failed one and the accepted one
        alarm = engine.get("m1m3-temperature:salIndex=1")
        assert alarm is not None and alarm.escalated_id == event_id
        await engine.on_command(_command(CommandKind.acknowledge, clock, severity="CRITICAL"), 0)
        await engine.scan(lambda _p: True)
        assert squadcast.incidents[event_id]["resolved"] is True
        assert squadcast.posts("resolve") == [{"status": "resolve", "event_id": event_id}]
        alarm = engine.get("m1m3-temperature:salIndex=1")
        assert alarm is not None and alarm.resolve_id == "" and alarm.escalated_id == ""
        assert await engine.scan(lambda _p: True) == 0
        assert len(squadcast.posts("trigger")) == 2


@pytest.mark.asyncio
async def test_without_an_escalation_url_the_failure_is_recorded_once() -> None:
    table, sent, clock = MemoryTable(), Sent(), Clock()
    engine = AlarmEngine(PAGED, DurableTable(table), sent, clock)
    await engine.on_trigger(_trigger(Severity.CRITICAL), 0)
    clock.now += timedelta(minutes=10)
    await engine.scan(lambda _p: True)
    alarm = engine.get("m1m3-temperature:salIndex=1")
    assert alarm is not None
    assert alarm.escalated_id == "Failed: CATCHER_ESCALATION_URL is not set."
    assert alarm.escalate_at is None


class Silences:
    """What the silences view gives the engine."""

    def __init__(self) -> None:
        self.values: dict[str, Silence] = {}
        self.version = 0

    def add(self, silence: Silence) -> None:
        self.values[silence.id] = silence
        self.version += 1


def _silence(clock: Clock, **fields: object) -> Silence:
    return Silence.model_validate(
        {
            "starts_at": clock.now,
            "ends_at": clock.now + timedelta(hours=2),
            "comment": "M1M3 maintenance",
            "created_by": "ana",
            "created_at": clock.now,
            **fields,
        }
    )


def test_silences_match_names_and_tags_and_have_states() -> None:
    clock = Clock()
    alarm = Alarm(name="m1m3-temperature:salIndex=1", rule_id="m1m3", tags={"salIndex": "1"})
    assert _silence(clock, name="m1m3-.*").matches(alarm)
    assert not _silence(clock, name="m1m3").matches(alarm)  # whole names only
    assert _silence(clock, tags={"salIndex": "[12]"}).matches(alarm)
    assert not _silence(clock, tags={"salIndex": "2"}).matches(alarm)
    assert not _silence(clock, tags={"cscName": ".*"}).matches(alarm)
    later = _silence(clock, starts_at=clock.now + timedelta(hours=1))
    assert later.state(clock.now) == "pending"
    assert later.state(clock.now + timedelta(hours=1)) == "active"
    assert later.state(clock.now + timedelta(hours=2)) == "expired"
    ended = _silence(clock, expired_at=clock.now + timedelta(minutes=1))
    assert ended.state(clock.now + timedelta(minutes=1)) == "expired"
    with pytest.raises(ValueError, match="not a pattern Catcher can match"):
        _silence(clock, name="(")
    hostile = {"(a+)+$": "a" * 5000 + "!", "(.*.*)*!": "a" * 5000, "(x+x+)+y": "x" * 5000}
    for pattern, text in hostile.items():  # linear time: Python's re would never return
        assert not _silence(clock, name=pattern).matches(alarm.model_copy(update={"name": text}))
    with pytest.raises(ValueError, match="no backreferences or lookaround"):
        _silence(clock, name=r"(a)\1")
    with pytest.raises(ValueError, match="at most 500 characters"):
        _silence(clock, tags={"salIndex": "a" * 501})


@pytest.mark.asyncio
async def test_a_silence_mutes_alarms_that_appear_later_and_lets_go_when_expired() -> None:
    table, sent, clock, silences = MemoryTable(), Sent(), Clock(), Silences()
    engine = AlarmEngine(RULES, DurableTable(table), sent, clock, silences=silences)
    window = _silence(clock, name="m1m3-temperature:.*", starts_at=clock.now + timedelta(hours=1))
    silences.add(window)
    await engine.scan(lambda _p: True)
    clock.now += timedelta(hours=1)
    await engine.on_trigger(_trigger(Severity.CRITICAL), 0)  # appears during the silence
    alarm = engine.get("m1m3-temperature:salIndex=1")
    assert alarm is not None and alarm.silence_id == window.id
    assert (alarm.muted_severity, alarm.muted_by) == (Severity.CRITICAL, "silence by ana")
    assert alarm.unmute_at == window.ends_at
    # An operator expires the silence early: the alarm is unmuted at the next scan.
    silences.add(window.model_copy(update={"expired_at": clock.now}))
    assert await engine.scan(lambda _p: True) == 1
    alarm = engine.get("m1m3-temperature:salIndex=1")
    assert alarm is not None and not alarm.muted and alarm.silence_id == ""


@pytest.mark.asyncio
async def test_a_silence_starting_later_mutes_existing_alarms_when_it_starts() -> None:
    table, sent, clock, silences = MemoryTable(), Sent(), Clock(), Silences()
    engine = AlarmEngine(RULES, DurableTable(table), sent, clock, silences=silences)
    await engine.on_trigger(_trigger(Severity.WARNING), 0)
    silences.add(_silence(clock, tags={"salIndex": "1"}, starts_at=clock.now + timedelta(hours=1)))
    assert await engine.scan(lambda _p: True) == 0
    clock.now += timedelta(hours=1)
    assert await engine.scan(lambda _p: True) == 1
    alarm = engine.get("m1m3-temperature:salIndex=1")
    assert alarm is not None and alarm.muted
    clock.now += timedelta(hours=2)  # the silence ends: the unmute timer fires
    await engine.scan(lambda _p: True)
    alarm = engine.get("m1m3-temperature:salIndex=1")
    assert alarm is not None and not alarm.muted


@pytest.mark.asyncio
async def test_a_command_delivered_again_is_applied_once() -> None:
    engine, _, sent, clock = _engine()
    await engine.on_trigger(_trigger(Severity.CRITICAL), 0)
    mute = _command(CommandKind.mute, clock, severity=Severity.CRITICAL, duration="1h")
    first = await engine.on_command(mute, 0)
    assert first is not None and first.muted
    clock.now += timedelta(minutes=30)
    again = await engine.on_command(mute, 0)  # redelivered after a restart
    assert again == first  # not muted again for another hour from now
    assert [r[1].command_id for r in sent.records if r[1] is not None] == [mute.command_id]


def _condition(group_by: list[str]) -> dict[str, object]:
    return {
        "source": {"measurement": "lsst.sal.X.y", "field": "v", "group_by": group_by},
        "aggregate": "max",
        "window": "1m",
        "thresholds": {"warning": 1},
    }


@pytest.mark.asyncio
async def test_a_rule_with_one_series_has_its_alarm_from_start_up_and_can_be_muted() -> None:
    rules = RuleSet(
        [
            Rule.model_validate(
                {
                    "id": "dome-wind",
                    "description": "d",
                    "condition": _condition([]),
                    "alarm": {"escalate": {"responder": "dome-team", "delay": "5m"}},
                }
            ),
            Rule.model_validate(
                {"id": "hexapods", "description": "d", "condition": _condition(["salIndex"])}
            ),
            Rule.model_validate(
                {
                    "id": "off",
                    "description": "d",
                    "condition": _condition([]),
                    "alarm": {"enabled": False},
                }
            ),
        ]
    )
    table, sent, clock = MemoryTable(), Sent(), Clock()
    partitions = 3
    engine = AlarmEngine(rules, DurableTable(table), sent, clock, partitions=partitions)
    owner = series_partition("dome-wind|", partitions)
    assert await engine.ensure_nominal(lambda p: p != owner, clock.now) == 0  # not ours
    assert await engine.ensure_nominal(lambda p: p == owner, clock.now) == 1
    ((alarm, command),) = sent.records
    assert alarm.name == "dome-wind" and alarm.nominal and command is None
    assert alarm.escalate_to == "dome-team"
    # Written to the changelog partition where its series' triggers and commands arrive:
    assert [(p, k) for p, k, _ in table.changelog] == [(owner, "dome-wind")]
    assert await engine.scan(lambda p: True) == 0  # once
    mute = AlarmCommand.model_validate(
        {
            "command": CommandKind.mute,
            "name": "dome-wind",
            "rule_id": "dome-wind",
            "severity": Severity.CRITICAL,
            "duration": timedelta(hours=2),
            "user": "ana",
            "command_id": str(uuid.uuid4()),
            "time": clock.now,
            "comment": "dome maintenance",
        }
    )
    muted = await engine.on_command(mute, owner)
    assert muted is not None and muted.muted and muted.nominal
    await engine.on_trigger(
        Trigger.create(
            "dome-wind", Severity.CRITICAL, reason="gusts", source=TriggerSource.manual
        ),
        owner,
    )
    fired = engine.get("dome-wind")
    assert fired is not None and fired.severity == Severity.CRITICAL and fired.muted
    assert fired.escalate_at is None  # muted at CRITICAL: nobody paged


def test_series_partitions_are_the_producers() -> None:
    # Known answers of Kafka's Java client (Utils.toPositive(Utils.murmur2(key)) % 3, from
    # kafka-clients 4.1.1), the partitioner every producer of the series topic uses.
    keys = ("a", "dome-wind|", "m1m3-temperature|salIndex=1", "hexapods|salIndex=2")
    assert [series_partition(k, 3) for k in keys] == [1, 0, 0, 1]


@pytest.mark.asyncio
async def test_the_escalation_table_pages_alarms_of_rules_without_their_own_block() -> None:
    rules = RuleSet(
        [Rule.model_validate({"id": "m1m3-temperature", "description": "d"})],
        escalation=[
            EscalationRoute.model_validate(
                {"alarms": ["m1m3-*:salIndex=1"], "responder": "night", "delay": "5m"}
            )
        ],
    )
    table, sent, clock = MemoryTable(), Sent(), Clock()
    engine = AlarmEngine(rules, DurableTable(table), sent, clock)
    await engine.on_trigger(_trigger(Severity.CRITICAL), 0)
    alarm = engine.get("m1m3-temperature:salIndex=1")
    assert alarm is not None and alarm.escalate_to == "night"
    assert alarm.escalate_at == clock.now + timedelta(minutes=5)
    other = Trigger.create(
        "m1m3-temperature",
        Severity.CRITICAL,
        reason="hot",
        source=TriggerSource.manual,
        tags={"salIndex": "2"},
    )
    await engine.on_trigger(other, 0)
    unrouted = engine.get("m1m3-temperature:salIndex=2")
    assert unrouted is not None and unrouted.escalate_at is None and unrouted.escalate_to == ""


@pytest.mark.asyncio
async def test_a_rule_disabled_at_run_time_changes_none_of_its_alarms() -> None:
    class States:
        def __init__(self) -> None:
            self.values: dict[str, RuleState] = {}

    states = States()
    table, sent, clock = MemoryTable(), Sent(), Clock()
    engine = AlarmEngine(RULES, DurableTable(table), sent, clock, rule_states=states)
    await engine.on_trigger(_trigger(Severity.WARNING), 0)
    assert len(sent.records) == 1
    states.values["m1m3-temperature"] = RuleState(
        rule_id="m1m3-temperature", alarms_enabled=False, by="ana", at=clock.now
    )
    await engine.on_trigger(_trigger(Severity.CRITICAL), 0)
    alarm = engine.get("m1m3-temperature:salIndex=1")
    assert alarm is not None and alarm.severity == Severity.WARNING  # unchanged
    assert len(sent.records) == 1
    acked = await engine.on_command(
        _command(CommandKind.acknowledge, clock, severity="WARNING"), 0
    )
    assert acked is not None and acked.acknowledged  # operators still handle its alarms
    states.values["m1m3-temperature"] = RuleState(
        rule_id="m1m3-temperature", alarms_enabled=True, by="ana", at=clock.now
    )
    await engine.on_trigger(_trigger(Severity.CRITICAL), 0)
    alarm = engine.get("m1m3-temperature:salIndex=1")
    assert alarm is not None and alarm.severity == Severity.CRITICAL
