"""Small asyncio helpers shared by the services."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable

__all__ = ["together"]


async def together(*steps: Awaitable[object]) -> None:
    """Await every step concurrently; raise the first failure once all have ended.

    Unlike a bare ``asyncio.gather``, nothing is left running when this raises, so a caller
    that retries never overlaps with its own earlier attempt.
    """
    results = await asyncio.gather(*steps, return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException):
            raise result
