from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from catcher.actions.webhook import WebhookExecutor, resolve_url
from catcher.exceptions import PermanentActionError
from catcher.fakes.webhook import FakeWebhook
from catcher.models.actions import WebhookAction
from catcher.models.enums import ActionState, Severity, TriggerSource
from catcher.models.records import LedgerEntry, Trigger


def action(**fields: object) -> WebhookAction:
    return WebhookAction.model_validate({"type": "webhook", "name": "hook", **fields})


def entry() -> LedgerEntry:
    trigger = Trigger.create(
        "r", Severity.WARNING, reason="why", source=TriggerSource.manual, tags={"salIndex": "2"}
    )
    return LedgerEntry(
        action_id="abc.hook",
        action_name="hook",
        action_type="webhook",
        trigger=trigger,
        partition=0,
        state=ActionState.submitting,
    )


def test_url_from_rule_environment_or_file(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    assert resolve_url(action(url="https://x/y")) == "https://x/y"
    monkeypatch.setenv("HOOK_URL", "https://hooks/from-env")
    assert resolve_url(action(url_env="HOOK_URL")) == "https://hooks/from-env"
    (tmp_path / "url").write_text("https://hooks/from-file\n")
    assert resolve_url(action(url_file=str(tmp_path / "url"))) == "https://hooks/from-file"
    with pytest.raises(PermanentActionError, match="Set the environment variable NOPE"):
        resolve_url(action(url_env="NOPE"))
    with pytest.raises(PermanentActionError, match="Cannot read the webhook URL file"):
        resolve_url(action(url_file=str(tmp_path / "missing")))


@pytest.mark.asyncio
async def test_post_with_idempotency_key_and_token(
    webhook: FakeWebhook, client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOOK_TOKEN", "tok")
    hook = action(
        url=f"{webhook.url}/in",
        token_env="HOOK_TOKEN",
        body={"text": "{rule_id} {severity} {tags.salIndex}", "n": ["{generation}"]},
    )
    submission = await WebhookExecutor(client).submit(hook, entry())
    assert submission.done
    request = webhook.requests[0]
    assert request.headers["Idempotency-Key"] == "abc.hook"
    assert request.headers["Authorization"] == "Bearer tok"
    assert request.json() == {"text": "r WARNING 2", "n": [0]}


@pytest.mark.asyncio
async def test_missing_tag_is_permanent(webhook: FakeWebhook, client: httpx.AsyncClient) -> None:
    hook = action(url=webhook.url, body={"text": "{tags.nope}"})
    with pytest.raises(PermanentActionError, match="the trigger has no tag 'nope'"):
        await WebhookExecutor(client).submit(hook, entry())
    assert webhook.requests == []
