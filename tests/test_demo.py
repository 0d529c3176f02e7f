"""`catcher demo` as a user runs it: a child process, then nothing left behind."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

pytestmark = pytest.mark.e2e


def leftovers(port: str, workdir: str) -> list[str]:
    """Processes whose command line or environment mention the demo's broker or directory."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            environ = (proc / "environ").read_bytes().decode(errors="replace")
        except OSError:
            continue
        if f"127.0.0.1:{port}" in cmdline or workdir in environ:
            found.append(f"{proc.name}: {cmdline}")
    return found


def start_demo(*args: str) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CATCHER_", "KAFKA_"))}
    return subprocess.Popen(
        [sys.executable, "-m", "catcher", "demo", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )


def test_demo_runs_actions_serves_the_page_and_cleans_up() -> None:
    demo = start_demo("--duration", "150", "--serve")
    assert demo.stdout is not None
    lines: list[str] = []
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        line = demo.stdout.readline()
        assert line, "".join(lines)  # the demo ended before it served the page
        lines.append(line)
        if line.startswith("Operator page: "):
            break
    page_url = lines[-1].split()[2]
    with httpx.Client(timeout=10) as client:
        page = client.get(page_url)
        assert page.status_code == 200 and "Catcher alarms" in page.text
        with client.stream("GET", f"{page_url}events") as events:
            first = next(line for line in events.iter_lines() if line.startswith("data: "))
    names = [a["name"] for a in json.loads(first.removeprefix("data: "))["alarms"]]
    assert "demo-hexapod-stream:salIndex=1" in names, names
    demo.send_signal(signal.SIGINT)
    rest, _ = demo.communicate(timeout=60)
    output = "".join(lines) + rest
    assert demo.returncode == 0, output
    match = re.search(r"Embedded broker on 127\.0\.0\.1:(\d+); logs in (\S+)", output)
    assert match, output
    table = output.split("Action history (catcher history):")[1]
    rows = [line.split() for line in table.splitlines()[3:] if line.strip()]
    succeeded = sorted(r[2] for r in rows if len(r) > 3 and r[3] == "succeeded")
    assert succeeded == ["notify"] * 4 + ["page", "report", "reprocess"], output
    assert (
        "The fake OCPS received 1 job(s); the fake Times Square computed 1 page(s); the fake"
        " noteburst received 1 notebook(s); the fake webhook received 4 POST(s)." in output
    )
    life = output.split("as LOVE was sent it (csc Catcher, stream 'stream'):")[1].splitlines()
    assert [" ".join(line.split()) for line in life[1:5]] == [
        "severity WARNING max WARNING not acknowledged",
        "severity CRITICAL max CRITICAL not acknowledged",
        "severity CRITICAL max CRITICAL acknowledged by demo-operator",
        "severity NONE max NONE not acknowledged",
    ], output
    # LOVE gets the latest map after each batch of changes, so the WARNING may be folded
    # into the stale state that follows it; the maximum severity keeps it.
    stream = output.split("raised from the telemetry stream:")[1].split("\n  (")[0]
    lines = [" ".join(line.split()) for line in stream.strip().splitlines()]
    assert lines[-1] == "severity NONE max WARNING not acknowledged", output
    assert all("max WARNING" in line for line in lines), output
    assert "Fed 32 telemetry samples" in output
    assert leftovers(match.group(1), match.group(2)) == []


def test_demo_stops_cleanly_on_ctrl_c() -> None:
    demo = start_demo("--duration", "150")
    assert demo.stdout is not None
    first = demo.stdout.readline()
    match = re.search(r"Embedded broker on 127\.0\.0\.1:(\d+); logs in (\S+)", first)
    assert match, first
    time.sleep(5)  # the worker is starting
    demo.send_signal(signal.SIGINT)
    output, _ = demo.communicate(timeout=60)
    assert demo.returncode == 0, first + output
    assert "Interrupted" in output
    assert leftovers(match.group(1), match.group(2)) == []
