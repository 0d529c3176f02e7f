"""Objects built once per process from the configuration."""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from typing import Any

import httpx

from .actions import NoteburstExecutor, OcpsExecutor, TimesSquareExecutor, WebhookExecutor
from .actions.base import Executor
from .avro import AvroCodec
from .config import Config
from .exceptions import ConfigError
from .models.rules import (
    AnyAction,
    NoteburstAction,
    OcpsAction,
    RuleSet,
    TimesSquareAction,
    WebhookAction,
)
from .retry import RetryPolicy

__all__ = ["ProcessContext", "check_rules_against_config", "rule_secrets"]


def _missing_settings(action: AnyAction, config: Config) -> list[str]:
    """What the configuration lacks for one action (empty when nothing)."""
    needs: list[tuple[bool, str]] = []
    if isinstance(action, NoteburstAction):
        needs = [
            (bool(config.noteburst_url), "set CATCHER_NOTEBURST_URL for noteburst actions."),
            (
                config.noteburst_token is not None,
                "set CATCHER_NOTEBURST_TOKEN or CATCHER_NOTEBURST_TOKEN_FILE.",
            ),
        ]
    elif isinstance(action, OcpsAction):
        needs = [(bool(config.ocps_url), "set CATCHER_OCPS_URL for ocps actions.")]
    elif isinstance(action, TimesSquareAction):
        needs = [
            (
                bool(config.times_square_url),
                "set CATCHER_TIMES_SQUARE_URL for times_square actions.",
            ),
            (
                config.times_square_token is not None,
                "set CATCHER_TIMES_SQUARE_TOKEN or CATCHER_TIMES_SQUARE_TOKEN_FILE.",
            ),
        ]
    else:
        if action.url_env:
            needs.append(
                (bool(os.environ.get(action.url_env)), f"set {action.url_env} to the webhook URL.")
            )
        if action.token_env:
            needs.append(
                (
                    bool(os.environ.get(action.token_env)),
                    f"set {action.token_env} to the webhook's token.",
                )
            )
    return [message for present, message in needs if not present]


def check_rules_against_config(rules: RuleSet, config: Config) -> None:
    """Refuse to start when a rule needs something the configuration lacks."""
    problems = [
        f"rule {rule.id!r} action {action.name!r}: {message}"
        for rule in rules.rules.values()
        for action in rule.actions
        for message in _missing_settings(action, config)
    ]
    if problems:
        raise ConfigError(
            "The rules need settings that are missing:\n  " + "\n  ".join(dict.fromkeys(problems))
        )


def rule_secrets(rules: RuleSet) -> list[str]:
    """The secret values the rules point at: webhook URLs and tokens.

    They come from the environment or mounted files; the worker registers them with
    :mod:`catcher.redact` so that they are never logged.
    """
    found: list[str] = []
    for rule in rules.rules.values():
        for action in rule.actions:
            if isinstance(action, WebhookAction):
                found += [os.environ.get(n or "", "") for n in (action.url_env, action.token_env)]
                if action.url_file is not None:
                    with contextlib.suppress(OSError):
                        found.append(action.url_file.read_text().strip())
    return [value for value in found if value]


@dataclass(frozen=True)
class ProcessContext:
    """The shared HTTP client, the Avro codec and the executors of one process."""

    config: Config
    http: httpx.AsyncClient
    codec: AvroCodec
    policy: RetryPolicy

    @classmethod
    def from_config(cls, config: Config) -> ProcessContext:
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
        return cls(config=config, http=http, codec=codec, policy=policy)

    def executors(self) -> dict[str, Executor[Any]]:
        """One executor per action type."""
        return {
            NoteburstExecutor.type: NoteburstExecutor(
                self.http, self.config.noteburst_url, self.config.noteburst_token
            ),
            WebhookExecutor.type: WebhookExecutor(self.http),
            OcpsExecutor.type: OcpsExecutor(
                self.http,
                self.config.ocps_url,
                self.config.ocps_username,
                self.config.ocps_password,
            ),
            TimesSquareExecutor.type: TimesSquareExecutor(
                self.http, self.config.times_square_url, self.config.times_square_token
            ),
        }

    async def aclose(self) -> None:
        """Close the HTTP client."""
        await self.http.aclose()
