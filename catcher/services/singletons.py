"""Jobs that exactly one worker runs: the LOVE producer and the mirror.

The worker that holds partition 0 of the triggers topic runs them; when that partition
moves, they stop here and start on its new holder. :meth:`SingletonJobs.place` is called on
every assignment and revocation.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine, Mapping
from typing import Any

import structlog

__all__ = ["SingletonJobs"]

logger = structlog.get_logger("catcher")

Job = Callable[[], Coroutine[Any, Any, None]]


class SingletonJobs:
    """Named jobs run here only while ``here()`` says this worker is their place."""

    def __init__(self, here: Callable[[], bool], jobs: Mapping[str, Job | None]) -> None:
        self._here = here
        self._jobs = {name: job for name, job in jobs.items() if job is not None}
        self._tasks: dict[str, asyncio.Task[None]] = {}

    @property
    def running(self) -> set[str]:
        """The jobs running here now."""
        return {name for name, task in self._tasks.items() if not task.done()}

    def place(self, *, stop: bool = False) -> None:
        """Start the jobs if this worker is their place, stop them if it is no longer."""
        here = not stop and self._here()
        for name, job in self._jobs.items():
            task = self._tasks.get(name)
            running = task is not None and not task.done()
            if here and not running:
                logger.info("Running a singleton job on this worker", job=name)
                self._tasks[name] = asyncio.create_task(job(), name=name)
            elif running and not here and task is not None:
                logger.info("Stopped a singleton job here (another worker runs it)", job=name)
                task.cancel()
                del self._tasks[name]
