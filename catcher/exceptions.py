"""Errors raised by Catcher.

The tree::

    CatcherError
    ├── ConfigError            invalid settings (environment, mounted files)
    ├── RuleError              invalid rules file (names the file, the rule and the field)
    ├── TemplateError          a placeholder that cannot be filled from a trigger
    ├── RecordError            a record that cannot be encoded or decoded
    │   └── SchemaRegistryError  the Schema Registry refused or failed a call
    ├── BrokerError            the embedded broker could not be started
    ├── DeployError            a task could not be created, updated or deleted
    └── ActionError            an action could not be carried out
        ├── RetryableActionError   worth another attempt (5xx, 429, connection, timeout)
        └── PermanentActionError   not worth another attempt (other 4xx, bad answer)
"""

from __future__ import annotations

import contextlib

import httpx

__all__ = [
    "ActionError",
    "BrokerError",
    "CatcherError",
    "ConfigError",
    "DeployError",
    "PermanentActionError",
    "RecordError",
    "RetryableActionError",
    "RuleError",
    "SchemaRegistryError",
    "TemplateError",
]

_MAX_BODY = 300
"""Longest part of an error answer's body quoted in a message."""

RETRYABLE_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})
"""HTTP status codes that are worth another attempt; every other 4xx is final."""


class CatcherError(Exception):
    """Root of Catcher's errors."""


class ConfigError(CatcherError):
    """The configuration is invalid."""


class RuleError(CatcherError):
    """A rules file is invalid."""


class TemplateError(CatcherError):
    """A placeholder cannot be filled from the trigger."""


class RecordError(CatcherError):
    """A record cannot be encoded or decoded."""


class SchemaRegistryError(RecordError):
    """The Schema Registry refused or failed a call."""


class BrokerError(CatcherError):
    """The embedded broker could not be started."""


class DeployError(CatcherError):
    """Tasks could not be deployed."""


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
        return RetryableActionError(f"Could not reach {service}: {type(exc).__name__}: {detail}")


class RetryableActionError(ActionError):
    """The attempt failed in a way that another attempt may fix."""

    retryable = True


class PermanentActionError(ActionError):
    """The attempt failed in a way that another attempt will not fix."""


def http_status_error(service: str, response: httpx.Response) -> ActionError:
    """Describe an unsuccessful HTTP answer, retryable or not by its status."""
    body = response.text.strip().replace("\n", " ")
    if len(body) > _MAX_BODY:
        body = body[:_MAX_BODY] + "..."
    message = f"{service} answered HTTP {response.status_code}"
    message += f": {body}" if body else "."
    if response.status_code in RETRYABLE_STATUS:
        return RetryableActionError(message)
    return PermanentActionError(message)
