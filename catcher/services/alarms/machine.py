"""The Watcher's alarm state machine, as pure functions.

Each function takes an alarm, the time and the rule's :class:`AlarmSettings`, and returns
the new alarm (the same object when nothing changed). Operator commands that make no sense
raise :class:`AlarmCommandError` and change nothing. Side effects (paging, resolving an
incident) are decided here and done by the engine: a due ``escalate_at`` means "page now",
a non-empty ``resolve_id`` means "resolve that incident".

The semantics follow the Watcher (external-apis.md §6):

- ``set_severity``: NONE on a nominal alarm is ignored; rising above the maximum severity
  unacknowledges and raises the maximum; becoming CRITICAL starts the escalation timer and
  dropping below CRITICAL cancels it; NONE while acknowledged resets the alarm to nominal,
  NONE while unacknowledged makes it stale and starts the auto-acknowledge timer.
- ``acknowledge``: refused below the maximum severity; cancels escalation; a stale alarm is
  reset to nominal, acknowledged by the user (``automatic`` for the auto-acknowledge
  timer) until it rises again; an active one gets ``max_severity = severity`` and the
  auto-unacknowledge timer.
- ``escalate_to`` names the rule's responder on every state; ``escalate_at`` stays after
  the page, as the Watcher's ``timestampEscalate``.
- ``mute``: a positive duration and a severity above NONE; cancels escalation and starts
  the unmute timer. ``unmute`` (like ``unacknowledge``) restarts escalation for an
  unacknowledged alarm that is CRITICAL now.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from ...exceptions import AlarmCommandError
from ...models.alarms import Alarm, AlarmSettings, escalation_event_id
from ...models.enums import Severity

__all__ = [
    "AUTOMATIC",
    "acknowledge",
    "escalation_due",
    "escalation_failed",
    "escalation_sent",
    "fire_timers",
    "mute",
    "resolved",
    "responder",
    "set_severity",
    "silence",
    "unacknowledge",
    "unmute",
]

AUTOMATIC = "automatic"
"""The user recorded for changes made by a timer."""


def _update(alarm: Alarm, now: datetime, **changes: Any) -> Alarm:
    return alarm.model_copy(update={**changes, "updated": now})


def responder(settings: AlarmSettings) -> str:
    """Who the rule's alarms are escalated to ("" for nobody), shown on every state."""
    return settings.escalate.responder if settings.escalate is not None else ""


def _escalation_start(alarm: Alarm, now: datetime, settings: AlarmSettings) -> dict[str, Any]:
    """Start the escalation timer of an unacknowledged CRITICAL alarm not paged already.

    Unacknowledging or unmuting while the maximum is CRITICAL and the severity lower starts
    nothing: the Watcher starts its timer, and its next evaluation below CRITICAL cancels
    it; here a series at a steady severity may not be evaluated again for a long time.
    """
    if settings.escalate is None or alarm.acknowledged or alarm.escalated_id:
        return {}
    if alarm.muted_severity >= Severity.CRITICAL or alarm.severity != Severity.CRITICAL:
        return {}
    return {
        "escalate_at": now + settings.escalate.delay,
        "escalate_to": settings.escalate.responder,
    }


def _incident_closed(alarm: Alarm) -> dict[str, Any]:
    """Cancel escalation; an incident already sent is to be resolved."""
    changes: dict[str, Any] = {"escalate_at": None, "escalation_attempts": 0}
    if alarm.escalated_id and not alarm.escalated_id.startswith("Failed"):
        changes["resolve_id"] = alarm.escalated_id
    changes["escalated_id"] = ""
    return changes


def _nominal(alarm: Alarm, now: datetime) -> dict[str, Any]:
    return {
        "severity": Severity.NONE,
        "max_severity": Severity.NONE,
        "reason": "",
        "acknowledged": False,
        "acknowledged_by": "",
        "acknowledged_time": now,
        "max_severity_time": now,
        "auto_acknowledge_at": None,
        "auto_unacknowledge_at": None,
        **_incident_closed(alarm),
    }


def _cleared(alarm: Alarm, now: datetime, settings: AlarmSettings) -> dict[str, Any]:
    """Back to NONE: nominal when acknowledged, else stale with auto-acknowledge."""
    if alarm.acknowledged:
        return _nominal(alarm, now)
    changes = _incident_closed(alarm)
    delay = settings.auto_acknowledge_delay
    if delay > timedelta(0) and alarm.auto_acknowledge_at is None:
        changes["auto_acknowledge_at"] = now + delay
    return changes


def set_severity(
    alarm: Alarm, severity: Severity, reason: str, now: datetime, settings: AlarmSettings
) -> Alarm:
    """A new severity from a rule's evaluation."""
    if severity == Severity.NONE and alarm.nominal:
        return alarm
    changes: dict[str, Any] = {"severity_newest": now, "escalate_to": responder(settings)}
    if alarm.severity != severity:
        changes["severity_oldest"] = now
    changes["severity"] = severity
    if severity != Severity.NONE:
        changes["reason"] = reason
    if severity != Severity.CRITICAL and alarm.escalate_at is not None:
        changes["escalate_at"] = None
    if severity == Severity.NONE:
        return _update(alarm, now, **{**changes, **_cleared(alarm, now, settings)})
    changes["auto_acknowledge_at"] = None
    if severity > alarm.max_severity:
        if alarm.acknowledged:
            changes.update(
                acknowledged=False,
                acknowledged_by="",
                acknowledged_time=now,
                auto_unacknowledge_at=None,
            )
        changes.update(max_severity=severity, max_severity_time=now)
        if severity == Severity.CRITICAL:
            raised = alarm.model_copy(update={"acknowledged": False, "severity": severity})
            changes.update(_escalation_start(raised, now, settings))
    return _update(alarm, now, **changes)


def acknowledge(
    alarm: Alarm,
    severity: Severity,
    user: str,
    now: datetime,
    settings: AlarmSettings,
    *,
    comment: str = "",
) -> Alarm:
    """Acknowledge at ``severity``, which must not be below the maximum severity."""
    if severity < alarm.max_severity:
        raise AlarmCommandError(
            f"{alarm.name}: cannot acknowledge at {severity.name}, below its maximum"
            f" severity {alarm.max_severity.name}; acknowledge at {alarm.max_severity.name}"
            " or above."
        )
    if alarm.nominal:
        return alarm
    note = {"comment": comment} if comment else {}
    delay = settings.auto_unacknowledge_delay
    if alarm.acknowledged:
        if alarm.severity > Severity.NONE and delay > timedelta(0):
            return _update(alarm, now, auto_unacknowledge_at=now + delay, **note)
        return alarm
    if alarm.severity == Severity.NONE:
        # A stale alarm is reset to nominal, acknowledged by the user (as the Watcher does).
        reset = {**_nominal(alarm, now), "reason": alarm.reason}
        reset.update(acknowledged=True, acknowledged_by=user)
        return _update(alarm, now, **reset, **note)
    return _update(
        alarm,
        now,
        acknowledged=True,
        acknowledged_by=user,
        acknowledged_time=now,
        max_severity=severity,
        max_severity_time=now,
        auto_acknowledge_at=None,
        auto_unacknowledge_at=now + delay if delay > timedelta(0) else None,
        **_incident_closed(alarm),
        **note,
    )


def unacknowledge(
    alarm: Alarm,
    now: datetime,
    settings: AlarmSettings,
    *,
    escalate: bool = True,
    comment: str = "",
) -> Alarm:
    """Undo an acknowledgement (``escalate=False`` for the automatic one)."""
    if alarm.nominal or not alarm.acknowledged:
        if alarm.auto_unacknowledge_at is None:
            return alarm
        return _update(alarm, now, auto_unacknowledge_at=None)
    changes: dict[str, Any] = {
        "acknowledged": False,
        "acknowledged_by": "",
        "acknowledged_time": now,
        "auto_unacknowledge_at": None,
    }
    if comment:
        changes["comment"] = comment
    if escalate and alarm.max_severity == Severity.CRITICAL:
        changes.update(
            _escalation_start(alarm.model_copy(update={"acknowledged": False}), now, settings)
        )
    return _update(alarm, now, **changes)


def mute(
    alarm: Alarm,
    duration: timedelta,
    severity: Severity,
    user: str,
    now: datetime,
    *,
    comment: str = "",
) -> Alarm:
    """Mute up to ``severity`` for ``duration``; a later mute replaces an earlier one."""
    if duration <= timedelta(0):
        raise AlarmCommandError(f"{alarm.name}: a mute needs a duration longer than zero.")
    if severity == Severity.NONE:
        raise AlarmCommandError(f"{alarm.name}: mute at WARNING, SERIOUS or CRITICAL, not NONE.")
    changes: dict[str, Any] = {
        "muted_severity": severity,
        "muted_by": user,
        "unmute_at": now + duration,
        "escalate_at": None,
        "silence_id": "",
    }
    if comment:
        changes["comment"] = comment
    return _update(alarm, now, **changes)


def silence(alarm: Alarm, silence_id: str, until: datetime, by: str, now: datetime) -> Alarm:
    """Mute every severity until ``until`` because a silence covers the alarm."""
    if alarm.silence_id == silence_id and alarm.unmute_at == until:
        return alarm
    return _update(
        alarm,
        now,
        muted_severity=Severity.CRITICAL,
        muted_by=by,
        unmute_at=until,
        escalate_at=None,
        silence_id=silence_id,
    )


def unmute(alarm: Alarm, now: datetime, settings: AlarmSettings, comment: str = "") -> Alarm:
    """End a mute; an unacknowledged CRITICAL alarm starts its escalation again."""
    if not alarm.muted and alarm.unmute_at is None:
        return alarm
    changes: dict[str, Any] = {
        "muted_severity": Severity.NONE,
        "muted_by": "",
        "unmute_at": None,
        "silence_id": "",
    }
    if comment:
        changes["comment"] = comment
    unmuted = alarm.model_copy(update=changes)
    if alarm.max_severity == Severity.CRITICAL and not alarm.acknowledged:
        changes.update(_escalation_start(unmuted, now, settings))
    return _update(alarm, now, **changes)


def fire_timers(alarm: Alarm, now: datetime, settings: AlarmSettings) -> Alarm:
    """Apply every timer that is due (escalation excepted: see :func:`escalation_due`)."""
    if alarm.unmute_at is not None and alarm.unmute_at <= now:
        alarm = unmute(alarm, now, settings)
    if alarm.auto_unacknowledge_at is not None and alarm.auto_unacknowledge_at <= now:
        alarm = unacknowledge(alarm, now, settings, escalate=False)
    if alarm.auto_acknowledge_at is not None and alarm.auto_acknowledge_at <= now:
        if alarm.severity == Severity.NONE and not alarm.acknowledged:
            alarm = acknowledge(alarm, alarm.max_severity, AUTOMATIC, now, settings)
        else:
            alarm = _update(alarm, now, auto_acknowledge_at=None)
    return alarm


def escalation_due(alarm: Alarm, now: datetime) -> str | None:
    """The incident's event id when the alarm is to be paged now, else None."""
    if alarm.escalate_at is None or alarm.escalate_at > now or alarm.paged:
        return None
    if alarm.severity != Severity.CRITICAL or alarm.acknowledged:
        return None
    return escalation_event_id(alarm.name, alarm.max_severity_time or alarm.escalate_at)


def escalation_sent(alarm: Alarm, event_id: str, now: datetime) -> Alarm:
    """The incident was accepted: remember its id, so that it is resolved later.

    ``escalate_at`` stays (the Watcher's ``timestampEscalate`` keeps the escalation time
    after the page) until an acknowledgement or the end of the alarm cancels it.
    """
    return _update(alarm, now, escalated_id=event_id, escalation_attempts=0)


def escalation_failed(
    alarm: Alarm, error: str, now: datetime, retry_in: timedelta | None
) -> Alarm:
    """The incident could not be sent: ``Failed: ...``, tried again after ``retry_in``."""
    return _update(
        alarm,
        now,
        escalated_id=f"Failed: {error}"[:500],
        escalate_at=now + retry_in if retry_in is not None else None,
        escalation_attempts=alarm.escalation_attempts + 1,
    )


def resolved(alarm: Alarm, now: datetime) -> Alarm:
    """The incident in ``resolve_id`` was resolved."""
    return _update(alarm, now, resolve_id="")
