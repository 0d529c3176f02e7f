"""Webhooks: POST a templated JSON body, with ``Idempotency-Key: <action_id>``."""

from __future__ import annotations

import os

import httpx

from ..exceptions import ActionError, PermanentActionError, http_status_error
from ..models.records import LedgerEntry
from ..models.rules import WebhookAction
from .base import Executor, Submission, render_params

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


class WebhookExecutor(Executor[WebhookAction]):
    """Posts JSON to webhooks; a 2xx answer is success."""

    type = "webhook"
    resubmit_message = "resubmitted after uncertain outcome, with the same Idempotency-Key"

    def __init__(self, client: httpx.AsyncClient) -> None:
        self._client = client

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
        try:
            response = await self._client.post(url, json=body, headers=headers, timeout=timeout)
        except httpx.HTTPError as exc:
            raise ActionError.from_exception(f"webhook {action.name!r}", exc) from exc
        if not response.is_success:
            raise http_status_error(f"webhook {action.name!r}", response)
        return Submission(done=True, message=f"Webhook answered HTTP {response.status_code}.")
