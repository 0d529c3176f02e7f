"""What every executor offers the action runner."""

from __future__ import annotations

import builtins
from collections.abc import Collection
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, ClassVar, Generic, Self, TypeVar

import httpx
from pydantic import Field, SecretStr

from ..exceptions import ActionError, PermanentActionError, http_status_error
from ..models.actions import ActionBase
from ..models.records import LedgerEntry
from ..models.templates import render
from ..settings import ServiceSettings

__all__ = [
    "Executor",
    "JobStatus",
    "SciencePlatformExecutor",
    "SciencePlatformSettings",
    "Submission",
    "json_answer",
    "render_params",
    "request",
]

A = TypeVar("A", bound=ActionBase)
S = TypeVar("S", bound=ServiceSettings | None)


@dataclass(frozen=True)
class Submission:
    """What one successful submission returned.

    ``done`` is true when the side effect is complete (a webhook); otherwise the job is
    followed by polling ``job_id`` / ``link``.
    """

    done: bool
    message: str
    job_id: str | None = None
    link: str | None = None


@dataclass(frozen=True)
class JobStatus:
    """What one poll of a job found."""

    finished: bool
    succeeded: bool = False
    message: str = ""
    link: str | None = None


def render_params(value: Any, entry: LedgerEntry) -> Any:
    """Fill an action's placeholders from the entry's trigger; a missing tag is permanent."""
    context = entry.trigger.template_context()
    context.update(action_id=entry.action_id, action_name=entry.action_name)
    try:
        return render(value, context)
    except KeyError as exc:
        raise PermanentActionError(
            f"Cannot fill the action's parameters: {exc.args[0]}. Fix the rule's placeholders."
        ) from None


async def request(
    client: httpx.AsyncClient,
    service: str,
    method: str,
    url: str,
    *,
    expect: Collection[int] | None = None,
    **kwargs: Any,
) -> httpx.Response:
    """One HTTP call to a service, its failures in Catcher's terms.

    A transport failure or timeout is a :class:`RetryableActionError`; an answer whose
    status is not in ``expect`` (when given) is retryable or permanent by its status
    (:func:`catcher.exceptions.is_retryable_status`). Every executor, and the escalation
    client, calls services through here.
    """
    try:
        response = await client.request(method, url, **kwargs)
    except httpx.HTTPError as exc:
        raise ActionError.from_exception(service, exc) from exc
    if expect is not None and response.status_code not in expect:
        raise http_status_error(service, response)
    return response


def json_answer(service: str, response: httpx.Response, what: str) -> Any:
    """The JSON body of an answer; a body that is not JSON is a permanent error."""
    try:
        return response.json()
    except ValueError as exc:
        raise PermanentActionError(f"{service}'s {what} is not JSON: {exc}") from exc


class Executor(Generic[A, S]):
    """Base of the executors; ``submit`` is required, ``poll`` for job-based services.

    An action type is declared here once: its ``type`` (the rules' ``type:``), the settings
    of its service (``settings_class``, ``None`` when it has none), how many calls may be in
    flight by default, and what a rule's action needs from those settings.
    """

    type: ClassVar[str]
    settings_class: ClassVar[builtins.type[ServiceSettings] | None] = None
    default_concurrency: ClassVar[int] = 8
    """Most calls in flight to the service at once (``CATCHER_CONCURRENCY`` overrides)."""
    resubmit_message: ClassVar[str] = "resubmitted after uncertain outcome"
    """History message when a submission's outcome is unknown after a restart."""

    @classmethod
    def create(cls, client: httpx.AsyncClient, settings: S) -> Self:
        """The executor of one process, with its service's settings."""
        raise NotImplementedError

    @classmethod
    def missing_settings(cls, action: A, settings: S) -> list[str]:
        """What an action needs that the settings lack (empty when nothing)."""
        del action, settings
        return []

    async def submit(self, action: A, entry: LedgerEntry) -> Submission:
        """Start the action's side effect (one attempt)."""
        raise NotImplementedError

    async def poll(self, action: A, entry: LedgerEntry) -> JobStatus:
        """Look at the job started by ``submit`` (one attempt)."""
        raise NotImplementedError(f"{self.type} actions have no job to poll.")

    async def reconcile(self, action: A, entry: LedgerEntry) -> Submission | None:
        """Find what an interrupted submission did, or None when the service cannot tell."""
        del action, entry
        return None

    def max_runtime(self, action: A) -> timedelta | None:
        """Longest a job of this action may run before it is aborted (None: no limit)."""
        del action
        return None

    async def abort(self, action: A, entry: LedgerEntry) -> str | None:
        """Stop the action's job at the service; returns what was done, None if it cannot."""
        del action, entry
        return None


class SciencePlatformSettings(ServiceSettings):
    """A Science Platform service: the environment's base URL and a Gafaelfawr token."""

    secret_fields = ("token",)

    url: str | None = Field(None, description="Base URL of the Science Platform environment.")
    token: SecretStr | None = Field(None, description="Gafaelfawr token (exec:notebook scope).")
    token_file: Path | None = Field(None, description="File holding the token.")


class SciencePlatformExecutor(Executor[A, SciencePlatformSettings]):
    """Base of executors for Science Platform services that take a Gafaelfawr token."""

    settings_class: ClassVar[builtins.type[SciencePlatformSettings]]

    def __init__(
        self, client: httpx.AsyncClient, base_url: str | None, token: SecretStr | None
    ) -> None:
        self._client = client
        self._base_url = base_url.rstrip("/") if base_url else None
        self._token = token

    @classmethod
    def create(cls, client: httpx.AsyncClient, settings: SciencePlatformSettings) -> Self:
        """The executor with the service's URL and token."""
        return cls(client, settings.url, settings.token)

    @classmethod
    def _needs(cls, url: str | None, token: SecretStr | None) -> list[str]:
        name = cls.settings_class.prefix()
        needs = [] if url else [f"set {name}URL for {cls.type} actions."]
        if token is None:
            needs.append(f"set {name}TOKEN or {name}TOKEN_FILE (a token with exec:notebook).")
        return needs

    @classmethod
    def missing_settings(cls, action: A, settings: SciencePlatformSettings) -> list[str]:
        """The URL and the token."""
        del action
        return cls._needs(settings.url, settings.token)

    def _headers(self) -> dict[str, str]:
        """The bearer token header; a missing URL or token is a permanent error."""
        needs = self._needs(self._base_url, self._token)
        if needs:
            message = " ".join(needs)
            raise PermanentActionError(message[:1].upper() + message[1:])
        assert self._token is not None
        return {"Authorization": f"Bearer {self._token.get_secret_value()}"}
