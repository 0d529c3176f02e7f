"""The OCPS client against the fake uws-api-server (real HTTP on loopback)."""

from __future__ import annotations

import re

import httpx
import pytest
from pydantic import SecretStr

from catcher.actions.ocps import OcpsExecutor, run_id_for
from catcher.exceptions import PermanentActionError, RetryableActionError
from catcher.fakes.uws import FakeUws
from catcher.models.actions import OcpsAction
from catcher.models.enums import ActionState, Severity, TriggerSource
from catcher.models.records import LedgerEntry, Trigger

ACTION = OcpsAction.model_validate(
    {
        "type": "ocps",
        "name": "pipe",
        "pipeline_url": "p.yaml",
        "butler_repo": "/repo",
        "data_query": "exposure={tags.exp}",
        "environment": {"EXTRA": "{severity}"},
    }
)


def entry(attempt: int = 1, **update: object) -> LedgerEntry:
    trigger = Trigger.create(
        "r", Severity.SERIOUS, reason="x", source=TriggerSource.manual, tags={"exp": "7"}
    )
    base = LedgerEntry(
        action_id=f"{trigger.trigger_id}.pipe",
        action_name="pipe",
        action_type="ocps",
        trigger=trigger,
        partition=0,
        state=ActionState.submitting,
        attempt=attempt,
    )
    return base.model_copy(update=update)


def executor(client: httpx.AsyncClient, uws: FakeUws, password: str | None = None) -> OcpsExecutor:
    return OcpsExecutor(client, uws.url, uws.username, SecretStr(password or uws.password))


def test_run_id_is_a_valid_label_value() -> None:
    run_id = run_id_for("0123456789abcdef0123456789abcdef.a-very-long-action-name.g12")
    assert len(run_id) <= 63
    assert re.match(r"^[a-zA-Z0-9]([-._a-zA-Z0-9]*[a-zA-Z0-9])?$", run_id)
    assert run_id == run_id_for("0123456789abcdef0123456789abcdef.a-very-long-action-name.g12")
    assert run_id != run_id_for("0123456789abcdef0123456789abcdef.a-very-long-action-name.g13")


@pytest.mark.asyncio
async def test_submit_poll_and_environment(uws: FakeUws, client: httpx.AsyncClient) -> None:
    ocps = executor(client, uws)
    item = entry()
    submission = await ocps.submit(ACTION, item)
    (job,) = uws.jobs.values()
    assert job.run_id == run_id_for(item.action_id)
    assert {e["name"]: e["value"] for e in job.environment}["DATA_QUERY"] == "exposure=7"
    assert {e["name"]: e["value"] for e in job.environment}["EXTRA"] == "SERIOUS"
    assert submission.job_id == job.job_id
    status = await ocps.poll(ACTION, item.model_copy(update={"job_id": job.job_id}))
    assert status.message == f"OCPS job {job.job_id} is pending."
    assert not status.finished


@pytest.mark.asyncio
async def test_retry_after_a_timed_out_put_finds_the_job(
    uws: FakeUws, client: httpx.AsyncClient
) -> None:
    ocps = executor(client, uws)
    item = entry(attempt=1)
    await ocps.submit(ACTION, item)  # created; pretend the answer was lost
    again = await ocps.submit(ACTION, item.model_copy(update={"attempt": 2}))
    assert uws.count("PUT") == 1
    assert again.message.startswith(f"Found OCPS job {again.job_id}")


@pytest.mark.asyncio
async def test_errors(uws: FakeUws, client: httpx.AsyncClient) -> None:
    with pytest.raises(PermanentActionError, match="OCPS answered HTTP 401"):
        await executor(client, uws, password="wrong").submit(ACTION, entry())
    uws.inject(status=500, body="Job creation timed out.", method="PUT")
    with pytest.raises(
        RetryableActionError, match=r"OCPS answered HTTP 500: Job creation timed out\."
    ):
        await executor(client, uws).submit(ACTION, entry())
    gone = await executor(client, uws).poll(ACTION, entry(job_id="nope"))
    assert gone.finished and not gone.succeeded
    assert gone.message == "OCPS no longer knows job nope: it was aborted or deleted."
    assert await executor(client, uws).abort(ACTION, entry(job_id="nope")) == (
        "OCPS job nope was already gone."
    )
    with pytest.raises(PermanentActionError, match="Set CATCHER_OCPS_URL"):
        await OcpsExecutor(client, None, None, None).submit(ACTION, entry())


@pytest.mark.asyncio
async def test_malformed_job_answers_are_permanent_errors(
    uws: FakeUws, client: httpx.AsyncClient
) -> None:
    ocps = executor(client, uws)
    uws.inject(status=200, body='"a string, not a job"', method="GET")
    with pytest.raises(PermanentActionError, match="OCPS's job answer has no phase"):
        await ocps.poll(ACTION, entry(job_id="j"))
    uws.inject(
        status=200,
        body='{"phase": "error", "errorSummary": "out of memory", "results": "none"}',
        method="GET",
    )
    status = await ocps.poll(ACTION, entry(job_id="j"))
    assert status.finished and not status.succeeded
    assert status.message == "OCPS job j ended in phase error: out of memory"
