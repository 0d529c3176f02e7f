"""What every executor offers the action runner."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any, ClassVar, Generic, TypeVar

import httpx
from pydantic import SecretStr

from ..exceptions import PermanentActionError
from ..models.records import LedgerEntry
from ..models.rules import NoteburstAction, OcpsAction, TimesSquareAction, WebhookAction
from ..models.templates import render

__all__ = ["Executor", "JobStatus", "SciencePlatformExecutor", "Submission", "render_params"]

A = TypeVar("A", NoteburstAction, WebhookAction, OcpsAction, TimesSquareAction)


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


class Executor(Generic[A]):
    """Base of the executors; ``submit`` is required, ``poll`` for job-based services."""

    type: ClassVar[str]
    resubmit_message: ClassVar[str] = "resubmitted after uncertain outcome"
    """History message when a submission's outcome is unknown after a restart."""

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


class SciencePlatformExecutor(Executor[A]):
    """Base of executors for Science Platform services that take a Gafaelfawr token."""

    setting: ClassVar[str]
    """Settings name of the service: CATCHER_<setting>_URL and CATCHER_<setting>_TOKEN."""

    def __init__(
        self, client: httpx.AsyncClient, base_url: str | None, token: SecretStr | None
    ) -> None:
        self._client = client
        self._base_url = base_url.rstrip("/") if base_url else None
        self._token = token

    def _headers(self) -> dict[str, str]:
        """The bearer token header; a missing URL or token is a permanent error."""
        name = f"CATCHER_{self.setting}"
        if self._base_url is None:
            raise PermanentActionError(f"Set {name}_URL to run {self.type} actions.")
        if self._token is None:
            raise PermanentActionError(
                f"Set {name}_TOKEN or {name}_TOKEN_FILE to a token with the exec:notebook scope."
            )
        return {"Authorization": f"Bearer {self._token.get_secret_value()}"}
