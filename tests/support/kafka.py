"""Apache Kafka for the tests and the benchmarks: one KRaft node on loopback.

The broker runs from the jars that Maven resolves from ``tools/kafka/pom.xml`` into
``tools/kafka/lib`` (``.ci/run`` does it; :func:`kafka_libs` does it too when the folder is
missing and ``mvn`` is on the PATH). Its storage is formatted by Kafka's own storage tool in
a directory of the caller's, so the broker can be SIGKILLed and started again on its data.

The settings are production's except where one node or a quick test needs otherwise: one
replica everywhere, no delay before the first rebalance, no topic created by a produce
(topics are declared, as on Sasquatch), and a log cleaner that looks often, so that a test
whose topic is created with :data:`COMPACT_SOON` sees it compacted within seconds.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import signal
import socket
import struct
import subprocess
import time
import uuid
from pathlib import Path
from typing import IO, Self

from catcher.broker import free_port, stop_process

__all__ = ["COMPACT_SOON", "KafkaBroker", "KafkaStartError", "kafka_libs"]

ROOT = Path(__file__).resolve().parents[2]
POM = ROOT / "tools" / "kafka" / "pom.xml"
LIBS_ENV = "CATCHER_KAFKA_LIBS"

SETTINGS = {
    "process.roles": "broker,controller",
    "node.id": "1",
    "controller.listener.names": "CONTROLLER",
    "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
    "inter.broker.listener.name": "PLAINTEXT",
    "num.partitions": "1",
    "auto.create.topics.enable": "false",
    "offsets.topic.replication.factor": "1",
    "offsets.topic.num.partitions": "10",
    "transaction.state.log.replication.factor": "1",
    "transaction.state.log.min.isr": "1",
    "transaction.state.log.num.partitions": "4",
    "share.coordinator.state.topic.replication.factor": "1",
    "share.coordinator.state.topic.min.isr": "1",
    "group.initial.rebalance.delay.ms": "0",
    # A node restarted after a SIGKILL is fenced until its old registration expires.
    "broker.session.timeout.ms": "3000",
    "broker.heartbeat.interval.ms": "500",
    # The cleaner looks every 500 ms; a topic that a test wants to see compacted is
    # created with COMPACT_SOON, other topics keep production's segment and ratio defaults.
    "log.cleaner.backoff.ms": "500",
    "log.cleaner.min.compaction.lag.ms": "0",
    "log.cleaner.delete.retention.ms": "1000",
    "log.cleaner.dedupe.buffer.size": str(16 * 1024 * 1024),
    "log.cleaner.threads": "1",
    "message.max.bytes": str(8 * 1024 * 1024),
}

COMPACT_SOON = {
    "cleanup.policy": "compact",
    "segment.ms": "1000",
    "min.cleanable.dirty.ratio": "0.01",
    "min.compaction.lag.ms": "0",
}
"""Topic settings under which a compacted topic is cleaned within seconds of its writes
(a segment rolls at the first write a second after it opened)."""

LOG4J = """\
status = warn
appender.file.type = File
appender.file.name = file
appender.file.fileName = {log}
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.file.ref = file
logger.cleaner.name = kafka.log.LogCleaner
logger.cleaner.level = INFO
logger.request.name = kafka.request.logger
logger.request.level = WARN
"""


class KafkaStartError(RuntimeError):
    """The broker could not be resolved, formatted or started; the message says why."""


def _pom_digest() -> str:
    return hashlib.sha256(POM.read_bytes()).hexdigest()


def kafka_libs() -> Path:
    """The folder of the broker's jars: ``$CATCHER_KAFKA_LIBS`` or ``tools/kafka/lib``.

    Resolved with Maven when the folder is missing or was resolved from another pom.
    """
    if os.environ.get(LIBS_ENV):
        libs = Path(os.environ[LIBS_ENV])
        if not any(libs.glob("kafka_2.13-*.jar")):
            raise KafkaStartError(f"{LIBS_ENV}={libs} holds no kafka_2.13 jar.")
        return libs
    libs = POM.parent / "lib"
    stamp = libs / ".pom.sha256"
    if stamp.exists() and stamp.read_text() == _pom_digest():
        return libs
    mvn = shutil.which("mvn")
    if mvn is None:
        raise KafkaStartError(
            f"Apache Kafka's jars are not in {libs} and Maven (mvn) is not installed: run"
            " .ci/run, or install Maven and run the tests again."
        )
    shutil.rmtree(libs, ignore_errors=True)
    _run(
        [
            mvn,
            "-q",
            "-B",
            "-f",
            str(POM),
            "dependency:copy-dependencies",
            "-DincludeScope=runtime",
            f"-DoutputDirectory={libs}",
        ],
        f"Maven could not resolve Apache Kafka from {POM}",
    )
    stamp.write_text(_pom_digest())
    return libs


def _run(command: list[str], failure: str) -> None:
    """Run a set-up command; a failure raises with what it printed."""
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise KafkaStartError(f"{failure}:\n{result.stdout[-3000:]}{result.stderr[-3000:]}")


def _java() -> str:
    home = os.environ.get("JAVA_HOME")
    java = str(Path(home) / "bin" / "java") if home else shutil.which("java")
    if not java or not Path(java).exists():
        raise KafkaStartError("Apache Kafka needs Java 17 or later (java not found).")
    return java


def _metadata_brokers(port: int, timeout: float = 2.0) -> int:
    """How many brokers a Metadata request (v4, all topics) on ``port`` lists.

    Raises OSError while nothing answers.
    """
    client = b"catcher-tests"
    header = struct.pack(">hhih", 3, 4, 1, len(client)) + client
    body = struct.pack(">ib", -1, 0)  # all topics (null array), no auto-creation
    request = header + body
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(struct.pack(">i", len(request)) + request)
        size = struct.unpack(">i", _read(sock, 4))[0]
        response = _read(sock, size)
    # correlation id (4), throttle time (4), then the brokers array's length.
    return int(struct.unpack(">i", response[8:12])[0])


def _read(sock: socket.socket, count: int) -> bytes:
    data = b""
    while len(data) < count:
        chunk = sock.recv(count - len(data))
        if not chunk:
            raise ConnectionError("The broker closed the connection.")
        data += chunk
    return data


class KafkaBroker:
    """One Apache Kafka node (broker and controller) with its data in ``directory``.

    ``advertised_port`` is the port clients are told to use (a proxy's, when one stands in
    front). ``start`` formats the storage the first time and starts the broker on whatever
    data the directory holds; ``kill`` and ``stop`` leave the data for the next ``start``.
    """

    def __init__(
        self,
        directory: Path,
        *,
        port: int | None = None,
        advertised_port: int | None = None,
        settings: dict[str, str] | None = None,
        heap: str = "1g",
    ) -> None:
        self.directory = directory
        self.port = port or free_port()
        self.controller_port = free_port()
        self.advertised_port = advertised_port or self.port
        self.settings = SETTINGS | (settings or {})
        self.heap = heap
        self.log_path = directory / "server.log"
        self.starts = 0
        self._process: subprocess.Popen[bytes] | None = None
        self._stdout: IO[bytes] | None = None

    @property
    def bootstrap_servers(self) -> str:
        return f"127.0.0.1:{self.advertised_port}"

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    @property
    def log(self) -> str:
        """The broker's log and what the JVM printed, for an error message."""
        parts = [
            path.read_text(errors="replace")
            for path in (self.directory / "stdout.log", self.log_path)
            if path.exists()
        ]
        return "\n".join(parts)

    def _properties(self) -> Path:
        path = self.directory / "server.properties"
        values = self.settings | {
            "controller.quorum.voters": f"1@127.0.0.1:{self.controller_port}",
            "listeners": (
                f"PLAINTEXT://127.0.0.1:{self.port},CONTROLLER://127.0.0.1:{self.controller_port}"
            ),
            "advertised.listeners": f"PLAINTEXT://127.0.0.1:{self.advertised_port}",
            "log.dirs": str(self.directory / "data"),
        }
        path.write_text("".join(f"{key}={value}\n" for key, value in values.items()))
        (self.directory / "log4j2.properties").write_text(LOG4J.format(log=self.log_path))
        return path

    def _command(self, main: str, *args: str) -> list[str]:
        libs = kafka_libs()
        return [
            _java(),
            f"-Xmx{self.heap}",
            "-Xms256m",
            "-XX:+UseG1GC",
            "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={self.directory / 'log4j2.properties'}",
            "-cp",
            f"{libs}/*",
            main,
            *args,
        ]

    def _format(self, properties: Path) -> None:
        if (self.directory / "data" / "meta.properties").exists():
            return
        _run(
            self._command(
                "kafka.tools.StorageTool",
                "format",
                "--cluster-id",
                uuid.uuid4().hex[:22],
                "--config",
                str(properties),
            ),
            f"Kafka's storage tool could not format {self.directory / 'data'}",
        )

    def start(self, timeout: float = 120.0) -> Self:
        """Start the broker on its data and wait until it answers metadata requests."""
        if self._process is not None and self._process.poll() is None:
            return self
        self.directory.mkdir(parents=True, exist_ok=True)
        properties = self._properties()
        self._format(properties)
        self._stdout = (self.directory / "stdout.log").open("ab")
        self._process = subprocess.Popen(
            self._command("kafka.Kafka", str(properties)),
            stdout=self._stdout,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        self.starts += 1
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                code = self._process.returncode
                self._close()
                raise KafkaStartError(
                    f"Apache Kafka exited at start with code {code}. Its log:\n{self.log[-6000:]}"
                )
            with contextlib.suppress(OSError, struct.error, ConnectionError):
                if _metadata_brokers(self.port) >= 1:
                    return self
            time.sleep(0.2)
        self.kill()
        raise KafkaStartError(
            f"Apache Kafka did not answer metadata on port {self.port} within {timeout:.0f} s."
            f" Its log:\n{self.log[-6000:]}"
        )

    def kill(self) -> None:
        """SIGKILL: no flush, no controlled shutdown; the data stays for the next start."""
        if self._process is not None and self._process.poll() is None:
            self._process.send_signal(signal.SIGKILL)
            self._process.wait()
        self._close()

    def stop(self) -> None:
        """A clean shutdown (SIGTERM), SIGKILL after 60 s; the data stays."""
        if self._process is not None:
            stop_process(self._process, timeout=60)
        self._close()

    def _close(self) -> None:
        self._process = None
        if self._stdout is not None:
            self._stdout.close()
            self._stdout = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
