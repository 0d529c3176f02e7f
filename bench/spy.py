"""Sampling profiles of a worker process for bench/run.py (``--profile DIR``).

py-spy (a development dependency) samples the process from outside, 100 times a second,
with no change to its code; :func:`summary` turns the raw samples into the top lines by
own time (the function on top of the stack) and by total time (anywhere on the stack).
"""

from __future__ import annotations

import collections
import shutil
import signal
import subprocess
import sys
from pathlib import Path

__all__ = ["Profile", "summary"]


class Profile:
    """py-spy recording one process until :meth:`stop`."""

    def __init__(self, pid: int, path: Path) -> None:
        spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
        self.path = path
        self._process = subprocess.Popen(
            [spy, "record", "-p", str(pid), "-f", "raw", "-r", "100", "-o", str(path)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def stop(self) -> str:
        """Stop sampling; returns the summary."""
        self._process.send_signal(signal.SIGINT)
        self._process.wait(timeout=60)
        return summary(self.path)


def _name(frame: str) -> str:
    """``function (package/module.py:line)`` as ``function (package/module.py)``."""
    function, _, where = frame.partition(" (")
    return f"{function} ({where.rsplit(':', 1)[0]})"


def _package(name: str) -> str:
    where = name.rpartition(" (")[2].rstrip(")")
    return where.split("/", 1)[0] if "/" in where else where


def summary(path: Path, top: int = 12) -> str:
    """The top functions by own and by total share of the samples, as text."""
    own: collections.Counter[str] = collections.Counter()
    packages: collections.Counter[str] = collections.Counter()
    total: collections.Counter[str] = collections.Counter()
    samples = 0
    if not path.exists():
        return f"no samples in {path}"
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        frames = [_name(f) for f in stack.split(";") if f and not f.startswith("process ")]
        if not frames:
            continue
        n = int(count)
        samples += n
        own[frames[-1]] += n
        packages[_package(frames[-1])] += n
        for frame in set(frames):
            if (
                frame.rpartition(" (")[2].startswith("catcher/")
                and "catcher/cli" not in frame
                and "__main__" not in frame
            ):
                total[frame] += n
    if not samples:
        return f"no samples in {path}"
    lines = [f"{samples} samples; own time by package (selectors.py: waiting):"]
    lines += ["  " + ", ".join(f"{p} {n / samples:.0%}" for p, n in packages.most_common(top))]
    lines.append("own time by function:")
    lines += [f"  {n / samples:6.1%}  {f}" for f, n in own.most_common(top)]
    lines.append("total time of Catcher's functions (what they call included):")
    lines += [f"  {n / samples:6.1%}  {f}" for f, n in total.most_common(top)]
    return "\n".join(lines)
