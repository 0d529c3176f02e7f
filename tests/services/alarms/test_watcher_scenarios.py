"""The scenarios of lsst-ts/ts_watcher's ``tests/test_alarm.py``, run on Catcher's machine.

Each test below is one of the Watcher's, translated: its ``alarm_iter`` (every allowed pair
of severity and maximum severity) and its assertions, with the Watcher's TAI clock made a
clock that moves one second a step, ``ValueError`` made :class:`AlarmCommandError`, and
"updated" made "a new alarm was returned". Where Catcher differs on purpose, the test says
so and the README argues it.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from catcher.exceptions import AlarmCommandError
from catcher.models.alarms import Alarm, AlarmSettings, Escalation
from catcher.models.enums import Severity
from catcher.services.alarms import machine as m

NONE, WARNING, SERIOUS, CRITICAL = Severity
T0 = datetime(2026, 11, 24, 3, 0, tzinfo=UTC)
NO_TIMERS = AlarmSettings(
    auto_acknowledge_delay=timedelta(0), auto_unacknowledge_delay=timedelta(0)
)


class Clock:
    """The Watcher's ``utils.current_tai()``: each reading is a second later."""

    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        self.now += timedelta(seconds=1)
        return self.now


def alarm_iter(settings: AlarmSettings, clock: Clock) -> Iterator[Alarm]:
    """Every allowed alarm: nominal, each severity, each maximum with each lower severity."""
    fresh = Alarm(name="test.alarm", rule_id="test")
    yield fresh
    for severity in (WARNING, SERIOUS, CRITICAL):
        yield m.set_severity(fresh, severity, f"set severity={severity.name}", clock(), settings)
    for top in (WARNING, SERIOUS, CRITICAL):
        for severity in Severity:
            if severity >= top:
                continue
            alarm = m.set_severity(fresh, top, "to the top", clock(), settings)
            yield m.set_severity(
                alarm, severity, f"{severity.name} after {top.name}", clock(), settings
            )


def test_alarm_iter_gives_every_allowed_state() -> None:
    states = [(a.severity, a.max_severity) for a in alarm_iter(NO_TIMERS, Clock())]
    assert len(states) == 1 + 3 + 6
    assert all(severity <= top for severity, top in states)


def test_none_severity_when_nominal() -> None:
    alarm = Alarm(name="an_alarm", rule_id="r")
    same = m.set_severity(alarm, NONE, "this reason will be ignored", T0, NO_TIMERS)
    assert same is alarm and same.reason == "" and same.nominal and not same.acknowledged


def test_decreasing_severity() -> None:
    clock = Clock()
    for alarm0 in alarm_iter(NO_TIMERS, clock):
        alarm = alarm0
        for severity in reversed(list(Severity)):
            if severity >= alarm.severity:
                continue
            now = clock()
            alarm = m.set_severity(alarm, severity, f"set to {severity.name}", now, NO_TIMERS)
            assert alarm.severity == severity and alarm.max_severity == alarm0.max_severity
            assert not alarm.acknowledged and alarm.acknowledged_by == ""
            assert alarm.severity_oldest == alarm.severity_newest == now
            assert alarm.max_severity_time == alarm0.max_severity_time
            assert alarm.acknowledged_time == alarm0.acknowledged_time
            assert alarm.muted_severity == NONE and not alarm.nominal


def test_increasing_severity() -> None:
    clock = Clock()
    for alarm0 in alarm_iter(NO_TIMERS, clock):
        alarm = alarm0
        for severity in Severity:
            if severity <= alarm.max_severity:
                continue
            now = clock()
            reason = f"set to {severity.name}"
            alarm = m.set_severity(alarm, severity, reason, now, NO_TIMERS)
            assert alarm.severity == alarm.max_severity == severity and alarm.reason == reason
            assert not alarm.acknowledged and alarm.acknowledged_by == ""
            assert alarm.muted_severity == NONE and not alarm.nominal
            assert alarm.severity_oldest == alarm.severity_newest == alarm.max_severity_time == now


def test_repeating_severity() -> None:
    clock = Clock()
    for alarm0 in alarm_iter(NO_TIMERS, clock):
        reason = f"set again to {alarm0.severity.name}"
        now = clock()
        alarm = m.set_severity(alarm0, alarm0.severity, reason, now, NO_TIMERS)
        if alarm0.nominal:
            assert alarm is alarm0
            continue
        assert (alarm.severity, alarm.max_severity) == (alarm0.severity, alarm0.max_severity)
        assert alarm.reason == (alarm0.reason if alarm0.severity == NONE else reason)
        assert not alarm.acknowledged and alarm.muted_severity == NONE
        assert alarm.severity_oldest == alarm0.severity_oldest and alarm.severity_newest == now
        assert alarm.max_severity_time == alarm0.max_severity_time
        assert alarm.acknowledged_time == alarm0.acknowledged_time


@pytest.mark.parametrize("auto_unacknowledge", [timedelta(0), timedelta(seconds=1)])
def test_acknowledge(auto_unacknowledge: timedelta) -> None:
    settings = NO_TIMERS.model_copy(update={"auto_unacknowledge_delay": auto_unacknowledge})
    clock = Clock()
    for alarm0 in alarm_iter(settings, clock):
        if alarm0.nominal:
            assert m.acknowledge(alarm0, CRITICAL, "skipper", clock(), settings) is alarm0
            continue
        for ack_severity in Severity:
            if ack_severity < alarm0.max_severity:
                with pytest.raises(AlarmCommandError):
                    m.acknowledge(alarm0, ack_severity, "skipper", clock(), settings)
                continue
            now = clock()
            alarm = m.acknowledge(alarm0, ack_severity, "skipper", now, settings)
            assert alarm.severity == alarm0.severity
            assert alarm.acknowledged and alarm.acknowledged_by == "skipper"
            assert alarm.auto_acknowledge_at is None and alarm.escalate_at is None
            if alarm0.severity == NONE:  # reset to nominal, acknowledged
                assert alarm.max_severity == NONE and alarm.nominal
            else:
                assert alarm.max_severity == ack_severity and not alarm.nominal
            assert alarm.severity_oldest == alarm0.severity_oldest
            assert alarm.severity_newest == alarm0.severity_newest
            assert alarm.max_severity_time == alarm.acknowledged_time == now
            unack_running = auto_unacknowledge > timedelta(0) and alarm.severity > NONE
            assert (alarm.auto_unacknowledge_at is not None) == unack_running
            # Acknowledging again changes nothing but the auto-unacknowledge timer.
            later = clock()
            again = m.acknowledge(alarm, ack_severity, "a different user", later, settings)
            if unack_running:
                assert again.auto_unacknowledge_at == later + auto_unacknowledge
                assert again.model_copy(
                    update={"auto_unacknowledge_at": None, "updated": None}
                ) == alarm.model_copy(update={"auto_unacknowledge_at": None, "updated": None})
            else:
                assert again is alarm


def test_unacknowledge() -> None:
    clock = Clock()
    for alarm0 in alarm_iter(NO_TIMERS, clock):
        if alarm0.nominal:
            continue
        assert m.unacknowledge(alarm0, clock(), NO_TIMERS) is alarm0  # not acknowledged
        for ack_severity in Severity:
            if ack_severity < alarm0.max_severity:
                continue
            acked = m.acknowledge(alarm0, ack_severity, "skipper", clock(), NO_TIMERS)
            assert acked.acknowledged and acked.nominal == (alarm0.severity == NONE)
            now = clock()
            alarm = m.unacknowledge(acked, now, NO_TIMERS)
            if acked.nominal:
                assert alarm is acked
                continue
            assert not alarm.nominal and not alarm.acknowledged and alarm.acknowledged_time == now
            assert alarm.severity_oldest == acked.severity_oldest
            assert alarm.severity_newest == acked.severity_newest
            assert alarm.max_severity_time == acked.max_severity_time


def test_escalation() -> None:
    delay = timedelta(seconds=30)
    settings = NO_TIMERS.model_copy(
        update={"escalate": Escalation(responder="chaos", delay=delay)}
    )
    clock = Clock()
    for alarm in alarm_iter(settings, clock):
        if not alarm.nominal:  # Catcher shows the responder from the first evaluation on
            assert alarm.escalate_to == "chaos"
        if alarm.severity < CRITICAL:
            assert alarm.escalate_at is None
            continue
        assert alarm.escalate_at is not None
        assert m.escalation_due(alarm, alarm.escalate_at - timedelta(seconds=1)) is None
        # Muting cancels the escalation timer; the end of the mute starts it again.
        muted = m.mute(alarm, timedelta(seconds=1), CRITICAL, "muter", clock())
        assert muted.muted and muted.escalate_at is None
        assert muted.unmute_at is not None
        unmuted = m.fire_timers(muted, muted.unmute_at, settings)
        assert not unmuted.muted and unmuted.escalate_at == muted.unmute_at + delay
        # The timer fires: the alarm is to be escalated.
        event_id = m.escalation_due(unmuted, unmuted.escalate_at)
        assert event_id is not None
        paged = m.escalation_sent(unmuted, event_id, unmuted.escalate_at)
        # As the Watcher's timestampEscalate, the escalation time stays after the page.
        assert paged.escalate_at == unmuted.escalate_at and paged.escalate_to == "chaos"
        assert m.escalation_due(paged, paged.escalate_at + delay) is None  # paged once
        assert paged.next_due() is None
        # Acknowledging clears the escalation.
        acked = m.acknowledge(paged, CRITICAL, "arbitrary", clock(), settings)
        assert acked.escalate_at is None and acked.resolve_id == event_id


def test_unacknowledging_below_critical_starts_no_escalation() -> None:
    """A deliberate difference, argued in the README.

    The Watcher starts its timer when an alarm whose maximum is CRITICAL is unacknowledged
    (or unmuted) at a lower severity, and its next evaluation below CRITICAL cancels it.
    Catcher's series are not evaluated again while nothing changes, so such a timer would
    run out: an alarm back at CRITICAL was paged at once. Here nothing starts; the
    alarm is paged after the full delay once it is CRITICAL and unacknowledged again.
    """
    settings = NO_TIMERS.model_copy(
        update={"escalate": Escalation(responder="chaos", delay=timedelta(seconds=60))}
    )
    clock = Clock()
    alarm = m.set_severity(Alarm(name="x", rule_id="x"), CRITICAL, "hot", clock(), settings)
    alarm = m.acknowledge(alarm, CRITICAL, "ana", clock(), settings)
    alarm = m.set_severity(alarm, SERIOUS, "cooler", clock(), settings)
    alarm = m.unacknowledge(alarm, clock(), settings)
    assert alarm.escalate_at is None  # nothing due in the past, nothing shown
    alarm = m.unmute(
        m.mute(alarm, timedelta(seconds=5), WARNING, "ana", clock()), clock(), settings
    )
    assert alarm.escalate_at is None
    now = clock()
    assert m.escalation_due(m.set_severity(alarm, CRITICAL, "hot", now, settings), now) is None


def test_mute_valid_and_unmute_by_its_timer() -> None:
    clock = Clock()
    duration = timedelta(seconds=5)
    for severity in (WARNING, SERIOUS, CRITICAL):
        for alarm in alarm_iter(NO_TIMERS, clock):
            now = clock()
            muted = m.mute(alarm, duration, severity, "otho", now)
            assert muted.muted and muted.muted_by == "otho" and muted.muted_severity == severity
            assert muted.unmute_at == now + duration
            unmuted = m.fire_timers(muted, now + duration, NO_TIMERS)
            assert not unmuted.muted and unmuted.muted_by == "" and unmuted.unmute_at is None


def test_mute_invalid_changes_nothing() -> None:
    clock = Clock()
    for alarm in alarm_iter(NO_TIMERS, clock):
        for duration, severity in (
            (timedelta(0), WARNING),
            (timedelta(seconds=-0.01), WARNING),
            (timedelta(seconds=5), NONE),
            (timedelta(0), NONE),
        ):
            with pytest.raises(AlarmCommandError):
                m.mute(alarm, duration, severity, "failed user", clock())
        muted = m.mute(alarm, timedelta(seconds=5), WARNING, "otho", clock())
        with pytest.raises(AlarmCommandError):
            m.mute(muted, timedelta(0), WARNING, "failed user", clock())
        assert muted.muted_by == "otho"


def test_unmute() -> None:
    clock = Clock()
    for severity in (WARNING, SERIOUS, CRITICAL):
        for alarm in alarm_iter(NO_TIMERS, clock):
            assert m.unmute(alarm, clock(), NO_TIMERS) is alarm  # not muted: no change
            muted = m.mute(alarm, timedelta(seconds=5), severity, "otho", clock())
            unmuted = m.unmute(muted, clock(), NO_TIMERS)
            assert not unmuted.muted and unmuted.unmute_at is None and unmuted.muted_by == ""
            keep = {"updated": None}
            assert unmuted.model_copy(update=keep) == alarm.model_copy(update=keep)


def test_set_severity_when_acknowledged() -> None:
    clock = Clock()
    for alarm0 in alarm_iter(NO_TIMERS, clock):
        if alarm0.nominal:
            continue
        for ack_severity in Severity:
            if ack_severity < alarm0.max_severity:
                continue
            acked = m.acknowledge(alarm0, ack_severity, "skipper", clock(), NO_TIMERS)
            for severity in Severity:
                now = clock()
                reason = f"set severity to {severity.name} after ack"
                alarm = m.set_severity(acked, severity, reason, now, NO_TIMERS)
                if severity == NONE:
                    if acked.nominal:
                        assert alarm is acked
                    else:  # reset
                        assert alarm.max_severity == NONE and alarm.reason == ""
                        assert not alarm.acknowledged
                        assert alarm.max_severity_time == alarm.acknowledged_time == now
                    continue
                assert alarm.reason == reason and alarm.severity_newest == now
                if severity == acked.severity:
                    assert alarm.severity_oldest == acked.severity_oldest
                else:
                    assert alarm.severity_oldest == now
                if severity > acked.max_severity:  # unacknowledged
                    assert alarm.max_severity == severity and not alarm.acknowledged
                    assert alarm.max_severity_time == alarm.acknowledged_time == now
                else:  # stays acknowledged
                    assert alarm.max_severity == acked.max_severity and alarm.acknowledged
                    assert alarm.max_severity_time == acked.max_severity_time
                    assert alarm.acknowledged_time == acked.acknowledged_time


def test_auto_acknowledge() -> None:
    delay = timedelta(seconds=30)
    settings = NO_TIMERS.model_copy(update={"auto_acknowledge_delay": delay})
    clock = Clock()
    alarm = Alarm(name="test", rule_id="test")
    alarm = m.set_severity(alarm, NONE, "", clock(), settings)
    assert alarm.nominal and alarm.auto_acknowledge_at is None
    alarm = m.set_severity(alarm, WARNING, "test", clock(), settings)
    assert alarm.auto_acknowledge_at is None  # not stale: no timer
    stale_at = clock()
    alarm = m.set_severity(alarm, NONE, "", stale_at, settings)
    assert not alarm.nominal and alarm.auto_acknowledge_at == stale_at + delay
    half = m.fire_timers(alarm, stale_at + delay / 2, settings)
    assert half.max_severity == WARNING and not half.acknowledged
    alarm = m.set_severity(half, WARNING, "test", stale_at + delay / 2, settings)
    assert alarm.auto_acknowledge_at is None  # a severity above NONE cancels it
    stale_at = clock() + delay
    alarm = m.set_severity(alarm, NONE, "", stale_at, settings)
    done = m.fire_timers(alarm, stale_at + delay, settings)
    assert done.nominal and done.acknowledged and done.acknowledged_by == "automatic"


def test_auto_unacknowledge() -> None:
    delay = timedelta(seconds=30)
    settings = NO_TIMERS.model_copy(update={"auto_unacknowledge_delay": delay})
    clock = Clock()
    alarm = m.set_severity(Alarm(name="test", rule_id="test"), WARNING, "test", clock(), settings)
    assert alarm.auto_unacknowledge_at is None
    acked_at = clock()
    alarm = m.acknowledge(alarm, WARNING, "chaos", acked_at, settings)
    assert alarm.auto_unacknowledge_at == acked_at + delay
    alarm = m.unacknowledge(alarm, acked_at + delay / 2, settings)  # by hand: cancels it
    assert not alarm.acknowledged and alarm.auto_unacknowledge_at is None
    acked_at = clock() + delay
    alarm = m.acknowledge(alarm, WARNING, "chaos", acked_at, settings)
    alarm = m.set_severity(alarm, NONE, "", acked_at + delay / 2, settings)
    assert alarm.nominal and alarm.auto_unacknowledge_at is None  # reset cancels it
    alarm = m.set_severity(alarm, WARNING, "test", clock() + 2 * delay, settings)
    acked_at = clock() + 2 * delay
    alarm = m.acknowledge(alarm, WARNING, "chaos", acked_at, settings)
    done = m.fire_timers(alarm, acked_at + delay, settings)
    assert not done.acknowledged and done.auto_unacknowledge_at is None


def test_no_auto_acknowledge_or_unacknowledge_with_zero_delays() -> None:
    clock = Clock()
    alarm = m.set_severity(
        Alarm(name="test", rule_id="test"), WARNING, "why not?", clock(), NO_TIMERS
    )
    stale = m.set_severity(alarm, NONE, "", clock(), NO_TIMERS)
    assert not stale.nominal and not stale.acknowledged and stale.auto_acknowledge_at is None
    acked = m.acknowledge(alarm, WARNING, "chaos", clock(), NO_TIMERS)
    assert acked.acknowledged and acked.auto_unacknowledge_at is None
