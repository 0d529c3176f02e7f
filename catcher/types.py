"""Type aliases shared by the services, the storage and the wiring.

The callables here are what the Faust wiring hands to the services, so that no service
imports another only for a signature.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

__all__ = [
    "OwnsPartition",
    "OwnsTopicPartition",
    "Send",
    "SendJson",
    "SendSoon",
    "SendToPartition",
]

Send = Callable[[str, bytes, bytes], Awaitable[None]]
"""Send a record (topic, key, value) and wait for the broker's acknowledgement."""

SendToPartition = Callable[[str, bytes, bytes, int | None], Awaitable[None]]
"""Send a record (topic, key, value) to one partition (None: by its key), acknowledged."""

SendSoon = Callable[[str, bytes, bytes, int | None], Awaitable[Awaitable[None]]]
"""Hand a record (topic, key, value, partition) to the producer; returns its acknowledgement.

Records handed over one after another keep their order in their partition; awaiting the
acknowledgements together costs one round trip instead of one per record.
"""

SendJson = Callable[[str, str, dict[str, Any]], Awaitable[None]]
"""Send a JSON record (topic, key, value) and wait for the broker's acknowledgement."""

OwnsPartition = Callable[[int], bool]
"""Whether this worker owns a partition of the topic the caller keeps its state by."""

OwnsTopicPartition = Callable[[str, int], bool]
"""Whether this worker owns a partition of a topic."""
