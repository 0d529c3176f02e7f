"""Helpers for unit tests of the services: a shared rule set, triggers, a recording send."""

from __future__ import annotations

from typing import Any

from catcher.models.enums import Severity, TriggerSource
from catcher.models.records import Trigger
from catcher.models.rules import RuleSet
from tests.support import DATA

RULES_DIR = DATA / "rules"

WEBHOOK_RULES = RuleSet.from_path(RULES_DIR / "webhook-cooldown.yaml")
"""Rule ``r``: webhook ``a`` (cooldown 1h) and ``late`` (CRITICAL, max_age 1m)."""


class Sent:
    """A ``SendJson`` that records what it is given."""

    def __init__(self) -> None:
        self.records: list[tuple[str, str, dict[str, Any]]] = []

    async def __call__(self, topic: str, key: str, value: dict[str, Any]) -> None:
        self.records.append((topic, key, value))


def trigger_of(severity: Severity = Severity.WARNING, **kwargs: Any) -> Trigger:
    """A manual trigger of rule ``r`` for salIndex 1 (unless told otherwise)."""
    kwargs.setdefault("tags", {"salIndex": "1"})
    return Trigger.create("r", severity, reason="x", source=TriggerSource.manual, **kwargs)
