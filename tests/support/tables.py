"""An in-memory stand-in for a Faust table, for unit tests of what writes to tables."""

from __future__ import annotations

import asyncio
from typing import Any


class MemoryTable:
    """Holds values and records each changelog write, acknowledged at once."""

    def __init__(self) -> None:
        self.data: dict[str, Any] = {}
        self.changelog: list[tuple[int | None, str, Any]] = []

    def send_changelog(self, partition: int | None, key: Any, value: Any) -> asyncio.Future[None]:
        self.changelog.append((partition, key, value))
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        future.set_result(None)
        return future
