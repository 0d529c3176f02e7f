"""The series' owner: state written first, then the action requests; suppressions recorded."""

from __future__ import annotations

from datetime import timedelta

import pytest

from catcher.models.enums import ActionState, Severity
from catcher.models.records import ActionEvent, make_action_id, utcnow
from catcher.services.planning.series import SeriesOwner
from catcher.storage.tables import DurableTable
from tests.support.records import WEBHOOK_RULES as RULES
from tests.support.records import Sent
from tests.support.records import trigger_of as _trigger
from tests.support.tables import MemoryTable


@pytest.mark.asyncio
async def test_planning_writes_the_state_then_requests_and_records_suppressions() -> None:
    table = MemoryTable()
    sent = Sent()
    events: list[ActionEvent] = []

    async def record(event: ActionEvent) -> None:
        events.append(event)

    planning = SeriesOwner(RULES, DurableTable(table), sent, record, "requests")
    first = _trigger(time=utcnow() - timedelta(minutes=10))
    await planning.handle(first, partition=3)
    assert table.changelog[0][:2] == (3, "r|salIndex=1")  # state written first, durably
    action_id = make_action_id(first.trigger_id, "a")
    assert [(t, k, v["kind"]) for t, k, v in sent.records] == [
        ("requests", action_id, "action_request")
    ]
    await planning.handle(first, partition=3)  # delivered again: the same request again
    assert [k for _, k, _ in sent.records] == [action_id, action_id]
    await planning.handle(_trigger(Severity.NONE, time=utcnow() - timedelta(minutes=5)), 3)
    again = _trigger(Severity.WARNING)
    await planning.handle(again, partition=3)  # within the 1h cooldown
    assert len(sent.records) == 2
    assert [(e.action_id, e.state) for e in events] == [
        (make_action_id(again.trigger_id, "a"), ActionState.suppressed)
    ]
