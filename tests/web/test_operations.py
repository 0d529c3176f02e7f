"""The probes' decisions: a stalled consumer, and what readiness and work depend on."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

from catcher.storage.tables import Ownership
from catcher.web.operations import StallWatch, WorkerProbes


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_partition_with_records_waiting_and_none_done_for_the_limit_is_stalled() -> None:
    clock = Clock()
    watch = StallWatch(300, clock)
    assert watch.check({"t-0": (10, 15)}) == ""  # first seen
    clock.now = 299
    assert watch.check({"t-0": (10, 15)}) == ""
    clock.now = 300
    assert watch.check({"t-0": (10, 15)}) == (
        "Records wait and none are done: t-0 (5 waiting, none done for 300 s)."
    )
    assert watch.check({"t-0": (11, 16)}) == ""  # one done: the clock starts again
    clock.now = 900
    assert watch.check({"t-0": (16, 16)}) == ""  # caught up, however long idle
    clock.now = 1500
    assert watch.check({"t-0": (16, 16)}) == ""
    assert watch.check({"t-0": (16, 20)}) == ""  # new records: a new wait starts
    clock.now = 1600
    assert watch.check({}) == ""  # revoked: forgotten
    assert watch.check({"t-0": (16, 20)}) == ""


def _probes(
    *, loaded: bool, rebalancing: bool, recovered: bool, clock: Clock | None = None
) -> tuple[WorkerProbes, Any]:
    def event(value: bool) -> asyncio.Event:
        flag = asyncio.Event()
        if value:
            flag.set()
        return flag

    services = SimpleNamespace(
        view=SimpleNamespace(loaded=event(loaded)),
        silences=SimpleNamespace(loaded=event(True)),
        rule_states=SimpleNamespace(loaded=event(True)),
        ownership=Ownership(),
    )
    faust = SimpleNamespace(
        rebalancing=rebalancing,
        tables=SimpleNamespace(recovery=SimpleNamespace(completed=event(recovered))),
    )
    return WorkerProbes(faust, services, {"t"}, 300, clock or Clock()), services


def test_readiness_is_the_apis_and_work_is_the_partitions() -> None:
    probes, services = _probes(loaded=True, rebalancing=False, recovered=False)
    assert probes.not_ready() == ""  # not in the group yet, and ready: it serves the API
    assert probes.not_working() == "Not in the consumer group yet."
    services.ownership.assign([])
    assert probes.not_ready() == ""
    assert probes.not_working() == "No partitions assigned (more workers than partitions?)."
    services.ownership.assign([("t", 0)])
    assert probes.not_working() == "Recovering the tables from their changelogs."
    probes, services = _probes(loaded=False, rebalancing=True, recovered=True)
    assert probes.not_ready() == "Reading the alarms topic."
    assert probes.not_working() == "Rebalancing: partitions are being assigned."
    assert probes.stalled() == ""  # a rebalance is not a stall


def test_a_recovery_that_never_finishes_is_a_stall() -> None:
    """Faust's recovery can wait forever on changelog partitions it paused: liveness fails."""
    clock = Clock()
    probes, services = _probes(loaded=True, rebalancing=False, recovered=False, clock=clock)
    clock.now = 1000
    assert probes.stalled() == ""  # not in the group yet: a broker away is not a stall
    services.ownership.assign([("t", 0)])
    assert probes.stalled() == ""  # recovering: the clock starts
    clock.now = 1299
    assert probes.stalled() == ""
    clock.now = 1300
    assert probes.stalled() == "A rebalance or the tables' recovery has not finished in 300 s."
    probes._faust.tables.recovery.completed.set()
    probes._faust.consumer = SimpleNamespace(assignment=set)
    assert probes.stalled() == ""  # recovered: no stall
