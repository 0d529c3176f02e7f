"""Singleton jobs run on the worker that is their place, and only there."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any

import pytest

from catcher.services.singletons import SingletonJobs


@pytest.mark.asyncio
async def test_jobs_follow_their_place() -> None:
    here = True
    started: list[str] = []

    def job(name: str) -> Callable[[], Coroutine[Any, Any, None]]:
        async def run() -> None:
            started.append(name)
            await asyncio.Event().wait()

        return run

    jobs = SingletonJobs(lambda: here, {"love": job("love"), "mirror": None})
    jobs.place()
    await asyncio.sleep(0)
    assert jobs.running == {"love"} and started == ["love"]
    jobs.place()  # already running: not started twice
    await asyncio.sleep(0)
    assert started == ["love"]
    here = False  # the partition moved to another worker
    jobs.place()
    await asyncio.sleep(0)
    assert jobs.running == set()
    here = True
    jobs.place()
    await asyncio.sleep(0)
    assert jobs.running == {"love"} and started == ["love", "love"]
    jobs.place(stop=True)  # shutting down
    await asyncio.sleep(0)
    assert jobs.running == set()
