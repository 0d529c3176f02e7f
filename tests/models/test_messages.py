"""Internal messages: every kind in one typed union, told apart by ``kind``."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from catcher.models.alarms import AlarmCommand
from catcher.models.messages import parse_internal
from catcher.models.records import ActionRequest, CancelRequest, TriggerMessage, utcnow
from tests.support.records import trigger_of


def test_internal_messages_are_told_apart_by_kind() -> None:
    trigger = trigger_of()
    request = ActionRequest(action_id="t.a", action_name="a", trigger=trigger)
    cancel = CancelRequest(action_id="t.a", requested_by="me")
    message = TriggerMessage(trigger=trigger)
    command = AlarmCommand.model_validate(
        {
            "command": "mute",
            "name": "r:salIndex=1",
            "rule_id": "r",
            "tags": {"salIndex": "1"},
            "user": "ana",
            "duration": "1h",
            "command_id": "c1",
            "time": utcnow(),
        }
    )
    for original in (request, cancel, message, command):
        assert parse_internal(original.to_json()) == original
    # Messages written before they carried a kind are still read.
    assert parse_internal(trigger.to_json()) == message
    assert parse_internal({"action_id": "t.a", "cancel": True, "requested_by": "me"}) == cancel
    legacy = {"action_id": "t.a", "action_name": "a", "trigger": trigger.to_json()}
    assert parse_internal(legacy) == request
    with pytest.raises(ValidationError):
        parse_internal({"kind": "alarm_command"})  # an alarm command lacking its fields
    with pytest.raises(ValidationError):
        parse_internal({"kind": "something else"})
