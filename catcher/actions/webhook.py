"""Webhooks: POST a templated JSON body, with ``Idempotency-Key: <action_id>``."""

from __future__ import annotations

import os
from typing import Self

import httpx

from ..exceptions import PermanentActionError, http_status_error
from ..models.actions import WebhookAction
from ..models.records import LedgerEntry
from .base import Executor, Submission, render_params, request

__all__ = ["WebhookExecutor", "resolve_url"]


def resolve_url(action: WebhookAction) -> str:
    """The action's URL, from the rule, the environment or a mounted file."""
    if action.url is not None:
        return action.url
    if action.url_env is not None:
        url = os.environ.get(action.url_env, "").strip()
        if not url:
            raise PermanentActionError(
                f"Set the environment variable {action.url_env} to the webhook URL of action"
                f" {action.name!r}."
            )
        return url
    assert action.url_file is not None  # the rule model requires one of the three
    try:
        url = action.url_file.read_text().strip()
    except OSError as exc:
        raise PermanentActionError(
            f"Cannot read the webhook URL file {action.url_file} of action {action.name!r}:"
            f" {exc.strerror}."
        ) from None
    if not url:
        raise PermanentActionError(f"The webhook URL file {action.url_file} is empty.")
    return url


class WebhookExecutor(Executor[WebhookAction, None]):
    """Posts JSON to webhooks; a 2xx answer is success.

    A webhook's URL and token are the rule's (inline, or named environment variables or
    files), so the type has no service settings of its own.
    """

    type = "webhook"
    default_concurrency = 32
    resubmit_message = "resubmitted after uncertain outcome, with the same Idempotency-Key"

    def __init__(self, client: httpx.AsyncClient) -> None:
        self._client = client

    @classmethod
    def create(cls, client: httpx.AsyncClient, settings: None) -> Self:
        """The executor (webhooks need no settings)."""
        del settings
        return cls(client)

    @classmethod
    def missing_settings(cls, action: WebhookAction, settings: None) -> list[str]:
        """The environment variables the action names for its URL and token."""
        del settings
        needs = [
            (action.url_env, "to the webhook URL"),
            (action.token_env, "to the webhook's token"),
        ]
        return [f"set {name} {what}." for name, what in needs if name and not os.environ.get(name)]

    async def submit(self, action: WebhookAction, entry: LedgerEntry) -> Submission:
        """POST the body once."""
        url = resolve_url(action)
        headers = {"Idempotency-Key": entry.action_id}
        if action.token_env:
            token = os.environ.get(action.token_env)
            if not token:
                raise PermanentActionError(
                    f"Set the environment variable {action.token_env} to the webhook token of"
                    f" action {action.name!r}."
                )
            headers["Authorization"] = f"Bearer {token}"
        body = render_params(action.body, entry)
        timeout = action.timeout.total_seconds() if action.timeout else httpx.USE_CLIENT_DEFAULT
        service = f"webhook {action.name!r}"
        response = await request(
            self._client, service, "POST", url, json=body, headers=headers, timeout=timeout
        )
        if not response.is_success:
            raise http_status_error(service, response)
        return Submission(done=True, message=f"Webhook answered HTTP {response.status_code}.")
