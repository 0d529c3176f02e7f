"""Faust's Kafka transport with idempotent producers.

Faust turns idempotence on only inside transactions (``exactly_once``); Catcher runs
``at_least_once`` and keeps its own exactly-once bookkeeping, but its records should not be
written twice by a producer's own retries either. With this transport every producer the
worker makes (agents' sends, table changelogs) is idempotent, with ``acks=all``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from faust.transport.drivers import aiokafka as driver

__all__ = ["IdempotentTransport"]


class IdempotentProducer(driver.Producer):
    """Faust's aiokafka producer, always idempotent."""

    def _settings_extra(self) -> Mapping[str, Any]:
        return {**super()._settings_extra(), "acks": "all", "enable_idempotence": True}


class IdempotentTransport(driver.Transport):
    """Faust's aiokafka transport whose producers are idempotent."""

    Producer = IdempotentProducer
