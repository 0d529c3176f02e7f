from __future__ import annotations

import random

from catcher.config import RetrySettings
from catcher.retry import RetryPolicy


def test_backoff_grows_geometrically_up_to_the_cap() -> None:
    policy = RetryPolicy(backoff_initial=1, backoff_multiplier=2, backoff_max=5, jitter=0)
    assert [policy.backoff(n) for n in range(1, 6)] == [1, 2, 4, 5, 5]


def test_jitter_takes_at_most_its_fraction_off() -> None:
    policy = RetryPolicy(backoff_initial=10, backoff_multiplier=1, jitter=0.5)
    rng = random.Random(7)
    draws = [policy.backoff(1, rng) for _ in range(200)]
    assert min(draws) >= 5
    assert max(draws) <= 10
    assert len(set(draws)) > 100  # actually random


def test_policy_from_settings() -> None:
    settings = RetrySettings(attempts=3, deadline=20)
    policy = RetryPolicy.from_settings(settings)
    assert (policy.attempts, policy.deadline, policy.backoff_initial) == (3, 20, 1.0)
