"""A real InfluxDB 1.x server (Debian's influxdb package) on free loopback ports."""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import time
from pathlib import Path

import httpx

from catcher.broker import free_port, stop_process


class InfluxDB:
    """influxd with its own data directory."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> InfluxDB:
        influxd = shutil.which("influxd") or "/usr/bin/influxd"
        assert Path(influxd).exists(), "influxd is needed: apt-get install influxdb (.ci/run does)"
        config = self.workdir / "influxdb.conf"
        config.write_text(
            "reporting-disabled = true\n"
            f'bind-address = "127.0.0.1:{free_port()}"\n'
            f'[meta]\n  dir = "{self.workdir}/meta"\n'
            f'[data]\n  dir = "{self.workdir}/data"\n  wal-dir = "{self.workdir}/wal"\n'
            "  query-log-enabled = false\n"
            f'[http]\n  bind-address = "127.0.0.1:{self.port}"\n  log-enabled = false\n'
            "[monitor]\n  store-enabled = false\n"
        )
        log = (self.workdir / "influxd.log").open("wb")
        self._process = subprocess.Popen(
            [influxd, "-config", str(config)],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", self.port), 0.5),
            ):
                if httpx.get(f"{self.url}/ping", timeout=2).status_code == 204:
                    return self
            time.sleep(0.2)
        raise AssertionError(
            "influxd did not start: " + (self.workdir / "influxd.log").read_text()
        )

    def query(self, q: str, db: str | None = None) -> dict:
        params = {"q": q, **({"db": db} if db else {})}
        response = httpx.post(f"{self.url}/query", params=params, timeout=10)
        response.raise_for_status()
        return response.json()

    def write(self, db: str, lines: list[str]) -> None:
        response = httpx.post(
            f"{self.url}/write",
            params={"db": db, "rp": "autogen"},
            content="\n".join(lines),
            timeout=10,
        )
        assert response.status_code == 204, response.text

    def stop(self) -> None:
        if self._process is not None:
            stop_process(self._process, timeout=15)
