"""Objects built once per process from the configuration."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import httpx

from .actions import NoteburstExecutor, WebhookExecutor
from .actions.base import Executor
from .avro import AvroCodec
from .config import Config
from .exceptions import ConfigError
from .models.rules import NoteburstAction, RuleSet, WebhookAction
from .retry import RetryPolicy

__all__ = ["ProcessContext", "check_rules_against_config"]


def check_rules_against_config(rules: RuleSet, config: Config) -> None:
    """Refuse to start when a rule needs something the configuration lacks."""
    problems = []
    for rule in rules.rules.values():
        for action in rule.actions:
            where = f"rule {rule.id!r} action {action.name!r}"
            if isinstance(action, NoteburstAction):
                if not config.noteburst_url:
                    problems.append(f"{where}: set CATCHER_NOTEBURST_URL for noteburst actions.")
                if config.noteburst_token is None:
                    problems.append(
                        f"{where}: set CATCHER_NOTEBURST_TOKEN or CATCHER_NOTEBURST_TOKEN_FILE."
                    )
            variable = action.url_env if isinstance(action, WebhookAction) else None
            if variable and not os.environ.get(variable):
                problems.append(f"{where}: set {variable} to the webhook URL.")
    if problems:
        raise ConfigError(
            "The rules need settings that are missing:\n  " + "\n  ".join(dict.fromkeys(problems))
        )


@dataclass(frozen=True)
class ProcessContext:
    """The shared HTTP client, the Avro codec and the executors of one process."""

    config: Config
    rules: RuleSet
    http: httpx.AsyncClient
    codec: AvroCodec
    policy: RetryPolicy

    @classmethod
    def from_config(cls, config: Config, rules: RuleSet) -> ProcessContext:
        """Build the context; nothing connects until first use."""
        policy = RetryPolicy.from_settings(config.retry)
        http = httpx.AsyncClient(
            timeout=httpx.Timeout(
                policy.attempt_timeout, connect=min(10.0, policy.attempt_timeout)
            ),
            follow_redirects=False,
            headers={"User-Agent": "catcher"},
        )
        codec = AvroCodec(config.schema_registry_url, config.topic_prefix)
        return cls(config=config, rules=rules, http=http, codec=codec, policy=policy)

    def executors(self) -> dict[str, Executor[Any]]:
        """One executor per action type."""
        return {
            NoteburstExecutor.type: NoteburstExecutor(
                self.http, self.config.noteburst_url, self.config.noteburst_token
            ),
            WebhookExecutor.type: WebhookExecutor(self.http),
        }

    async def aclose(self) -> None:
        """Close the HTTP client."""
        await self.http.aclose()
