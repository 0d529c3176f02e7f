"""The tests' Apache Kafka launcher says why a broker did not start, with its log."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from tests.support.kafka import KafkaBroker, KafkaStartError


def test_a_broker_that_cannot_start_shows_its_log(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        broker = KafkaBroker(tmp_path / "kafka", port=taken.getsockname()[1])
        with pytest.raises(KafkaStartError) as raised:
            broker.start(timeout=90)
    message = str(raised.value)
    assert message.startswith("Apache Kafka exited at start with code")
    assert "Its log:" in message
    assert "in use" in message.lower()  # the reason, from the broker's own log
    assert broker.pid is None  # nothing left running
