"""The noteburst client against the fake noteburst server (real HTTP on loopback)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import httpx
import pytest
from pydantic import SecretStr

from catcher.actions.noteburst import NoteburstExecutor, inject_parameters
from catcher.broker import free_port
from catcher.exceptions import PermanentActionError, RetryableActionError
from catcher.fakes.noteburst import FakeNoteburst
from catcher.models.actions import NoteburstAction
from catcher.models.enums import ActionState, Severity, TriggerSource
from catcher.models.records import LedgerEntry, Trigger

NOTEBOOK = {
    "cells": [
        {"cell_type": "markdown", "metadata": {}, "source": ["# t"]},
        {
            "cell_type": "code",
            "metadata": {"tags": ["parameters"]},
            "source": ["x = 1"],
            "outputs": [],
            "execution_count": None,
        },
        {
            "cell_type": "code",
            "metadata": {},
            "source": ["print(x)"],
            "outputs": [],
            "execution_count": None,
        },
    ],
    "metadata": {},
    "nbformat": 4,
    "nbformat_minor": 5,
}


def test_parameters_go_after_the_parameters_cell() -> None:
    result = inject_parameters(NOTEBOOK, {"x": 2, "name": "it's", "v": None})
    assert [c["source"] for c in result["cells"]][1:3] == [
        ["x = 1"],
        ["# Parameters injected by Catcher\n", "x = 2\n", 'name = "it\'s"\n', "v = None\n"],
    ]
    assert len(NOTEBOOK["cells"]) == 3  # the original is untouched
    untagged = {"cells": [NOTEBOOK["cells"][2]]}
    assert inject_parameters(untagged, {"x": 1})["cells"][0]["metadata"]["tags"] == [
        "injected-parameters"
    ]


def make(tmp_path: Path) -> tuple[NoteburstAction, LedgerEntry]:
    path = tmp_path / "nb.ipynb"
    path.write_text(json.dumps(NOTEBOOK))
    action = NoteburstAction.model_validate(
        {
            "type": "noteburst",
            "notebook": str(path),
            "parameters": {"x": "{value}"},
            "timeout": "2m",
            "name": "nb",
        },
    )
    trigger = Trigger.create(
        "r", Severity.CRITICAL, reason="hot", source=TriggerSource.manual, value=9.5
    )
    entry = LedgerEntry(
        action_id=f"{trigger.trigger_id}.nb",
        action_name="nb",
        action_type="noteburst",
        trigger=trigger,
        partition=0,
        state=ActionState.submitting,
    )
    return action, entry


@pytest.mark.asyncio
async def test_submit_and_follow_a_job(
    noteburst: FakeNoteburst, client: httpx.AsyncClient, tmp_path: Path
) -> None:
    noteburst.queue_time, noteburst.run_time = 0.2, 0.2
    executor = NoteburstExecutor(client, noteburst.url, SecretStr(noteburst.token))
    action, entry = make(tmp_path)
    submission = await executor.submit(action, entry)
    assert not submission.done
    assert submission.link == f"{noteburst.url}/noteburst/v1/notebooks/{submission.job_id}"
    body = noteburst.requests[0].json()
    assert (body["kernel_name"], body["timeout"], body["enable_retry"]) == ("LSST", 120, True)
    assert "x = 9.5\n" in json.loads(body["ipynb"])["cells"][2]["source"]
    entry = entry.model_copy(update={"job_id": submission.job_id, "link": submission.link})
    seen = []
    while True:
        status = await executor.poll(action, entry)
        seen.append(status.message.rsplit(" ", 1)[-1])
        if status.finished:
            break
        await asyncio.sleep(0.05)
    assert status.succeeded
    assert status.message.startswith("The notebook ran (")
    assert seen[0] == "queued." and "in_progress." in seen
    assert noteburst.requests[-1].query == {"source": "false", "result": "true"}


@pytest.mark.parametrize(
    ("outcome", "message"),
    [
        ("ipynb_error", "The notebook raised ValueError: bad value in cell 3"),
        ("error", "noteburst could not run the notebook (jupyter_error): The kernel died"),
    ],
)
@pytest.mark.asyncio
async def test_failed_notebooks(
    noteburst: FakeNoteburst, client: httpx.AsyncClient, tmp_path: Path, outcome: str, message: str
) -> None:
    noteburst.queue_time = noteburst.run_time = 0.0
    noteburst.outcomes.append(outcome)  # type: ignore[arg-type]
    executor = NoteburstExecutor(client, noteburst.url, SecretStr(noteburst.token))
    action, entry = make(tmp_path)
    submission = await executor.submit(action, entry)
    entry = entry.model_copy(update={"job_id": submission.job_id, "link": submission.link})
    status = await executor.poll(action, entry)
    assert status.finished and not status.succeeded
    assert status.message.startswith(message)


@pytest.mark.asyncio
async def test_http_errors(
    noteburst: FakeNoteburst, client: httpx.AsyncClient, tmp_path: Path
) -> None:
    action, entry = make(tmp_path)
    wrong = NoteburstExecutor(client, noteburst.url, SecretStr("wrong"))
    with pytest.raises(PermanentActionError, match="noteburst answered HTTP 401"):
        await wrong.submit(action, entry)
    executor = NoteburstExecutor(client, noteburst.url, SecretStr(noteburst.token))
    noteburst.inject(status=502, body="Bad Gateway")
    with pytest.raises(RetryableActionError, match="noteburst answered HTTP 502: Bad Gateway"):
        await executor.submit(action, entry)
    noteburst.inject(delay=3.0)
    with pytest.raises(RetryableActionError, match="did not answer in time"):
        await executor.submit(action, entry)
    gone = entry.model_copy(
        update={"job_id": "nope", "link": f"{noteburst.url}/noteburst/v1/notebooks/nope"}
    )
    status = await executor.poll(action, gone)
    assert status.finished and not status.succeeded
    assert status.message == "noteburst no longer knows job nope; it may have expired."
    unconfigured = NoteburstExecutor(client, None, None)
    with pytest.raises(PermanentActionError, match="Set CATCHER_NOTEBURST_URL"):
        await unconfigured.submit(action, entry)


@pytest.mark.asyncio
async def test_connection_refused_is_retryable(client: httpx.AsyncClient, tmp_path: Path) -> None:
    action, entry = make(tmp_path)
    executor = NoteburstExecutor(client, f"http://127.0.0.1:{free_port()}", SecretStr("t"))
    with pytest.raises(RetryableActionError, match="Could not reach noteburst: ConnectError"):
        await executor.submit(action, entry)
