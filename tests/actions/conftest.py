"""Fixtures shared by the executor tests."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest_asyncio


@pytest_asyncio.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    """The HTTP client an executor uses, with a short timeout."""
    async with httpx.AsyncClient(timeout=2.0) as http:
        yield http
