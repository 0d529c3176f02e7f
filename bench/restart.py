"""Restart, ledger size and the chaos run, for bench/run.py (``--only restart|chaos``).

Restart: the worker fills its ledger with finished actions over a fixed set of series (as
rules on a fixed set of CSCs do: history grows, series do not), is stopped, and is timed
from process start to its first new POST; then the same at a larger fill. The ledger's
changelog is created to compact within seconds, and its bytes on the broker's disk after
compaction are divided by the finished actions it holds. The baseline is a bare Faust app
whose table recovers the same live keys (one record per key, as after compaction).

Chaos: triggers flow while the worker is SIGKILLed and restarted; then every action must
have reached the receiver, and the history must hold no action with two final events.
"""

from __future__ import annotations

import asyncio
import json
import signal
import time
from collections import Counter
from typing import TYPE_CHECKING

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from support.kafka import COMPACT_SOON  # the tests' settings for quick compaction

from catcher import topics
from catcher.avro import AvroCodec
from catcher.broker import stop_process
from catcher.models.enums import Severity, TriggerSource
from catcher.models.records import ActionEvent, Trigger

if TYPE_CHECKING:
    from run import Bench, Receiver

SERIES = 100


def cycling(actions: int, run: str) -> list[Trigger]:
    """Triggers that start ``actions`` actions over SERIES series: WARNING, then NONE."""
    triggers = []
    for first in range(0, actions, SERIES):
        group = range(first, min(first + SERIES, actions))
        for severity in (Severity.WARNING, Severity.NONE):
            triggers += [
                Trigger.create(
                    "bench",
                    severity,
                    reason="bench",
                    source=TriggerSource.manual,
                    tags={"n": f"{run}-{n % SERIES}"},
                )
                for n in group
            ]
    return triggers


async def _encoded(codec: AvroCodec, triggers: list[Trigger]) -> list[tuple[bytes, bytes]]:
    return [(t.key, await codec.encode("triggers", t.to_avro())) for t in triggers]


def _disk_bytes(bench: Bench, topic: str) -> int:
    data = bench.work / "kafka" / "data"
    return sum(f.stat().st_size for d in data.glob(f"{topic}-*") for f in d.glob("*.log"))


async def _fill(
    bench: Bench, codec: AvroCodec, receiver: Receiver, *, prefix: str, actions: int, run: str
) -> None:
    receiver.reset()
    triggers = cycling(actions, run)
    await bench.produce(f"{prefix}.triggers", await _encoded(codec, triggers))
    await receiver.distinct(actions, limit=1800)


async def _compacted(
    bench: Bench, codec: AvroCodec, receiver: Receiver, *, prefix: str, changelog: str, keys: int
) -> tuple[int, int]:
    """Wait until the changelog holds about one record per key; (records, bytes on disk)."""
    from run import _read_all  # noqa: PLC0415 - the runner's reader

    records: list[tuple[int, bytes, bytes, float]] = []
    for round_ in range(60):
        # A write rolls the segment before it (segment.ms 1 s): the cleaner may take it.
        tags = {"n": f"sentinel-{time.time_ns()}"}
        sentinel = [
            Trigger.create(
                "bench", Severity.WARNING, reason="s", source=TriggerSource.manual, tags=tags
            )
        ]
        receiver.reset()
        await bench.produce(f"{prefix}.triggers", await _encoded(codec, sentinel))
        await receiver.distinct(1)
        records = await _read_all(bench, changelog)
        if len(records) <= keys + 4 * (round_ + 2) + 50:
            break
        await asyncio.sleep(2)
    return len(records), _disk_bytes(bench, changelog)


async def _restart(
    bench: Bench, codec: AvroCodec, receiver: Receiver, *, prefix: str, registry: str, hook: str
) -> tuple[float, float]:
    """(process start to the first new POST, RSS in MiB once idle) of a restarted worker."""
    from run import _idle  # noqa: PLC0415

    receiver.reset()
    started = time.time()
    worker = bench.worker(prefix, registry, hook)
    after = Trigger.create(
        "bench",
        Severity.WARNING,
        reason="a",
        source=TriggerSource.manual,
        tags={"n": f"after-{time.time_ns()}"},  # a new series: its first WARNING fires
    )
    await bench.produce(f"{prefix}.triggers", await _encoded(codec, [after]))
    first = await receiver.distinct(1, limit=600) - started
    cpu, rss = await _idle(worker.pid)
    stop_process(worker)
    bench.extra.append(f"idle CPU after the restart: {cpu:.1%} of a core")
    return first, rss


async def _bare_restart(
    bench: Bench, records: list[tuple[int, bytes, bytes, float]]
) -> tuple[float, float]:
    """A bare Faust table app recovering the same live keys: (start to first record, RSS)."""
    from run import _idle  # noqa: PLC0415

    latest: dict[bytes, tuple[int, bytes]] = {}
    for partition, key, value, _t in records:
        latest[key] = (partition, value)
    live = [
        (p, json.dumps(key.decode()).encode(), json.dumps(value.decode()).encode())
        for key, (p, value) in latest.items()
        if value
    ]
    name = f"bench-bare{time.time_ns()}"
    await bench.topics(f"{name}-table-changelog", f"{name}.in")
    await bench.produce_to_partitions(f"{name}-table-changelog", live)
    first = 0.0
    for run in range(2):  # the first run joins the group; the second is the restart
        started = time.time()
        table = bench.baseline("table", bench.bootstrap, name, f"{name}.in", "1", log_level="info")
        await bench.produce(f"{name}.in", [(f"k{run}".encode(), b"x")])
        first = await asyncio.wait_for(bench.line(table, "first"), 600) - started
        if run == 0:
            stop_process(table)  # type: ignore[arg-type]
    _, rss = await _idle(table.pid)
    stop_process(table)  # type: ignore[arg-type]
    return first, rss


async def restart_figures(
    bench: Bench, registry: str, hook: str, receiver: Receiver, fills: tuple[int, int]
) -> None:
    """Restart at two fills, bytes per finished action, RSS; each beside its baseline."""
    from run import _group_join, _read_all  # noqa: PLC0415

    prefix = "bench.restart"
    codec = AvroCodec(registry, prefix)
    app_id = prefix.replace(".", "-")
    changelog = f"{app_id}-ledger-changelog"
    await bench.topics(f"{prefix}.triggers", f"{prefix}.actions", f"{prefix}.deadletter")
    # Every compacted topic is cleaned within seconds of its writes (segment.ms 1 s), as
    # the deployed ones (segment.ms 1 h) are once their changes are an hour old: what a
    # restart reads is then one record per live key, whatever the history.
    admin = AIOKafkaAdminClient(bootstrap_servers=bench.bootstrap)
    await admin.start()
    try:
        await admin.create_topics(
            [
                NewTopic(t.full_name(prefix, app_id), 1, 1, topic_configs=COMPACT_SOON)
                for t in topics.CATALOGUE
                if t.cleanup == topics.Cleanup.compact
            ]
        )
    finally:
        await admin.close()
    worker = bench.worker(prefix, registry, hook)
    done = 0
    times: list[float] = []
    for fill in fills:
        await _fill(bench, codec, receiver, prefix=prefix, actions=fill - done, run=f"f{fill}")
        done = fill
        records, disk = await _compacted(
            bench, codec, receiver, prefix=prefix, changelog=changelog, keys=done
        )
        stop_process(worker)
        started = time.time()
        raw = await _read_all(bench, changelog)
        raw_s = time.time() - started
        first, rss = await _restart(
            bench, codec, receiver, prefix=prefix, registry=registry, hook=hook
        )
        times.append(first)
        bare, bare_rss = await _bare_restart(bench, raw)
        join = await _group_join(bench, f"{prefix}.triggers")
        bench.record(
            f"restart with {fill:,} finished actions → first new POST (s)",
            f"{first:.1f}",
            f"bare Faust app recovering the same {len(raw):,} live keys {bare:.1f};"
            f" raw read {raw_s:.2f}; a plain consumer's group join {join:.2f}",
            first / bare,
        )
        bench.record(
            f"ledger after compaction at {fill:,} (bytes per finished action)",
            f"{disk / done:.0f} ({records:,} records, {disk / 1e6:.1f} MB on disk)",
            "goal 200",
            disk / done / 200,
        )
        if fill == fills[0]:
            bench.record(
                f"RSS after the restart at {fill:,} (MiB)",
                f"{rss:.0f}",
                f"bare Faust app holding the same keys {bare_rss:.0f}; goal bare + 40",
                rss - bare_rss,
            )
        worker = bench.worker(prefix, registry, hook)
    stop_process(worker)
    bench.record(
        f"restart at {fills[1]:,} against {fills[0]:,}",
        f"{times[1]:.1f} s against {times[0]:.1f} s",
        "goal ≤ 1.5",
        times[1] / times[0],
    )


async def chaos_figure(
    bench: Bench, registry: str, hook: str, receiver: Receiver, *, count: int, kills: int
) -> None:
    """``count`` firing triggers while the worker is SIGKILLed ``kills`` times."""
    from run import _read_all  # noqa: PLC0415

    prefix = "bench.chaos"
    codec = AvroCodec(registry, prefix)
    await bench.topics(f"{prefix}.triggers", f"{prefix}.actions", f"{prefix}.deadletter")
    triggers = [
        Trigger.create(
            "bench", Severity.WARNING, reason="c", source=TriggerSource.manual, tags={"n": f"c{n}"}
        )
        for n in range(count)
    ]
    receiver.reset()
    worker = bench.worker(prefix, registry, hook)
    await bench.produce(f"{prefix}.triggers", await _encoded(codec, triggers))
    step = count // (kills + 1)
    for kill in range(kills):
        await receiver.distinct(step * (kill + 1), limit=600)
        worker.send_signal(signal.SIGKILL)
        worker.wait()
        worker = bench.worker(prefix, registry, hook)
    await receiver.distinct(count, limit=900)
    await asyncio.sleep(20)  # the scans send what is left to send
    stop_process(worker)
    events = []
    for _p, _k, value, _t in await _read_all(bench, f"{prefix}.actions"):
        events.append(ActionEvent.model_validate(await codec.decode("actions", value)))
    finals = Counter(e.action_id for e in events if e.state.terminal)
    repeated = sum(1 for n in finals.values() if n > 1)
    states = Counter((e.action_id, e.state.value, e.attempt) for e in events)
    repeats = sum(n - 1 for n in states.values() if n > 1)
    resent = receiver.posts - len(receiver.arrivals)
    bench.record(
        f"chaos: {count:,} triggers, {kills} SIGKILLs (actions with a repeated final event)",
        f"{repeated}",
        f"{len(receiver.arrivals):,} of {count:,} actions at the receiver, {resent} calls"
        f" sent again; {len(finals):,} actions finished; {repeats} repeated events of any state",
        float(repeated),
    )


SETTLE_SECONDS = 20.0
"""How long both workers must have run before one is killed."""
TAKEOVER_LIMIT = 300.0


async def _until_settled(sent: dict[str, tuple[int, float]], receiver: Receiver) -> None:
    """Both partitions act (both workers have joined and settled) for 5 s in a row."""
    while True:
        await asyncio.sleep(1)
        recent = time.time() - 5
        acting = {p for tid, (p, t) in sent.items() if t > recent and tid in receiver.arrivals}
        if acting == {0, 1} and time.time() - min(t for _p, t in sent.values()) > SETTLE_SECONDS:
            return


async def _until_resumed(
    sent: dict[str, tuple[int, float]], receiver: Receiver, killed: float
) -> dict[int, float]:
    """When each partition first POSTed a trigger produced after the kill."""
    resumed: dict[int, float] = {}
    while len(resumed) < len({p for p, _t in sent.values()}):
        await asyncio.sleep(0.2)
        for tid, (partition, at) in list(sent.items()):
            if at > killed and tid in receiver.arrivals and partition not in resumed:
                resumed[partition] = receiver.arrivals[tid]
        if time.time() - killed > TAKEOVER_LIMIT:
            raise RuntimeError(f"a partition did not act again within {TAKEOVER_LIMIT} s")
    return resumed


async def takeover_figure(bench: Bench, registry: str, hook: str, receiver: Receiver) -> None:
    """Two workers on two partitions; one is SIGKILLed: how soon its partition acts again.

    A trigger is produced to each partition every 0.1 s; the figure is the time from the
    kill to the first POST of a trigger produced after it to the partition that stopped.
    It is bounded by the session timeout (CATCHER_BROKER_SESSION_TIMEOUT, 10 s here, 30 s
    by default), the rebalance, and the new owner's reading of the partition's ledger.
    """
    prefix = "bench.takeover"
    codec = AvroCodec(registry, prefix)
    admin = AIOKafkaAdminClient(bootstrap_servers=bench.bootstrap)
    await admin.start()
    try:
        names = [f"{prefix}.triggers", f"{prefix}.actions", f"{prefix}.deadletter"]
        await admin.create_topics([NewTopic(n, 2, 1) for n in names])
    finally:
        await admin.close()
    env = {"CATCHER_TOPIC_PARTITIONS": "2"}
    workers = [bench.worker(prefix, registry, hook, **env) for _ in range(2)]
    sent: dict[str, tuple[int, float]] = {}

    async def feed(stop: asyncio.Event) -> None:
        producer = bench.producer()
        await producer.start()
        try:
            n = 0
            while not stop.is_set():
                for partition in (0, 1):
                    tags = {"n": f"t{n}-{partition}"}
                    trigger = Trigger.create(
                        "bench",
                        Severity.WARNING,
                        reason="t",
                        source=TriggerSource.manual,
                        tags=tags,
                    )
                    value = await codec.encode("triggers", trigger.to_avro())
                    sent[trigger.trigger_id] = (partition, time.time())
                    await producer.send(
                        f"{prefix}.triggers", value, key=trigger.key, partition=partition
                    )
                n += 1
                await asyncio.sleep(0.1)
        finally:
            await producer.stop()

    receiver.reset()
    stop = asyncio.Event()
    feeding = asyncio.create_task(feed(stop))
    try:
        await _until_settled(sent, receiver)
        killed = time.time()
        workers[0].send_signal(signal.SIGKILL)
        workers[0].wait()
        resumed = await _until_resumed(sent, receiver, killed)
    finally:
        stop.set()
        await feeding
        for worker in workers:
            stop_process(worker)
    stopped = max(resumed.values()) - killed
    kept = min(resumed.values()) - killed
    bench.record(
        "takeover: one of two workers SIGKILLed → its partition acting again (s)",
        f"{stopped:.1f}",
        f"the other partition {kept:.1f}; session timeout 10",
        stopped / 10,
    )
