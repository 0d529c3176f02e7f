"""What the command groups share: settings, rules, running a coroutine, options."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click
from aiokafka.errors import KafkaError

from ..config import Config, load_config
from ..exceptions import CatcherError, RuleError
from ..models.durations import parse_duration
from ..models.records import utcnow
from ..models.rules import RuleSet
from ..redact import brief

if TYPE_CHECKING:
    from ..services.execution.history import OperatorTopics

T = TypeVar("T")

__all__ = [
    "CONTEXT_SETTINGS",
    "load_rules",
    "parse_since",
    "parse_tags",
    "rules_option",
    "run",
    "settings",
    "since_option",
]


CONTEXT_SETTINGS = {"help_option_names": ["-h", "--help"]}


def settings(**overrides: Any) -> Config:
    try:
        return load_config(**overrides)
    except CatcherError as exc:
        raise click.ClickException(str(exc)) from None


def load_rules(*paths: Path) -> RuleSet:
    """The rules of files and directories, or a click error listing every problem."""
    try:
        return RuleSet.from_paths(paths)
    except RuleError as exc:
        raise click.ClickException(f"Invalid rules:\n{exc}") from None


def run(coro: Any) -> Any:
    try:
        return asyncio.run(coro)
    except CatcherError as exc:
        raise click.ClickException(str(exc)) from None
    except (KafkaError, ConnectionError) as exc:
        raise click.ClickException(
            "Could not talk to Kafka at the configured KAFKA_BOOTSTRAP_SERVERS:"
            f" {brief(str(exc)) or type(exc).__name__}"
        ) from None
    except TimeoutError as exc:
        raise click.ClickException(
            f"Timed out waiting for Kafka or a service: {brief(str(exc)) or 'no answer'}"
        ) from None
    except OSError as exc:
        raise click.ClickException(f"{type(exc).__name__}: {brief(str(exc))}") from None


def with_topics(config: Config, work: Callable[[OperatorTopics], Awaitable[T]]) -> T:
    """Run ``work`` with Catcher's topics, from a standalone factory (closed after)."""
    from ..factory import Factory  # noqa: PLC0415 - builds the services: only when needed

    async def go() -> T:
        async with Factory.standalone(config) as factory:
            return await work(factory.operator_topics())

    result: T = run(go())
    return result


def parse_tags(values: Sequence[str], form: str = "KEY=VALUE") -> dict[str, str]:
    """``--tag K=V`` options as a dict; a malformed one is a usage error naming ``form``."""
    tags = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{item!r} is not {form}.", param_hint="--tag")
        tags[key] = value
    return tags


def parse_since(text: str, hint: str = "--since") -> datetime:
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        try:
            return utcnow() - parse_duration(text)
        except ValueError:
            raise click.BadParameter(
                f"{text!r} is neither an ISO time nor a duration such as 1h.", param_hint=hint
            ) from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=utcnow().tzinfo)


def since_option(default: str) -> Any:
    return click.option(
        "--since",
        default=default,
        show_default=True,
        help="Read events written at or after this ISO time, or this long ago (e.g. 1h, 7d).",
    )


def rules_option(help_text: str = "Rules file or directory (default: CATCHER_RULES_PATH).") -> Any:
    """The one ``--rules`` option (default: CATCHER_RULES_PATH)."""
    return click.option(
        "--rules",
        "rules_path",
        type=click.Path(path_type=Path),
        envvar="CATCHER_RULES_PATH",
        help=help_text,
    )
