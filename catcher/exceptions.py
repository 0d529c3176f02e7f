"""Errors raised by Catcher.

The tree::

    CatcherError
    ├── ConfigError            invalid settings (environment, mounted files)
    ├── RuleError              invalid rules (names the file, the rule and the field)
    ├── ResourceError          a file the installation must carry is missing
    ├── RecordError            a record that cannot be encoded or decoded
    │   └── SchemaRegistryError  the Schema Registry refused a call (permanent: 4xx)
    │       └── SchemaRegistryUnavailableError  it could not be reached or failed (retried)
    ├── BrokerError            the embedded broker could not be started
    ├── DeployError            a task could not be created, updated or deleted
    ├── MirrorError            the trigger bucket could not be read
    ├── BacktestError          the EFD could not be read, or the rule cannot be backtested
    ├── AlarmCommandError      an operator command cannot apply to an alarm (nothing changed)
    ├── Unprocessable          a handler rejects its record: it is dead-lettered with the reason
    └── ActionError            a call to a service (an action's, or a page) failed
        ├── RetryableActionError   worth another attempt (5xx, 429, connection, timeout)
        └── PermanentActionError   not worth another attempt (other 4xx, bad answer)

Whether an HTTP answer is worth another attempt is decided once, by ``is_retryable_status``,
for actions and pages alike: both call their services through ``catcher.actions.base.request``.

``RuleError`` is also a ``ValueError``, so that pydantic validators may raise it.
"""

from __future__ import annotations

import contextlib
from enum import StrEnum

import httpx

from .redact import brief

__all__ = [
    "ActionError",
    "AlarmCommandError",
    "BacktestError",
    "BrokerError",
    "CatcherError",
    "ConfigError",
    "DeployError",
    "MirrorError",
    "PermanentActionError",
    "RecordError",
    "ResourceError",
    "RetryableActionError",
    "RuleError",
    "SchemaRegistryError",
    "SchemaRegistryUnavailableError",
    "Unprocessable",
    "is_retryable_status",
]

RETRYABLE_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})
"""HTTP status codes that are worth another attempt; every other 4xx is final."""


def is_retryable_status(status: int) -> bool:
    """Whether an HTTP answer with this status is worth another attempt."""
    return status in RETRYABLE_STATUS


class CatcherError(Exception):
    """Root of Catcher's errors."""


class ConfigError(CatcherError):
    """The configuration is invalid."""


class RuleError(CatcherError, ValueError):
    """A rules file could not be loaded; the message names the file, the rule and the field."""


class ResourceError(CatcherError):
    """A file the installed package must carry (Flux template, Avro schema) is missing."""


class RecordError(CatcherError):
    """A record cannot be encoded or decoded."""


class SchemaRegistryError(RecordError):
    """The Schema Registry refused a call; asking again will not help."""


class SchemaRegistryUnavailableError(SchemaRegistryError):
    """The Schema Registry could not be reached, or failed; worth asking again."""


class BrokerError(CatcherError):
    """The embedded broker could not be started."""


class BacktestError(CatcherError):
    """The EFD could not be read, or the rule cannot be backtested."""


class AlarmCommandError(CatcherError):
    """An operator command that cannot apply to this alarm (nothing was changed)."""


class Unprocessable(CatcherError):  # noqa: N818 - it names the record, not a failure of Catcher
    """A handler rejects its record: it goes to the dead letter topic with this reason.

    ``stage`` is the ``DeadLetterStage`` the record was rejected at.
    """

    def __init__(
        self,
        stage: StrEnum,
        reason: str,
        error_type: str,
        *,
        rule_id: str | None = None,
        trigger_id: str | None = None,
    ) -> None:
        super().__init__(reason)
        self.stage = stage
        self.reason = reason
        self.error_type = error_type
        self.rule_id = rule_id
        self.trigger_id = trigger_id


class DeployError(CatcherError):
    """Tasks could not be deployed."""


class MirrorError(CatcherError):
    """The trigger bucket could not be read."""


class ActionError(CatcherError):
    """An action could not be carried out."""

    retryable: bool = False

    @classmethod
    def from_exception(cls, service: str, exc: httpx.HTTPError) -> ActionError:
        """Turn an httpx error at the edge of a service into Catcher's error.

        Connection failures and timeouts are retryable; an HTTP status error is
        retryable only for the codes in ``RETRYABLE_STATUS``.
        """
        if isinstance(exc, httpx.HTTPStatusError):
            return http_status_error(service, exc.response)
        if isinstance(exc, httpx.TimeoutException):
            return RetryableActionError(
                f"{service} did not answer in time ({type(exc).__name__})."
            )
        detail = str(exc)
        with contextlib.suppress(RuntimeError):  # RuntimeError: no request attached
            detail = detail.replace(str(exc.request.url), "<url>")  # URLs may hold secrets
        return RetryableActionError(
            f"Could not reach {service}: {type(exc).__name__}: {brief(detail)}"
        )


class RetryableActionError(ActionError):
    """The attempt failed in a way that another attempt may fix."""

    retryable = True


class PermanentActionError(ActionError):
    """The attempt failed in a way that another attempt will not fix."""


def http_status_error(service: str, response: httpx.Response) -> ActionError:
    """Describe an unsuccessful HTTP answer, retryable or not by its status.

    The body is quoted briefly, with URLs cut to their host and token-like words masked.
    """
    body = brief(response.text)
    message = f"{service} answered HTTP {response.status_code}"
    message += f": {body}" if body else "."
    if is_retryable_status(response.status_code):
        return RetryableActionError(message)
    return PermanentActionError(message)
