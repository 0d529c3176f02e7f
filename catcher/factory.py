"""Objects built once per process from the configuration."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import httpx

from .actions import EXECUTORS, Executor, executor_class
from .avro import AvroCodec
from .config import Config
from .exceptions import ConfigError
from .models.actions import WebhookAction
from .models.alarms import Alarm
from .models.rules import RuleSet
from .retry import RetryPolicy
from .services.alarms.escalation import Escalator
from .services.alarms.love import LoveProducer

if TYPE_CHECKING:
    import faust

__all__ = ["ProcessContext", "check_rules_against_config", "create_faust_app", "rule_secrets"]


def check_rules_against_config(rules: RuleSet, config: Config) -> None:
    """Refuse to start when a rule needs something the configuration lacks."""
    problems = [
        f"rule {rule.id!r} action {action.name!r}: {message}"
        for rule in rules.rules.values()
        for action in rule.actions
        for message in executor_class(action.type).missing_settings(
            action, config.service(action.type)
        )
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

    def executors(self) -> dict[str, Executor[Any, Any]]:
        """One executor per action type."""
        return {
            executor.type: executor.create(self.http, self.config.service(executor.type))
            for executor in EXECUTORS
        }

    def escalator(self) -> Escalator | None:
        """The pager of unacknowledged CRITICAL alarms, when one is configured."""
        if not self.config.escalation_url:
            return None
        key = self.config.escalation_key
        return Escalator(
            self.config.escalation_url, key.get_secret_value() if key else "", self.http
        )

    def love_producer(self, alarms: Callable[[], dict[str, Alarm]]) -> LoveProducer | None:
        """The producer that shows ``alarms()`` in LOVE, when LOVE is configured."""
        if not self.config.love_url:
            return None
        password = self.config.love_password
        return LoveProducer(
            self.config.love_url, password.get_secret_value() if password else "", alarms
        )

    async def aclose(self) -> None:
        """Close the HTTP client."""
        await self.http.aclose()


def create_faust_app(config: Config) -> faust.App:
    """The worker's Faust application: Catcher's settings, idempotent producers."""
    import faust  # noqa: PLC0415 - heavy; only the worker needs it, not the command line

    from .faust_transport import IdempotentTransport  # noqa: PLC0415 - imports Faust

    app = faust.App(
        config.app_id,
        broker=config.kafka.faust_broker_url(),
        broker_credentials=config.kafka.faust_credentials(),
        store="memory://",
        processing_guarantee="at_least_once",
        autodiscover=False,
        producer_max_batch_size=config.producer_max_batch_size,
        producer_max_request_size=config.producer_max_request_size,
        broker_session_timeout=config.broker_session_timeout,
        broker_heartbeat_interval=config.broker_heartbeat_interval,
        topic_partitions=config.topic_partitions,
        topic_replication_factor=config.topic_replication_factor,
        topic_allow_declare=config.create_topics,
        consumer_auto_offset_reset="earliest",
        web_enabled=False,
        datadir=str(config.data_dir / config.app_id),
    )
    if config.producer_idempotence:
        app.transport = IdempotentTransport(app.conf.broker_consumer, app)
    return app
