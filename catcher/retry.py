"""The one retry policy for calls to external services."""

from __future__ import annotations

import random
from dataclasses import dataclass

from .config import RetrySettings

__all__ = ["RetryPolicy"]


@dataclass(frozen=True)
class RetryPolicy:
    """Attempts, exponential backoff with jitter, a per-attempt timeout and a total deadline.

    Retryable failures (5xx, 429, connection and read errors, timeouts) are attempted again
    while attempts and the deadline allow; other failures end the action at once.
    """

    attempts: int = 5
    backoff_initial: float = 1.0
    backoff_max: float = 60.0
    backoff_multiplier: float = 2.0
    jitter: float = 0.2
    attempt_timeout: float = 30.0
    deadline: float = 600.0

    @classmethod
    def from_settings(cls, settings: RetrySettings) -> RetryPolicy:
        """The policy configured by CATCHER_RETRY_* variables."""
        return cls(**settings.model_dump())

    def backoff(self, attempt: int, rng: random.Random | None = None) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1-based).

        The nominal delay grows geometrically up to ``backoff_max``; jitter takes a random
        fraction (up to ``jitter``) off it so that many actions do not retry in step.
        """
        nominal = min(
            self.backoff_max, self.backoff_initial * self.backoff_multiplier ** max(attempt - 1, 0)
        )
        draw = (rng or random).random()
        return nominal * (1.0 - self.jitter * draw)
