"""The alarm state machine, transition by transition, against the Watcher's model."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from catcher.exceptions import AlarmCommandError
from catcher.models.alarms import Alarm, AlarmSettings, DisplayState, Escalation, alarm_name
from catcher.models.enums import Severity
from catcher.services.alarms import machine as m

T0 = datetime(2026, 11, 24, 3, 0, tzinfo=UTC)
HOUR = timedelta(hours=1)
PAGE = AlarmSettings(escalate=Escalation(responder="m1m3-team", delay=timedelta(minutes=10)))
PLAIN = AlarmSettings()
NONE, WARNING, SERIOUS, CRITICAL = Severity


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def fresh() -> Alarm:
    return Alarm(name="m1m3-temperature:salIndex=1", rule_id="m1m3-temperature")


def raised(severity: Severity, settings: AlarmSettings = PLAIN) -> Alarm:
    return m.set_severity(fresh(), severity, "too warm", at(0), settings)


def test_names_are_the_rule_and_its_series() -> None:
    assert alarm_name("m1m3-temperature", {"salIndex": "1"}) == "m1m3-temperature:salIndex=1"
    assert alarm_name("dome-wind", {}) == "dome-wind"


def test_none_on_a_nominal_alarm_is_ignored() -> None:
    alarm = fresh()
    assert m.set_severity(alarm, NONE, "fine", at(1), PLAIN) is alarm


def test_rising_sets_severity_maximum_reason_and_times() -> None:
    alarm = raised(WARNING)
    assert (alarm.severity, alarm.max_severity, alarm.reason) == (WARNING, WARNING, "too warm")
    assert alarm.severity_oldest == alarm.severity_newest == alarm.max_severity_time == at(0)
    assert alarm.display_state == DisplayState.active
    same = m.set_severity(alarm, WARNING, "still warm", at(1), PLAIN)
    assert same.severity_oldest == at(0)  # unchanged severity keeps its oldest time
    assert same.severity_newest == at(1)
    assert same.reason == "still warm"


def test_rising_above_the_maximum_unacknowledges() -> None:
    alarm = m.acknowledge(raised(WARNING), WARNING, "ana", at(1), PLAIN)
    assert alarm.acknowledged and alarm.acknowledged_by == "ana"
    alarm = m.set_severity(alarm, SERIOUS, "hotter", at(2), PLAIN)
    assert not alarm.acknowledged and alarm.acknowledged_by == ""
    assert alarm.max_severity == SERIOUS and alarm.acknowledged_time == at(2)
    assert alarm.auto_unacknowledge_at is None


def test_falling_keeps_the_maximum_semi_active() -> None:
    alarm = m.set_severity(raised(SERIOUS), WARNING, "cooler", at(1), PLAIN)
    assert (alarm.severity, alarm.max_severity) == (WARNING, SERIOUS)
    assert alarm.display_state == DisplayState.semi_active


def test_none_while_unacknowledged_is_stale_and_starts_auto_acknowledge() -> None:
    alarm = m.set_severity(raised(SERIOUS), NONE, "", at(1), PLAIN)
    assert alarm.display_state == DisplayState.stale
    assert alarm.reason == "too warm"  # the reason of a NONE severity is ignored
    assert alarm.auto_acknowledge_at == at(1) + HOUR
    again = m.set_severity(alarm, NONE, "", at(5), PLAIN)
    assert again.auto_acknowledge_at == at(1) + HOUR  # the running timer is kept


def test_auto_acknowledge_resets_a_stale_alarm() -> None:
    alarm = m.set_severity(raised(SERIOUS), NONE, "", at(1), PLAIN)
    assert m.fire_timers(alarm, at(60), PLAIN) is alarm  # not due yet
    done = m.fire_timers(alarm, at(61), PLAIN)
    assert done.nominal and done.auto_acknowledge_at is None
    # As the Watcher: acknowledged by "automatic" until the alarm rises again.
    assert done.acknowledged and done.acknowledged_by == m.AUTOMATIC


def test_auto_acknowledge_off_with_a_zero_delay() -> None:
    settings = AlarmSettings(auto_acknowledge_delay=timedelta(0))
    alarm = m.set_severity(raised(SERIOUS, settings), NONE, "", at(1), settings)
    assert alarm.auto_acknowledge_at is None


def test_a_new_severity_cancels_auto_acknowledge() -> None:
    alarm = m.set_severity(raised(SERIOUS), NONE, "", at(1), PLAIN)
    alarm = m.set_severity(alarm, WARNING, "again", at(2), PLAIN)
    assert alarm.auto_acknowledge_at is None and alarm.display_state == DisplayState.semi_active


def test_none_while_acknowledged_resets_to_nominal() -> None:
    alarm = m.acknowledge(raised(SERIOUS), SERIOUS, "ana", at(1), PLAIN)
    alarm = m.set_severity(alarm, NONE, "", at(2), PLAIN)
    assert alarm.nominal and alarm.display_state == DisplayState.nominal
    assert not alarm.acknowledged and alarm.reason == ""
    assert alarm.auto_unacknowledge_at is None


def test_acknowledging_below_the_maximum_is_an_error_and_changes_nothing() -> None:
    alarm = m.set_severity(raised(CRITICAL), WARNING, "cooler", at(1), PLAIN)
    with pytest.raises(AlarmCommandError, match="below its maximum severity CRITICAL"):
        m.acknowledge(alarm, SERIOUS, "ana", at(2), PLAIN)


def test_acknowledging_above_the_current_maximum_raises_it() -> None:
    alarm = m.acknowledge(raised(WARNING), CRITICAL, "ana", at(1), PLAIN, comment="on it")
    assert alarm.max_severity == CRITICAL and alarm.acknowledged
    assert alarm.comment == "on it"
    assert alarm.auto_unacknowledge_at == at(1) + HOUR
    # Rising to SERIOUS does not unacknowledge: it is not above the acknowledged level.
    assert m.set_severity(alarm, SERIOUS, "hotter", at(2), PLAIN).acknowledged


def test_acknowledging_a_stale_alarm_resets_it() -> None:
    alarm = m.set_severity(raised(SERIOUS), NONE, "", at(1), PLAIN)
    alarm = m.acknowledge(alarm, SERIOUS, "ana", at(2), PLAIN)
    assert alarm.nominal and alarm.auto_acknowledge_at is None
    assert alarm.acknowledged and alarm.acknowledged_by == "ana"  # as the Watcher
    assert alarm.acknowledged_time == alarm.max_severity_time == at(2)
    risen = m.set_severity(alarm, WARNING, "warm again", at(3), PLAIN)
    assert not risen.acknowledged and risen.acknowledged_by == ""
    assert risen.acknowledged_time == at(3)  # the rise unacknowledges it, now


def test_acknowledging_a_nominal_alarm_changes_nothing() -> None:
    alarm = fresh()
    assert m.acknowledge(alarm, WARNING, "ana", at(1), PLAIN) is alarm


def test_acknowledging_again_restarts_auto_unacknowledge() -> None:
    alarm = m.acknowledge(raised(WARNING), WARNING, "ana", at(1), PLAIN)
    again = m.acknowledge(alarm, WARNING, "bo", at(30), PLAIN)
    assert again.auto_unacknowledge_at == at(30) + HOUR
    assert again.acknowledged_by == "ana"


def test_auto_unacknowledge_of_an_active_alarm() -> None:
    alarm = m.acknowledge(raised(WARNING), WARNING, "ana", at(1), PLAIN)
    alarm = m.fire_timers(alarm, at(61), PLAIN)
    assert not alarm.acknowledged and alarm.auto_unacknowledge_at is None
    assert alarm.display_state == DisplayState.active


def test_unacknowledge_by_hand() -> None:
    alarm = m.acknowledge(raised(WARNING), WARNING, "ana", at(1), PLAIN)
    alarm = m.unacknowledge(alarm, at(2), PLAIN)
    assert not alarm.acknowledged and alarm.acknowledged_time == at(2)
    assert m.unacknowledge(alarm, at(3), PLAIN) is alarm  # already unacknowledged


def test_critical_starts_escalation_and_below_critical_cancels_it() -> None:
    alarm = raised(CRITICAL, PAGE)
    assert alarm.escalate_at == at(10) and alarm.escalate_to == "m1m3-team"
    assert m.escalation_due(alarm, at(9)) is None
    lower = m.set_severity(alarm, SERIOUS, "cooler", at(5), PAGE)
    assert lower.escalate_at is None
    # Back to CRITICAL is not above the maximum: no new escalation (as the Watcher does).
    assert m.set_severity(lower, CRITICAL, "hot", at(6), PAGE).escalate_at is None


def test_no_escalation_without_an_escalate_block() -> None:
    assert raised(CRITICAL).escalate_at is None


def test_escalation_is_due_once_with_a_deterministic_event_id() -> None:
    alarm = raised(CRITICAL, PAGE)
    event_id = m.escalation_due(alarm, at(10))
    assert event_id is not None
    assert m.escalation_due(raised(CRITICAL, PAGE), at(11)) == event_id
    sent = m.escalation_sent(alarm, event_id, at(10))
    assert sent.escalated_id == event_id and m.escalation_due(sent, at(20)) is None


def test_acknowledge_cancels_escalation_and_resolves_a_sent_incident() -> None:
    alarm = raised(CRITICAL, PAGE)
    acked = m.acknowledge(alarm, CRITICAL, "ana", at(5), PAGE)
    assert acked.escalate_at is None and acked.resolve_id == ""
    event_id = m.escalation_due(alarm, at(10))
    assert event_id is not None
    sent = m.escalation_sent(alarm, event_id, at(10))
    acked = m.acknowledge(sent, CRITICAL, "ana", at(12), PAGE)
    assert acked.resolve_id == event_id and acked.escalated_id == ""
    assert m.resolved(acked, at(13)).resolve_id == ""


def test_clearing_resolves_a_sent_incident() -> None:
    alarm = raised(CRITICAL, PAGE)
    sent = m.escalation_sent(alarm, "e-1", at(10))
    cleared = m.set_severity(sent, NONE, "", at(11), PAGE)
    assert cleared.resolve_id == "e-1" and cleared.display_state == DisplayState.stale


def test_a_failed_escalation_is_recorded_and_retried() -> None:
    alarm = raised(CRITICAL, PAGE)
    failed = m.escalation_failed(alarm, "HTTP 503", at(10), timedelta(seconds=30))
    assert failed.escalated_id == "Failed: HTTP 503"
    assert failed.escalation_attempts == 1
    assert m.escalation_due(failed, at(10)) is None
    assert m.escalation_due(failed, at(10.5)) is not None
    given_up = m.escalation_failed(failed, "HTTP 503", at(11), None)
    assert given_up.escalate_at is None and given_up.escalated_id.startswith("Failed")


def test_mute_cancels_escalation_and_unmute_restarts_it() -> None:
    alarm = raised(CRITICAL, PAGE)
    muted = m.mute(alarm, HOUR, CRITICAL, "ana", at(1), comment="maintenance")
    assert muted.muted and muted.muted_by == "ana" and muted.unmute_at == at(61)
    assert muted.escalate_at is None and muted.comment == "maintenance"
    unmuted = m.fire_timers(muted, at(61), PAGE)
    assert not unmuted.muted and unmuted.muted_by == "" and unmuted.unmute_at is None
    assert unmuted.escalate_at == at(71)


def test_unmute_of_an_acknowledged_alarm_does_not_escalate() -> None:
    alarm = m.acknowledge(raised(CRITICAL, PAGE), CRITICAL, "ana", at(1), PAGE)
    muted = m.mute(alarm, HOUR, WARNING, "ana", at(2))
    assert m.unmute(muted, at(3), PAGE).escalate_at is None


def test_a_critical_alarm_muted_at_critical_does_not_start_escalation() -> None:
    muted = m.mute(raised(SERIOUS, PAGE), HOUR, CRITICAL, "ana", at(1))
    assert m.set_severity(muted, CRITICAL, "hot", at(2), PAGE).escalate_at is None


@pytest.mark.parametrize(
    ("duration", "severity", "message"),
    [
        (timedelta(0), WARNING, "longer than zero"),
        (-HOUR, WARNING, "longer than zero"),
        (HOUR, NONE, "not NONE"),
    ],
)
def test_invalid_mutes_are_errors(duration: timedelta, severity: Severity, message: str) -> None:
    with pytest.raises(AlarmCommandError, match=message):
        m.mute(raised(WARNING), duration, severity, "ana", at(1))


def test_a_later_mute_replaces_an_earlier_one() -> None:
    alarm = m.mute(raised(WARNING), HOUR, WARNING, "ana", at(1))
    alarm = m.mute(alarm, timedelta(minutes=5), SERIOUS, "bo", at(2))
    assert (alarm.muted_severity, alarm.muted_by, alarm.unmute_at) == (SERIOUS, "bo", at(7))


def test_unmute_of_an_alarm_that_is_not_muted_changes_nothing() -> None:
    alarm = raised(WARNING)
    assert m.unmute(alarm, at(1), PLAIN) is alarm


def test_next_due_is_the_earliest_timer() -> None:
    alarm = raised(CRITICAL, PAGE)
    assert alarm.next_due() == at(10)
    assert m.mute(alarm, HOUR, WARNING, "ana", at(1)).next_due() == at(61)
    assert fresh().next_due() is None


def test_settings_refuse_negative_delays_and_an_empty_responder() -> None:
    with pytest.raises(ValueError, match="negative"):
        AlarmSettings(auto_acknowledge_delay=-HOUR)
    with pytest.raises(ValueError, match="longer than zero"):
        Escalation(responder="x", delay=timedelta(0))
    with pytest.raises(ValueError, match="at least 1 character"):
        Escalation(responder="", delay=HOUR)
