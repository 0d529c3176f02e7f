"""Fixtures: the real broker for the session, fakes and a stack per test."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import pytest_asyncio

from catcher.broker import free_port
from catcher.fakes.noteburst import FakeNoteburst
from catcher.fakes.registry import FakeSchemaRegistry
from catcher.fakes.times_square import FakeTimesSquare
from catcher.fakes.uws import FakeUws
from catcher.fakes.webhook import FakeWebhook
from tests.support.influxdb import InfluxDB
from tests.support.kafka import KafkaBroker
from tests.support.proxy import CuttableProxy
from tests.support.stack import Stack


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--update-test-data",
        action="store_true",
        default=False,
        help="Rewrite the expected outputs in tests/data/ from the code.",
    )


@pytest.fixture
def update_test_data(request: pytest.FixtureRequest) -> bool:
    """Whether to rewrite expected outputs instead of comparing with them."""
    return bool(request.config.getoption("--update-test-data"))


@pytest.fixture(scope="session")
def network() -> Iterator[CuttableProxy]:
    """The loopback proxy every client reaches the broker through; tests cut it."""
    proxy = CuttableProxy(free_port(), free_port()).start()
    try:
        yield proxy
    finally:
        proxy.stop()


@pytest.fixture(scope="session")
def broker(
    tmp_path_factory: pytest.TempPathFactory, network: CuttableProxy
) -> Iterator[KafkaBroker]:
    """Apache Kafka (one KRaft node) for the whole session, behind the proxy.

    A test may SIGKILL and restart it (its data stays); it is running again after each test.
    """
    with KafkaBroker(
        tmp_path_factory.mktemp("kafka"),
        port=network.target_port,
        advertised_port=network.port,
    ) as running:
        yield running


@pytest_asyncio.fixture
async def registry() -> AsyncIterator[FakeSchemaRegistry]:
    async with FakeSchemaRegistry() as fake:
        yield fake


@pytest_asyncio.fixture
async def noteburst() -> AsyncIterator[FakeNoteburst]:
    async with FakeNoteburst() as fake:
        yield fake


@pytest_asyncio.fixture
async def webhook() -> AsyncIterator[FakeWebhook]:
    async with FakeWebhook() as fake:
        yield fake


@pytest_asyncio.fixture
async def uws() -> AsyncIterator[FakeUws]:
    async with FakeUws() as fake:
        yield fake


@pytest_asyncio.fixture
async def times_square() -> AsyncIterator[FakeTimesSquare]:
    async with FakeTimesSquare() as fake:
        yield fake


@pytest_asyncio.fixture
async def stack(
    broker: KafkaBroker,
    registry: FakeSchemaRegistry,
    noteburst: FakeNoteburst,
    webhook: FakeWebhook,
    uws: FakeUws,
    times_square: FakeTimesSquare,
    tmp_path: Path,
) -> AsyncIterator[Stack]:
    """Fakes, unique topics and consumer group; workers are stopped at the end."""
    running = Stack(
        broker.bootstrap_servers,
        tmp_path,
        registry,
        noteburst,
        webhook,
        uws,
        times_square,
        broker=broker,
    )
    try:
        yield running
    finally:
        running.stop()
        broker.start()  # again, if the test killed or stopped it


@pytest.fixture(scope="session")
def influxdb(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InfluxDB]:
    """One real InfluxDB 1.x server for the session (each test uses its own database)."""
    server = InfluxDB(tmp_path_factory.mktemp("influxdb")).start()
    try:
        yield server
    finally:
        server.stop()
