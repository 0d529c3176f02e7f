"""The ledger: durable before visible, no state missing from the history, bounded."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from catcher.models.enums import ActionState, Severity, TriggerSource
from catcher.models.records import LedgerEntry, Trigger
from catcher.storage.ledger import Ledger
from catcher.storage.ledger_log import Finished


class PendingTable:
    """A table whose changelog writes are acknowledged when the test says so."""

    def __init__(self) -> None:
        self.data: dict[str, Any] = {}
        self.changelog: list[tuple[int | None, str, Any]] = []
        self.pending: list[asyncio.Future[None]] = []
        self.hold = False

    def send_changelog(self, partition: int | None, key: Any, value: Any) -> asyncio.Future[None]:
        self.changelog.append((partition, key, value))
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if self.hold:
            self.pending.append(future)
        else:
            future.set_result(None)
        return future


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 11, 24, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


def _entry(action_id: str, partition: int = 0) -> LedgerEntry:
    trigger = Trigger.create("r", Severity.WARNING, reason="x", source=TriggerSource.manual)
    return LedgerEntry(
        action_id=action_id,
        action_name="a",
        action_type="webhook",
        trigger=trigger,
        partition=partition,
        state=ActionState.queued,
    )


@pytest.mark.asyncio
async def test_a_write_is_visible_only_once_the_broker_has_it() -> None:
    table = PendingTable()
    events: list[str] = []

    async def record(entry: LedgerEntry) -> None:
        events.append(entry.state.value)

    ledger = Ledger(table, record)
    table.hold = True
    writing = asyncio.create_task(ledger.put(_entry("t.a")))
    await asyncio.sleep(0.01)
    assert ledger.get("t.a") is None  # not acknowledged yet: not visible
    assert events == []
    table.pending[0].set_result(None)
    table.hold = False
    await writing
    assert ledger.get("t.a") is not None
    assert events == ["queued"]


@pytest.mark.asyncio
async def test_a_history_event_lost_in_a_crash_is_sent_again_once() -> None:
    table = PendingTable()
    sent: list[str] = []
    fail = True

    async def record(entry: LedgerEntry) -> None:
        if fail:
            raise ConnectionError("the process died here")
        sent.append(entry.state.value)

    ledger = Ledger(table, record)
    with pytest.raises(ConnectionError):
        await ledger.put(_entry("t.a"), state=ActionState.succeeded)
    # After a restart: the table is recovered from its changelog, the index rebuilt.
    fail = False
    restarted = Ledger(table, record)
    restarted.rebuild_index()
    assert await restarted.republish(lambda _partition: True) == 1
    assert sent == ["succeeded"]
    assert table.data["t.a"] == Finished(ActionState.succeeded, table.data["t.a"].updated, 0)
    assert await restarted.republish(lambda _partition: True) == 0
    assert sent == ["succeeded"]


@pytest.mark.asyncio
async def test_an_event_found_on_the_actions_topic_is_marked_not_sent_again() -> None:
    """The mark of a final state lost in a crash: the event is looked up, not repeated."""
    table = PendingTable()
    sent: list[LedgerEntry] = []

    async def record(entry: LedgerEntry) -> None:
        sent.append(entry)

    first = Ledger(table, record)
    done = await first.put(_entry("done.a"), state=ActionState.succeeded)
    lost = await first.put(_entry("lost.a"), state=ActionState.failed)
    table.data["done.a"] = done.model_copy(update={"published": False}).to_json()  # mark lost
    table.data["lost.a"] = lost.model_copy(update={"published": False}).to_json()
    on_topic = {
        (e.action_id, e.state.value, e.attempt, round(e.updated.timestamp() * 1000))
        for e in sent
        if e.action_id == "done.a"
    }
    asked: list[tuple[datetime, set[str]]] = []

    async def sent_events(since: datetime, ids: set[str]) -> set[tuple[str, str, int, int]]:
        asked.append((since, ids))
        return on_topic

    sent.clear()
    restarted = Ledger(table, record, sent_events=sent_events)
    restarted.rebuild_index()
    assert await restarted.republish(lambda _partition: True) == 1
    assert [e.action_id for e in sent] == ["lost.a"]  # only the event not on the topic
    assert asked == [(done.updated - timedelta(minutes=1), {"done.a", "lost.a"})]
    assert isinstance(table.data["done.a"], Finished)
    assert isinstance(table.data["lost.a"], Finished)
    assert await restarted.republish(lambda _partition: True) == 0
    assert len(asked) == 1  # nothing left to look up


@pytest.mark.asyncio
async def test_a_state_an_action_stays_in_is_marked_by_a_later_scan() -> None:
    table = PendingTable()
    clock = Clock()

    async def record(_entry: LedgerEntry) -> None:
        return None

    ledger = Ledger(table, record, clock=clock)
    await ledger.put(_entry("job.a"), state=ActionState.submitted, job_id="j1")
    assert len(table.changelog) == 1 and ledger.settle() == 0  # just written: not yet
    clock.now += timedelta(seconds=11)
    assert ledger.settle() == 1
    assert table.changelog[-1][2]["published"] is True
    assert table.changelog[-1][2]["job_id"] == "j1"
    assert ledger.settle() == 0
    restarted = Ledger(table, record)
    restarted.rebuild_index()
    assert await restarted.republish(lambda _partition: True) == 0  # nothing to look up


@pytest.mark.asyncio
async def test_only_the_owner_sends_an_event_again() -> None:
    table = PendingTable()
    table.data["t.a"] = _entry("t.a", partition=3).to_json()  # published: false
    sent: list[str] = []

    async def record(entry: LedgerEntry) -> None:
        sent.append(entry.action_id)

    ledger = Ledger(table, record)
    ledger.rebuild_index()
    assert await ledger.republish(lambda partition: partition != 3) == 0
    assert sent == []


@pytest.mark.asyncio
async def test_finished_entries_are_tombstoned_after_the_retention() -> None:
    table = PendingTable()
    clock = Clock()

    async def record(_entry: LedgerEntry) -> None:
        return None

    ledger = Ledger(table, record, clock=clock)
    old = await ledger.put(_entry("old.a"), state=ActionState.succeeded)
    running = await ledger.put(_entry("running.a"), state=ActionState.submitted)
    other = await ledger.put(_entry("other.a", partition=1), state=ActionState.failed)
    clock.now += timedelta(days=2)
    recent = await ledger.put(_entry("recent.a"), state=ActionState.succeeded)
    clock.now += timedelta(hours=12)
    assert await ledger.prune(timedelta(days=1), lambda partition: partition == 0) == 1
    assert ledger.state_of(old.action_id) is None
    assert table.changelog[-1] == (0, "old.a", None)  # a tombstone on the changelog
    assert ledger.get(running.action_id) is not None  # unfinished: never dropped
    assert ledger.state_of(other.action_id) == "failed"  # another worker's partition
    assert ledger.state_of(recent.action_id) == "succeeded"  # within the retention
    assert [e.action_id for e in ledger.unfinished()] == ["running.a"]


@pytest.mark.asyncio
async def test_a_scan_during_a_writes_own_event_does_not_send_it_twice() -> None:
    table = PendingTable()
    sent: list[str] = []
    release = asyncio.Event()

    async def record(entry: LedgerEntry) -> None:
        if entry.state == ActionState.succeeded:
            await release.wait()  # the history event is on its way
        sent.append(entry.state.value)

    ledger = Ledger(table, record)
    writing = asyncio.create_task(ledger.put(_entry("t.a"), state=ActionState.succeeded))
    while "t.a" not in table.data:
        await asyncio.sleep(0)
    await asyncio.sleep(0)
    scan = ledger.republish(lambda _partition: True)
    assert await asyncio.wait_for(scan, 5) == 0  # its writer is sending it: not again
    release.set()
    await writing
    assert sent == ["succeeded"]
    assert await ledger.republish(lambda _partition: True) == 0
    assert sent == ["succeeded"]
