"""Catcher's worker against bare Faust on this machine's test broker: one command, one run.

    python bench/run.py [--triggers 5000] [--fill 20000] [--broker kafka|tansu]

Starts Apache Kafka (one KRaft node, as the tests do: tests/support/kafka.py), a fake
Schema Registry and a webhook receiver on loopback, then measures, each against a baseline
measured in the same run:

- planning: triggers that start nothing, per second, against a bare Faust agent that only
  counts the same number of records;
- firing: triggers that each call the webhook, per second (produce to the N-th POST),
  against a bare Faust pipeline of the same shape (3 agents, each send awaited, the last
  POSTs);
- latency at 100 triggers/s, produce to POST: p50 and p99, against a bare two-agent Faust
  pipeline and one plain broker hop (aiokafka producer to consumer);
- restart with --fill finished actions in the ledger, process start to the first new POST,
  against the restart of a bare Faust app whose table recovers the same changelog records
  (start to its first record), with a raw read of the changelog and a plain consumer's
  group join for scale;
- idle CPU (share of one core over 10 s) and RSS of the worker holding those actions,
  against the bare Faust app holding the same table;
- the stream engine: SAL-shaped telemetry records per second (ten series at 100 Hz on one
  partition, every 1 s window evaluated), against a bare Faust agent that decodes the same
  records and keeps a running mean per series; an every-sample (``window: 0``) rule at
  50 samples/s, crossing sample produced to webhook POST and to the map a fake LOVE
  receives, with where the time goes topic by topic; and 1 s windows, window close to the
  LOVE map; each latency against a plain broker hop (``--only stream`` runs only these).

Not run in CI: the figures are ratios, so that a shared, noisy machine still compares
like with like. Production's client settings are the default (idempotent producers,
16 KiB batches). ``--broker tansu`` runs on the demo's embedded broker instead, with the
settings it needs (no idempotence, one record per batch) for Catcher and the baselines.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import fastavro
import httpx
from aiohttp import web
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from catcher.avro import AvroCodec
from catcher.broker import EmbeddedBroker, free_port, stop_process
from catcher.config import KafkaConnectionSettings, load_config
from catcher.demo import EMBEDDED_BROKER_ENV, worker_environment
from catcher.fakes.love import FakeLoveManager
from catcher.fakes.registry import FakeSchemaRegistry
from catcher.models.enums import Severity, TriggerSource
from catcher.models.records import Trigger, make_trigger_id
from catcher.services.execution.history import OperatorTopics

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))
from restart import chaos_figure, restart_figures, takeover_figure  # noqa: E402 - beside this file
from spy import Profile  # noqa: E402 - beside this file
from support.influxdb import InfluxDB  # noqa: E402 - the tests' launcher of influxd
from support.kafka import KafkaBroker  # noqa: E402 - the tests' launcher of Apache Kafka

PREFIX = "bench.catcher"
RULES = """
rules:
  - id: bench
    description: Calls the receiver for every WARNING of a new series.
    actions:
      - name: notify
        type: webhook
        url_env: BENCH_WEBHOOK_URL
        on: {severity: WARNING}
        body: {text: "{trigger_id}"}
"""


class Receiver:
    """A webhook receiver that notes when each body arrived."""

    def __init__(self) -> None:
        self.arrivals: dict[str, float] = {}
        self.posts = 0
        self.port = 0
        self._waiters: list[tuple[int, asyncio.Future[float]]] = []
        self._runner: web.AppRunner | None = None

    async def start(self) -> str:
        app = web.Application()
        app.add_routes([web.post("/{tail:.*}", self._post)])
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0, shutdown_timeout=1)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]  # noqa: SLF001
        return f"http://127.0.0.1:{self.port}/hook"

    async def _post(self, request: web.Request) -> web.Response:
        try:
            body = await request.json()
        except ConnectionError:  # the worker was killed amid its call (the chaos run)
            return web.Response(status=400)
        now = time.time()
        self.arrivals.setdefault(body["text"], now)
        self.posts += 1
        for count, future in list(self._waiters):
            if len(self.arrivals) >= count and not future.done():
                future.set_result(now)
        return web.Response(text="ok")

    async def distinct(self, count: int, limit: float = 600) -> float:
        """Wait until ``count`` distinct bodies have arrived; returns when the last did."""
        if len(self.arrivals) >= count:
            return max(self.arrivals.values())
        future: asyncio.Future[float] = asyncio.get_running_loop().create_future()
        self._waiters.append((count, future))
        return await asyncio.wait_for(future, limit)

    def reset(self) -> None:
        self.arrivals.clear()
        self.posts = 0

    async def stop(self) -> None:
        if self._runner:
            await self._runner.cleanup()


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.work = Path(tempfile.mkdtemp(prefix="catcher-bench-"))
        self.kafka = args.broker == "kafka"
        self.broker: KafkaBroker | EmbeddedBroker
        if self.kafka:
            self.broker = KafkaBroker(self.work / "kafka").start()
        else:
            self.broker = EmbeddedBroker(log_path=self.work / "broker.log").start()
            args.batch_size = 16  # its end offsets are wrong after batched writes
        self.bootstrap = self.broker.bootstrap_servers
        self.results: list[tuple[str, str, str, str]] = []
        self.extra: list[str] = []
        self._runs = 0

    async def topics(self, *names: str) -> None:
        admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap)
        await admin.start()
        try:
            existing = set(await admin.list_topics())
            missing = [n for n in names if n not in existing]
            if missing:
                await admin.create_topics([NewTopic(n, 1, 1) for n in missing])
        finally:
            await admin.close()

    def producer(self) -> AIOKafkaProducer:
        return AIOKafkaProducer(
            bootstrap_servers=self.bootstrap,
            enable_idempotence=self.kafka,
            max_batch_size=self.args.batch_size,
            linger_ms=5,
        )

    async def produce(self, topic: str, values: list[tuple[bytes, bytes]]) -> float:
        """Produce records as fast as the client goes; returns when it started."""
        producer = self.producer()
        await producer.start()
        try:
            started = time.time()
            futures = [await producer.send(topic, value, key=key) for key, value in values]
            await asyncio.gather(*futures)
            return started
        finally:
            await producer.stop()

    async def produce_to_partitions(
        self, topic: str, records: list[tuple[int, bytes, bytes]]
    ) -> None:
        """Produce (partition, key, value) records as they are (set-up, not measured)."""
        producer = self.producer()
        await producer.start()
        try:
            futures = [
                await producer.send(topic, value, key=key, partition=partition)
                for partition, key, value in records
            ]
            await asyncio.gather(*futures)
        finally:
            await producer.stop()

    async def paced(
        self, topic: str, values: list[tuple[bytes, bytes]], rate: float
    ) -> dict[bytes, float]:
        """Produce at ``rate`` records per second; returns each record's send time by key."""
        producer = self.producer()
        await producer.start()
        sent: dict[bytes, float] = {}
        try:
            start = time.monotonic()
            for n, (key, value) in enumerate(values):
                delay = start + n / rate - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                sent[key] = time.time()
                await producer.send(topic, value, key=key)
            await producer.flush()
        finally:
            await producer.stop()
        return sent

    # -- processes ------------------------------------------------------------------------

    def profile(self, pid: int, name: str) -> Profile | None:
        """Start sampling a process, when --profile asks for it."""
        if self.args.profile is None:
            return None
        self.args.profile.mkdir(parents=True, exist_ok=True)
        return Profile(pid, self.args.profile / f"{name}.txt")

    def profiled(self, spy: Profile | None) -> None:
        """Stop sampling; the summary goes with the figures."""
        if spy is not None:
            text = f"profile of the worker ({spy.path.stem}):\n{spy.stop()}"
            print(text, flush=True)
            self.extra.append(text)

    def baseline(self, *args: str, log_level: str = "warn") -> subprocess.Popen[str]:
        return subprocess.Popen(
            [sys.executable, str(HERE / "baselines.py"), *args, str(self.args.batch_size)],
            stdout=subprocess.PIPE,
            stderr=(self.work / f"baseline-{args[0]}.log").open("ab"),
            text=True,
            cwd=self.work,
            env={
                **os.environ,
                "BENCH_LOG_LEVEL": log_level,
                "BENCH_IDEMPOTENCE": "1" if self.kafka else "0",
            },
        )

    def worker(
        self, prefix: str, registry: str, hook: str, rules_text: str = RULES, **env: str
    ) -> subprocess.Popen[bytes]:
        rules = self.work / f"rules-{prefix}.yaml"
        rules.write_text(rules_text)
        env = worker_environment(
            self.bootstrap,
            registry,
            rules,
            CATCHER_TOPIC_PREFIX=prefix,
            CATCHER_APP_ID=prefix.replace(".", "-"),
            CATCHER_LOG_LEVEL=os.environ.get("BENCH_LOG_LEVEL", "WARNING"),
            CATCHER_DATA_DIR=str(self.work / "data"),
            BENCH_WEBHOOK_URL=hook,
            **env,
            **(
                {"CATCHER_PRODUCER_MAX_BATCH_SIZE": str(self.args.batch_size)}
                if self.kafka
                else EMBEDDED_BROKER_ENV
            ),
        ) | dict(self.args.set)
        log = (self.work / f"{prefix}.log").open("ab")
        return subprocess.Popen(
            [sys.executable, "-m", "catcher", "worker"], env=env, stdout=log, stderr=log
        )

    @staticmethod
    async def line(process: subprocess.Popen[str], key: str) -> float:
        assert process.stdout is not None
        loop = asyncio.get_running_loop()
        while True:
            text = await loop.run_in_executor(None, process.stdout.readline)
            if not text:
                raise RuntimeError("the baseline process ended early")
            try:
                data = json.loads(text)
            except ValueError:
                continue  # Faust's banner
            if isinstance(data, dict) and key in data:
                return float(data[key])

    def record(self, figure: str, catcher: str, baseline: str, ratio: float) -> None:
        self.results.append((figure, catcher, baseline, f"{ratio:.2f}"))
        print(f"  {figure}: Catcher {catcher}; baseline {baseline}; ratio {ratio:.2f}", flush=True)


def _triggers(count: int, severity: Severity, run: str) -> list[Trigger]:
    return [
        Trigger.create(
            "bench",
            severity,
            reason="bench",
            source=TriggerSource.manual,
            tags={"n": f"{run}-{n}"},
        )
        for n in range(count)
    ]


async def _encoded(codec: AvroCodec, triggers: list[Trigger]) -> list[tuple[bytes, bytes]]:
    return [(t.key, await codec.encode("triggers", t.to_avro())) for t in triggers]


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


BACKTEST_RULES = """
rules:
  - id: bench-backtest
    description: Mean over 1 min windows of every salIndex (the EFD's layout).
    condition:
      source: {measurement: lsst.sal.Bench.efd, field: value, group_by: [salIndex]}
      aggregate: mean
      window: 1m
      thresholds: {warning: 50, critical: 60, hysteresis: 2}
    schedule: {every: 1m}
"""


_MEASURED = """
import runpy, sys
sys.argv = ["catcher", *sys.argv[1:]]
code = 0
try:
    runpy.run_module("catcher", run_name="__main__")
except SystemExit as exc:
    code = exc.code or 0
status = open("/proc/self/status").read().split("VmHWM:")[1].split()[0]
print("peak", status, file=sys.stderr)  # kB; not ru_maxrss, which survives exec
sys.exit(code)
"""


def _run_measured(args: list[str], env: dict[str, str]) -> tuple[float, float]:
    """Wall seconds and peak RSS in MiB of a ``catcher`` command."""
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-c", _MEASURED, *args],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    wall = time.monotonic() - started
    if done.returncode != 0:
        raise RuntimeError(f"catcher {' '.join(args[:2])} failed: {done.stderr[-500:]}")
    peak = next(
        int(line.split()[1]) for line in done.stderr.splitlines() if line.startswith("peak ")
    )
    return wall, peak / 1024


async def _backtest_figure(bench: Bench, days: int) -> None:
    """A backtest of 1 min windows over ``days`` of a 1 Hz series on a real InfluxDB 1.x.

    Against the time to fetch the same points with one InfluxQL query (httpx, JSON parsed),
    and its peak memory against the size of those points' JSON.
    """
    (bench.work / "influxdb").mkdir(exist_ok=True)
    influx = InfluxDB(bench.work / "influxdb").start()
    try:
        end = datetime(2026, 11, 20, tzinfo=UTC)
        start = end - timedelta(days=days)
        first = int(start.timestamp())
        influx.query('CREATE DATABASE "efd"')
        points = days * 86400
        for chunk in range(0, points, 50_000):
            influx.write(
                "efd",
                [
                    f"lsst.sal.Bench.efd value={40 + (s // 3600) % 30},salIndex=1i"
                    f" {(first + s) * 1_000_000_000}"
                    for s in range(chunk, min(chunk + 50_000, points))
                ],
            )
        query = (
            'SELECT "value"::field, "salIndex"::field FROM "lsst.sal.Bench.efd"'  # noqa: S608
            f" WHERE time >= {first}s AND time < {int(end.timestamp())}s"
        )
        started = time.monotonic()
        async with httpx.AsyncClient(timeout=600) as http:
            answer = await http.get(
                f"{influx.url}/query", params={"db": "efd", "epoch": "ns", "q": query}
            )
            fetched = len(answer.json()["results"][0]["series"][0]["values"])
        fetch = time.monotonic() - started
        raw_mib = len(answer.content) / 2**20
        rules = bench.work / "backtest-rules.yaml"
        rules.write_text(BACKTEST_RULES)
        env = {
            **os.environ,
            "CATCHER_EFD_URL": influx.url,
            "CATCHER_EFD_DATABASE": "efd",
            "CATCHER_RULES_PATH": str(rules),
        }
        command = ["backtest", "bench-backtest", "--json"]
        # The same command over an hour of no data: the interpreter and imports alone.
        quiet = ["--since", "2020-01-01T00:00:00+00:00", "--until", "2020-01-01T01:00:00+00:00"]
        _, idle_peak = _run_measured([*command, *quiet], env)
        interval = ["--since", start.isoformat(), "--until", end.isoformat()]
        wall, peak = _run_measured([*command, *interval], env)
    finally:
        influx.stop()
    bench.record(
        f"backtest, {days} days at 1 Hz ({fetched:,} points, 1 min windows)",
        f"{wall:.1f} s, peak RSS {peak:.0f} MiB ({idle_peak:.0f} MiB without data)",
        f"one InfluxQL query fetching the points with httpx: {fetch:.1f} s, {raw_mib:.0f} MiB"
        " of JSON",
        wall / fetch,
    )
    bench.extra.append(
        f"backtest memory above the idle command: {peak - idle_peak:.0f} MiB,"
        f" {(peak - idle_peak) / raw_mib:.2f} times the points' JSON"
    )
    print(f"  {bench.extra[-1]}", flush=True)


async def main(args: argparse.Namespace) -> None:
    bench = Bench(args)
    registry = await FakeSchemaRegistry().start()
    receiver = Receiver()
    hook = await receiver.start()
    n = args.triggers
    print(
        f"Broker {args.broker} on {bench.bootstrap}, batch size {args.batch_size},"
        f" {n} triggers; work {bench.work}"
    )
    try:
        if args.only == "backtest":
            await _backtest_figure(bench, args.backtest_days)
            return
        if args.only == "restart":
            await restart_figures(bench, registry.url, hook, receiver, (args.fill, args.fill_more))
            return
        if args.only == "takeover":
            await takeover_figure(bench, registry.url, hook, receiver)
            return
        if args.only == "chaos":
            await chaos_figure(
                bench, registry.url, hook, receiver, count=args.chaos, kills=args.kills
            )
            return
        if args.only != "throughput":
            await _stream_latency(bench, registry.url, hook, receiver, args.latency_seconds)
            await _stream_figure(bench, registry.url, hook, args.samples)
            if args.only == "stream":
                return
            await _backtest_figure(bench, args.backtest_days)
        prefix = PREFIX
        codec = AvroCodec(registry.url, prefix)
        await bench.topics(f"{prefix}.triggers", f"{prefix}.actions", f"{prefix}.deadletter")
        worker = bench.worker(prefix, registry.url, hook)
        warm = _triggers(1, Severity.WARNING, "warm")
        await bench.produce(f"{prefix}.triggers", await _encoded(codec, warm))
        await receiver.distinct(1, limit=120)

        # Planning: NONE triggers of new series start nothing; a firing sentinel follows.
        await bench.topics("bench.count")
        counter = bench.baseline("count", bench.bootstrap, "bench.count", str(n))
        await bench.produce("bench.count", [(b"w", b"warm-up")])
        await bench.line(counter, "ready")
        start = await bench.produce(
            "bench.count", [(str(i).encode(), b"x" * 200) for i in range(n)]
        )
        bare = n / (await bench.line(counter, "done") - start)
        stop_process(counter)  # type: ignore[arg-type]
        quiet = await _encoded(codec, _triggers(n, Severity.NONE, "plan"))
        sentinel = _triggers(1, Severity.WARNING, "sentinel")
        receiver.reset()
        spy = bench.profile(worker.pid, "planning")
        start = await bench.produce(f"{prefix}.triggers", quiet + await _encoded(codec, sentinel))
        planned = n / (await receiver.distinct(1) - start)
        bench.profiled(spy)
        bench.record("planning (triggers/s)", f"{planned:,.0f}", f"{bare:,.0f}", planned / bare)

        # Firing: every trigger calls the webhook once.
        await bench.topics(*(f"bench.pipe3.{i}" for i in range(3)))
        pipe = bench.baseline("pipeline", bench.bootstrap, "bench.pipe3", "3", hook)
        receiver.reset()
        await bench.produce("bench.pipe3.0", [(b"w", b"warm-up")])
        await receiver.distinct(1, limit=120)
        receiver.reset()
        start = await bench.produce(
            "bench.pipe3.0", [(str(i).encode(), f"p{i}".encode()) for i in range(n)]
        )
        bare = n / (await receiver.distinct(n) - start)
        stop_process(pipe)  # type: ignore[arg-type]
        firing = await _encoded(codec, _triggers(n, Severity.WARNING, "fire"))
        receiver.reset()
        spy = bench.profile(worker.pid, "firing")
        start = await bench.produce(f"{prefix}.triggers", firing)
        fired = n / (await receiver.distinct(n) - start)
        bench.profiled(spy)
        bench.record("firing (actions/s)", f"{fired:,.0f}", f"{bare:,.0f}", fired / bare)

        # Latency at 100 triggers/s.
        count = args.latency_seconds * 100
        await bench.topics(*(f"bench.pipe2.{i}" for i in range(2)), "bench.hop")
        pipe = bench.baseline("pipeline", bench.bootstrap, "bench.pipe2", "2", hook)
        receiver.reset()
        await bench.produce("bench.pipe2.0", [(b"w", b"warm-up")])
        await receiver.distinct(1, limit=120)
        receiver.reset()
        values = [(f"l{i}".encode(), f"l{i}".encode()) for i in range(count)]
        sent = await bench.paced("bench.pipe2.0", values, 100)
        await receiver.distinct(count)
        bare_lat = sorted(receiver.arrivals[k.decode()] - t for k, t in sent.items())
        stop_process(pipe)  # type: ignore[arg-type]
        hop_lat = await _plain_hop(bench, count)
        triggers = _triggers(count, Severity.WARNING, "lat")
        receiver.reset()
        sent = await bench.paced(f"{prefix}.triggers", await _encoded(codec, triggers), 100)
        await receiver.distinct(count)
        ids = {t.key: t.trigger_id for t in triggers}
        lat = sorted(receiver.arrivals[ids[k]] - t for k, t in sent.items())
        p50, p99 = _pct(lat, 50), _pct(lat, 99)
        await _latency_stages(bench, registry.url, triggers=triggers, sent=sent, receiver=receiver)
        bench.record(
            "latency at 100/s, p99 (s)",
            f"p50 {p50:.3f}, p99 {p99:.3f}",
            f"two-agent p99 {_pct(bare_lat, 99):.3f}; plain hop p99 {_pct(hop_lat, 99):.3f}",
            p99 / _pct(bare_lat, 99),
        )

        stop_process(worker)
        if args.only == "throughput":
            return
        await restart_figures(bench, registry.url, hook, receiver, (args.fill, args.fill_more))
        await takeover_figure(bench, registry.url, hook, receiver)
        await chaos_figure(bench, registry.url, hook, receiver, count=args.chaos, kills=args.kills)
    finally:
        await receiver.stop()
        await registry.stop()
        bench.broker.stop()
        print(
            "\n| figure | Catcher | baseline in the same run | ratio |\n| --- | --- | --- | --- |"
        )
        for row in bench.results:
            print("| " + " | ".join(row) + " |")
        for line in bench.extra:
            print(f"\n{line}")


async def _latency_stages(
    bench: Bench,
    registry: str,
    *,
    triggers: list[Trigger],
    sent: dict[bytes, float],
    receiver: Receiver,
) -> None:
    """Where a firing trigger's time goes, from the history events' own times."""
    config = load_config(
        kafka=KafkaConnectionSettings(bootstrap_servers=bench.bootstrap),
        schema_registry_url=registry,
        topic_prefix=PREFIX,
    )
    wanted = {t.trigger_id: t.key for t in triggers}
    times: dict[str, dict[str, float]] = {}
    operator = OperatorTopics(config, AvroCodec(registry, PREFIX))
    for event in await operator.read_history():
        if event.trigger_id in wanted:
            times.setdefault(event.trigger_id, {})[event.state.value] = event.time.timestamp()
    stages: dict[str, list[float]] = {
        "produce → queued": [],
        "queued → submitting": [],
        "submitting → POST": [],
    }
    for trigger_id, key in wanted.items():
        seen = times.get(trigger_id, {})
        if "queued" in seen and "submitting" in seen and trigger_id in receiver.arrivals:
            stages["produce → queued"].append(seen["queued"] - sent[key])
            stages["queued → submitting"].append(seen["submitting"] - seen["queued"])
            stages["submitting → POST"].append(receiver.arrivals[trigger_id] - seen["submitting"])
    parts = [
        f"{name} p50 {_pct(sorted(v), 50):.3f} s, p99 {_pct(sorted(v), 99):.3f} s"
        for name, v in stages.items()
        if v
    ]
    bench.extra.append("latency stages (history event times): " + "; ".join(parts))
    print(f"  {bench.extra[-1]}", flush=True)


def _pct(values: list[float], pct: float) -> float:
    return statistics.quantiles(values, n=100)[int(pct) - 1] if len(values) > 1 else values[0]


async def _plain_hop(bench: Bench, count: int) -> list[float]:
    consumer = AIOKafkaConsumer(
        "bench.hop", bootstrap_servers=bench.bootstrap, auto_offset_reset="latest"
    )
    await consumer.start()
    arrivals: dict[bytes, float] = {}

    async def consume() -> None:
        async for message in consumer:
            arrivals[message.key] = time.time()
            if len(arrivals) >= count:
                return

    try:
        await asyncio.sleep(1)
        reader = asyncio.create_task(consume())
        sent = await bench.paced(
            "bench.hop", [(f"h{i}".encode(), b"x") for i in range(count)], 100
        )
        await asyncio.wait_for(reader, 120)
    finally:
        await consumer.stop()
    return sorted(arrivals[k] - t for k, t in sent.items())


async def _idle(pid: int) -> tuple[float, float]:
    """Share of a core over 10 s after 5 s of rest, and RSS in MiB."""
    await asyncio.sleep(5)
    cpu = _cpu_seconds(pid)
    await asyncio.sleep(10)
    return (_cpu_seconds(pid) - cpu) / 10, _rss_mib(pid)


async def _group_join(bench: Bench, topic: str) -> float:
    """Seconds a plain aiokafka consumer takes to join a new group and get its partitions."""
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bench.bootstrap,
        group_id=f"bench-join-{time.time_ns()}",
        session_timeout_ms=10000,
        heartbeat_interval_ms=1000,
    )
    started = time.time()
    await consumer.start()
    try:
        assigned = consumer.assignment()
        while not assigned:
            await asyncio.sleep(0.01)
            assigned = consumer.assignment()
        return time.time() - started
    finally:
        await consumer.stop()


async def _read_all(bench: Bench, topic: str) -> list[tuple[int, bytes, bytes, float]]:
    """Every record of a topic: partition, key, value and the broker's time."""
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bench.bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    try:
        partitions = consumer.assignment() or set()
        while not partitions:
            await asyncio.sleep(0.05)
            partitions = consumer.assignment()
        end = await consumer.end_offsets(list(partitions))
        records: list[tuple[int, bytes, bytes, float]] = []
        remaining = set(partitions)
        while remaining:
            batch = await consumer.getmany(timeout_ms=500)
            for messages in batch.values():
                records.extend(
                    (m.partition, m.key or b"", m.value or b"", m.timestamp / 1000)
                    for m in messages
                )
            remaining = {tp for tp in remaining if await consumer.position(tp) < end[tp]}
        return records
    finally:
        await consumer.stop()


TELEMETRY = "lsst.sal.Bench.telemetry"
TELEMETRY_SCHEMA = {
    "type": "record",
    "name": "telemetry",
    "namespace": "lsst.sal.Bench",
    "fields": [
        {"name": "private_efdStamp", "type": "double"},
        {"name": "salIndex", "type": "long"},
        {"name": "value", "type": "double"},
        {"name": "channels", "type": {"type": "array", "items": "float"}},
    ],
}
STREAM_RULES = f"""
rules:
  - id: bench-stream
    description: The mean of every salIndex over 1 s windows (never above its level).
    condition:
      engine: stream
      source: {{measurement: {TELEMETRY}, field: value, group_by: [salIndex]}}
      aggregate: mean
      window: 1s
      thresholds: {{warning: 1000000}}
    schedule: {{every: 1s}}
"""


async def _stream_figure(bench: Bench, registry: str, hook: str, n: int) -> None:
    """Telemetry records per second through the stream engine, against a bare decoding agent.

    SAL-shaped Avro records (ten series at 100 Hz each, key ``""``, one partition) go to the
    worker, whose rule evaluates every 1 s window of every series; the figure is records
    over the time from the first produce to the last window's trigger on the broker. The
    baseline is a bare Faust agent that decodes the same records and keeps a running mean
    per series, from the first produce to its N-th record.
    """
    async with httpx.AsyncClient() as http:
        answer = await http.post(
            f"{registry}/subjects/{TELEMETRY}-value/versions",
            json={"schema": json.dumps(TELEMETRY_SCHEMA)},
        )
    schema_id = answer.json()["id"]
    parsed = fastavro.parse_schema(TELEMETRY_SCHEMA)

    def encoded(i: int, stamp: float) -> tuple[bytes, bytes]:
        body = io.BytesIO()
        body.write(struct.pack(">bI", 0, schema_id))
        record = {
            "private_efdStamp": stamp,
            "salIndex": i % 10,
            "value": float(i % 50),
            "channels": [float(i % 7)] * 8,
        }
        fastavro.schemaless_writer(body, parsed, record)
        return b"", body.getvalue()

    def live() -> tuple[list[float], list[tuple[bytes, bytes]]]:
        """Records stamped from the next second on: never later than they are sent.

        (Records stamped in the past would be late by the stream's grace, and their
        windows closed by the clock before they arrive, as the engine's contract says.)
        """
        start_stamp = float(int(time.time()) + 1)
        stamps = [start_stamp + (i // 10) * 0.01 for i in range(n)]
        closing = [encoded(i, stamps[-1] + 100) for i in range(10)]  # closes every window
        return stamps, [encoded(i, stamp) for i, stamp in enumerate(stamps)] + closing

    stamps, values = live()
    windows = len({(i % 10, int(stamp)) for i, stamp in enumerate(stamps)})

    await bench.topics(TELEMETRY, "bench.telemetry")
    baseline = bench.baseline("telemetry", bench.bootstrap, "bench.telemetry", str(n), registry)
    await bench.produce("bench.telemetry", [values[0]])
    await bench.line(baseline, "ready")
    start = await bench.produce("bench.telemetry", values)
    bare = n / (await bench.line(baseline, "done") - start)
    stop_process(baseline)  # type: ignore[arg-type]

    prefix = "lsst.benchstream"
    port = free_port()
    worker = bench.worker(prefix, registry, hook, STREAM_RULES, CATCHER_HTTP_PORT=str(port))
    try:
        await _until_ready(port)
        if os.environ.get("BENCH_PROFILE"):  # py-spy record of the worker while it works
            subprocess.Popen(  # noqa: ASYNC220 - starting it does not block
                [
                    os.environ["BENCH_PROFILE"],
                    "record",
                    "-p",
                    str(worker.pid),
                    "-d",
                    "60",
                    "-o",
                    str(bench.work / "stream.svg"),
                    "--nonblocking",
                ]
            )
        stamps, values = live()
        start = await bench.produce(TELEMETRY, values)
        try:
            first, last = await _span_of(bench, f"{prefix}.triggers", windows, limit=180)
        except RuntimeError as exc:  # a defect to see, not a figure to hide
            missing = await _missing_windows(bench, registry, prefix, stamps)
            bench.record(
                "stream engine (telemetry records/s)", f"FAILED: {exc}; {missing}", "-", 0.0
            )
            return
        rate = n / (last - start)
    finally:
        stop_process(worker)
    bench.record(
        "stream engine (telemetry records/s)",
        f"{rate:,.0f} ({windows} windows, triggers from {first - start:.1f} s to"
        f" {last - start:.1f} s)",
        f"bare Faust agent decoding and averaging the same records {bare:,.0f}",
        rate / bare,
    )


async def _missing_windows(bench: Bench, registry: str, prefix: str, stamps: list[float]) -> str:
    """Which windows of which series have no trigger (for the diagnosis of a failed run)."""
    codec = AvroCodec(registry, prefix)
    found = set()
    for _p, _key, value, _t in await _read_all(bench, f"{prefix}.triggers"):
        trigger = Trigger.from_avro(await codec.decode("triggers", value))
        found.add((trigger.tags["salIndex"], int(trigger.time.timestamp()) - 1))
    first = int(stamps[0])
    missing: dict[str, list[int]] = {}
    for i, stamp in enumerate(stamps):
        window = (str(i % 10), int(stamp))
        if window not in found:
            missing.setdefault(window[0], []).append(window[1] - first)
    return "missing windows (seconds after the first) by salIndex: " + ", ".join(
        f"{series}: {sorted(set(seconds))}" for series, seconds in sorted(missing.items())
    )


EACH_TOPIC = "lsst.sal.Bench.telemetryEvery"
EACH_RULES = f"""
rules:
  - id: bench-each
    description: Every sample evaluated as it arrives (window 0), paging each rise.
    condition:
      engine: stream
      source: {{measurement: {EACH_TOPIC}, field: "channels[3]", group_by: [salIndex]}}
      window: 0
      thresholds: {{warning: 60}}
    actions:
      - name: notify
        type: webhook
        url_env: BENCH_WEBHOOK_URL
        on: {{severity: WARNING, edge: rising}}
        body: {{text: "{{trigger_id}}"}}
  - id: bench-windowed
    description: The mean of each 1 s window, above its level every other second.
    condition:
      engine: stream
      source: {{measurement: {EACH_TOPIC}, field: value, group_by: [salIndex]}}
      aggregate: mean
      window: 1s
      thresholds: {{warning: 60}}
    schedule: {{every: 1s}}
"""
EACH_RATE = 50
EACH_TOGGLE = 5
"""The every-sample rule's level changes every fifth sample: five rises a second."""


def _first_shown(love: FakeLoveManager, text: str) -> float | None:
    """When LOVE first received a map with an alarm whose reason holds ``text``."""
    for arrived, message in zip(love.arrived, love.messages, strict=True):
        for item in message.get("data") or []:
            alarms = (item.get("data") or {}).get("stream", {}).get("alarms", {})
            if any(text in alarm["reason"]["value"] for alarm in alarms.values()):
                return arrived
    return None


async def _stream_latency(
    bench: Bench, registry: str, hook: str, receiver: Receiver, seconds: int
) -> None:
    """Watcher-class latency at 50 samples/s: to the webhook POST and to LOVE's alarm map.

    The every-sample rule's level rises five times a second, each time to a value of its
    own (its alarm's reason names it): crossing sample produced → POST, and → the first
    map LOVE receives showing it. The windowed rule's 1 s windows alternate above and
    below its level, each with a mean of its own: the window's close (its end plus the
    grace, when the owner may evaluate it) → the first map showing it.
    """
    await bench.topics(EACH_TOPIC)
    async with httpx.AsyncClient() as http:
        answer = await http.post(
            f"{registry}/subjects/{EACH_TOPIC}-value/versions",
            json={"schema": json.dumps(TELEMETRY_SCHEMA)},
        )
    schema_id = answer.json()["id"]
    parsed = fastavro.parse_schema(TELEMETRY_SCHEMA)
    prefix = "lsst.benchevery"
    port, grace = free_port(), 2.0
    love = await FakeLoveManager().start()
    worker = bench.worker(
        prefix,
        registry,
        hook,
        EACH_RULES,
        CATCHER_HTTP_PORT=str(port),
        CATCHER_LOVE_URL=love.url,
        CATCHER_LOVE_PASSWORD=love.password,
        CATCHER_STREAM_GRACE=str(grace),
    )
    producer = bench.producer()
    await producer.start()
    sent: dict[str, float] = {}
    rises: dict[str, float] = {}  # an every-sample alarm's reason → its sample's time
    closes: dict[str, float] = {}  # a windowed alarm's reason → its window's close
    window = f"value over {timedelta(seconds=1)}"
    try:
        await _until_ready(port)
        receiver.reset()
        start = time.monotonic()
        for n in range(seconds * EACH_RATE):
            delay = start + n / EACH_RATE - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            stamp = time.time()
            rise, phase = divmod(n, 2 * EACH_TOGGLE)
            hot = phase >= EACH_TOGGLE  # five samples below the level, five above
            channels = [10.0] * 8
            channels[3] = 61.25 + rise if hot else 50.0
            second = int(stamp)
            mean = 61.0 + second % 1000 if second % 2 else 50.0  # the whole window's value
            body = io.BytesIO()
            body.write(struct.pack(">bI", 0, schema_id))
            record = {"private_efdStamp": stamp, "salIndex": 1, "value": mean}
            fastavro.schemaless_writer(body, parsed, record | {"channels": channels})
            if phase == EACH_TOGGLE:
                at = datetime.fromtimestamp(stamp, UTC)
                sent[make_trigger_id("bench-each", at, {"salIndex": "1"})] = stamp
                rises[f"channels[3] is {channels[3]:g}: WARNING"] = stamp
            if second % 2 and n >= EACH_RATE:  # not the first, partial, second
                closes.setdefault(f"{window} is {mean:g}: WARNING", second + 1 + grace)
            await producer.send(EACH_TOPIC, body.getvalue(), key=b"")
        await producer.flush()
        await receiver.distinct(len(sent), limit=120)
        await asyncio.sleep(grace + 3)  # the last windows close by the owner's clock
        await _stream_stages(bench, prefix, sent, receiver)
    finally:
        await producer.stop()
        stop_process(worker)
        await love.stop()
    latencies = sorted(receiver.arrivals[key] - stamp for key, stamp in sent.items())
    to_love: dict[str, list[float]] = {"each": [], "windows": []}
    unseen = {"each": 0, "windows": 0}  # changes LOVE never received
    for kind, expected in (("each", rises), ("windows", closes)):
        for text, since in expected.items():
            found = _first_shown(love, text)
            if found is None:
                unseen[kind] += 1
            else:
                to_love[kind].append(found - since)
    await bench.topics("bench.hop")
    hop = await _plain_hop(bench, len(sent))
    hop_p99 = f"plain broker hop p99 {_pct(hop, 99):.3f}"
    bench.record(
        "every-sample rule at 50 samples/s, crossing sample → POST, p99 (s)",
        f"p50 {_pct(latencies, 50):.3f}, p99 {_pct(latencies, 99):.3f}",
        hop_p99,
        _pct(latencies, 99) / _pct(hop, 99),
    )
    each, windows = sorted(to_love["each"]), sorted(to_love["windows"])
    bench.record(
        "every-sample rule, crossing sample → LOVE alarm map, p99 (s)",
        f"p50 {_pct(each, 50):.3f}, p99 {_pct(each, 99):.3f}"
        + (f"; {unseen['each']} never shown" if unseen["each"] else ""),
        hop_p99,
        _pct(each, 99) / _pct(hop, 99),
    )
    bench.record(
        f"1 s windows, window close (end + {grace:g} s grace) → LOVE alarm map, p99 (s)",
        f"p50 {_pct(windows, 50):.3f}, p99 {_pct(windows, 99):.3f}"
        + (f"; {unseen['windows']} never shown" if unseen["windows"] else ""),
        hop_p99,
        _pct(windows, 99) / _pct(hop, 99),
    )


async def _stream_stages(
    bench: Bench, prefix: str, sent: dict[str, float], receiver: Receiver
) -> None:
    """Where an every-sample trigger's time goes: each topic's broker time of its record.

    A crossing sample is found on the samples topic by its time, and on the later topics
    by its trigger id.
    """
    hops = ["internal.samples", "triggers", "internal.series", "internal.action-requests"]
    records = {hop: await _read_all(bench, f"{prefix}.{hop}") for hop in hops}
    hops = [hop for hop in hops if records[hop]]  # triggers keyed by series skip a hop
    stages: dict[str, list[float]] = {}
    for trigger_id, stamp in sent.items():
        times = [stamp]
        for hop in hops:
            needle = (json.dumps(stamp) if hop == "internal.samples" else trigger_id).encode()
            found = [ts for _p, _key, value, ts in records[hop] if needle in value]
            if not found:
                break
            times.append(min(found))
        else:
            times.append(receiver.arrivals[trigger_id])
            names = ["produce", *hops, "POST"]
            for i in range(len(times) - 1):
                stages.setdefault(f"{names[i]} → {names[i + 1]}", []).append(
                    times[i + 1] - times[i]
                )
    parts = [f"{name} p50 {_pct(sorted(v), 50):.3f} s" for name, v in stages.items()]
    bench.extra.append("every-sample stages (broker times): " + "; ".join(parts))
    print(f"  {bench.extra[-1]}", flush=True)


async def _until_ready(port: int, limit: float = 180) -> None:
    deadline = time.monotonic() + limit
    async with httpx.AsyncClient(timeout=2) as http:
        while time.monotonic() < deadline:
            try:
                answer = await http.get(f"http://127.0.0.1:{port}/status")
                if answer.is_success and answer.json()["working"]:  # at work, not only ready
                    return
            except (httpx.HTTPError, ValueError):
                pass
            await asyncio.sleep(0.2)
    raise RuntimeError("the worker was not ready in time")


async def _last_of(bench: Bench, topic: str, count: int, limit: float = 600) -> float:
    """When the ``count``-th record of a topic was written (the broker's timestamp)."""
    return (await _span_of(bench, topic, count, limit))[1]


async def _span_of(
    bench: Bench, topic: str, count: int, limit: float = 600
) -> tuple[float, float]:
    """When the first and the ``count``-th record of a topic were written."""
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bench.bootstrap, auto_offset_reset="earliest"
    )
    await consumer.start()
    stamps: list[float] = []
    deadline = time.monotonic() + limit
    try:
        while len(stamps) < count:
            if time.monotonic() > deadline:
                raise RuntimeError(f"only {len(stamps)} of {count} records on {topic}")
            batch = await consumer.getmany(timeout_ms=500)
            stamps += [m.timestamp / 1000 for records in batch.values() for m in records]
    finally:
        await consumer.stop()
    return min(stamps), max(stamps)


def _setting(text: str) -> tuple[str, str]:
    name, equals, value = text.partition("=")
    if not equals or not name.startswith("CATCHER_"):
        raise argparse.ArgumentTypeError(f"expected CATCHER_NAME=VALUE, got {text!r}")
    return name, value


def cli() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--triggers", type=int, default=5000, help="triggers per throughput run")
    parser.add_argument(
        "--fill", type=int, default=20000, help="finished actions before the first restart"
    )
    parser.add_argument(
        "--fill-more",
        type=int,
        default=100000,
        help="finished actions before the second restart (restart must not grow with them)",
    )
    parser.add_argument(
        "--profile",
        type=Path,
        default=None,
        metavar="DIR",
        help="sample the worker with py-spy while it plans and fires; raw samples in DIR",
    )
    parser.add_argument("--chaos", type=int, default=2000, help="triggers in the chaos run")
    parser.add_argument("--kills", type=int, default=5, help="SIGKILLs in the chaos run")
    parser.add_argument(
        "--latency-seconds", type=int, default=10, help="seconds at 100 triggers/s"
    )
    parser.add_argument(
        "--batch-size", type=int, default=16384, help="producer batch size in bytes"
    )
    parser.add_argument(
        "--set",
        action="append",
        type=_setting,
        default=[],
        metavar="CATCHER_NAME=VALUE",
        help="a setting for Catcher's worker (repeatable), e.g. CATCHER_BATCH_WAIT=0.01",
    )
    parser.add_argument(
        "--backtest-days", type=int, default=7, help="days of 1 Hz data in the backtest run"
    )
    parser.add_argument(
        "--samples", type=int, default=20000, help="telemetry records in the stream run"
    )
    parser.add_argument(
        "--only",
        choices=["all", "stream", "backtest", "throughput", "restart", "takeover", "chaos"],
        default="all",
        help="every figure (default), or only the stream engine's (throughput, latency),"
        " the backtest's, planning, firing and latency, the restarts' (with the ledger's"
        " size), a takeover's or the chaos run's",
    )
    parser.add_argument(
        "--broker",
        choices=["kafka", "tansu"],
        default="kafka",
        help="Apache Kafka (default) or the demo's embedded broker",
    )
    asyncio.run(main(parser.parse_args()))


if __name__ == "__main__":
    cli()
