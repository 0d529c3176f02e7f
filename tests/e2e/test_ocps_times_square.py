"""OCPS pipeline jobs and Times Square reports through the worker, against faithful fakes."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from catcher.actions.ocps import run_id_for
from catcher.fakes.times_square import API, FakePage
from catcher.models.enums import ActionState, DeadLetterStage, Severity
from catcher.models.records import make_action_id
from tests.support.stack import Stack, finished, states

pytestmark = pytest.mark.e2e

RULES = """
rules:
  - id: latiss-focus
    description: LATISS focus drifted; reprocess and report.
    actions:
      - name: pipeline
        type: ocps
        pipeline_url: $DRP_PIPE_DIR/pipelines/LATISS/DRP.yaml#isr
        butler_repo: /repo/embargo
        run_options: -i LATISS/raw/all
        data_query: "instrument='LATISS' AND day_obs={tags.day_obs} AND seq_num={tags.seq_num}"
        image_tag: w_2026_47
        max_runtime: {max_runtime}
      - name: report
        type: times_square
        page: focus-report
        force_rerun: {force_rerun}
        parameters:
          trigger_id: "{{trigger_id}}"
          day_obs: "{{tags.day_obs}}"
          severity: "{{severity}}"
"""

PAGE = FakePage(
    parameters={
        "trigger_id": {"type": "string", "default": ""},
        "day_obs": {"type": "integer", "default": 0},
        "severity": {"type": "string", "default": "NONE"},
    },
    run_time=0.5,
)
TAGS = {"day_obs": "20261123", "seq_num": "42"}


def rules(max_runtime: str = "1h", force_rerun: str = "false") -> str:
    text = RULES.replace("{max_runtime}", max_runtime).replace("{force_rerun}", force_rerun)
    return text.replace("{{", "{").replace("}}", "}")


async def fire(stack: Stack, **tags: str) -> tuple[str, str]:
    trigger = await stack.publish("latiss-focus", Severity.SERIOUS, tags={**TAGS, **tags})
    return (
        make_action_id(trigger.trigger_id, "pipeline"),
        make_action_id(trigger.trigger_id, "report"),
    )


def events_of(events, action_id):
    return [e for e in events if e.action_id == action_id]


@pytest.mark.asyncio
async def test_pipeline_and_report_from_one_trigger(stack: Stack) -> None:
    stack.write_rules(rules())
    stack.times_square.pages["focus-report"] = PAGE
    await stack.start_worker()
    pipeline, report = await fire(stack)
    events = await stack.wait_history(
        lambda ev: finished(ev, pipeline) and finished(ev, report), what="both actions"
    )
    # OCPS: one PUT, as the OCPS CSC sends it, with the trigger's values filled in.
    assert stack.uws.count("PUT", "/job") == 1
    put = next(r for r in stack.uws.requests if r.method == "PUT")
    assert put.headers["Authorization"].startswith("Basic ")
    body = put.json()
    assert body["run_id"] == run_id_for(pipeline)
    assert body["command"] == "cd $JOB_SOURCE_DIR && bash bin/pipetask.sh"
    assert (body["url"], body["commit_ref"], body["replicas"]) == (
        "https://github.com/lsst-dm/uws_scripts",
        "main",
        1,
    )
    assert body["environment"] == [
        {"name": "IMAGE_TAG", "value": "w_2026_47"},
        {"name": "PIPELINE_URL", "value": "$DRP_PIPE_DIR/pipelines/LATISS/DRP.yaml#isr"},
        {"name": "BUTLER_REPO", "value": "/repo/embargo"},
        {"name": "RUN_OPTIONS", "value": "-i LATISS/raw/all"},
        {"name": "OUTPUT_GLOB", "value": "*"},
        {"name": "DATA_QUERY", "value": "instrument='LATISS' AND day_obs=20261123 AND seq_num=42"},
    ]
    (job_id,) = stack.uws.jobs
    ocps = events_of(events, pipeline)
    assert [e.state.value for e in ocps][:3] == ["queued", "submitting", "submitted"]
    assert ocps[-1].state == ActionState.succeeded
    assert ocps[-1].job_id == job_id
    assert ocps[-1].link == f"{stack.uws.url}/job/{job_id}"
    assert ocps[-1].message == (
        f"OCPS job {job_id} completed with 1 result(s): /project/ocps/{job_id}/out/metrics.json"
    )
    phases = [e.message for e in ocps if e.state == ActionState.submitted]
    assert phases[0] == f"OCPS job {job_id} (run_id {run_id_for(pipeline)}) is pending."
    assert f"OCPS job {job_id} is executing." in phases
    # Times Square: one page instance computed once, and the HTML link recorded.
    assert list(stack.times_square.executions.values()) == [1]
    published = events_of(events, report)[-1]
    assert published.state == ActionState.succeeded
    assert published.message == "The report is published."
    assert published.link is not None
    assert published.link.startswith(f"{stack.times_square.url}{API}/pages/focus-report/html?")
    async with httpx.AsyncClient() as client:
        html = await client.get(
            published.link, headers={"Authorization": f"Bearer {stack.times_square.token}"}
        )
    assert html.status_code == 200
    # `catcher actions show` shows both with their links and outcomes.
    for action_id, expected in ((pipeline, ocps[-1]), (report, published)):
        code, out, err = await stack.cli("actions", "show", action_id)
        assert code == 0, err
        assert "state:    succeeded after 1 attempt(s)" in out
        assert f"outcome:  {expected.message}" in out
        assert expected.link in out
    code, out, _ = await stack.cli("actions", "list", "--state", "succeeded")
    assert code == 0
    assert pipeline in out and report in out


@pytest.mark.asyncio
async def test_pipeline_error_fails_with_its_summary(stack: Stack) -> None:
    stack.write_rules(rules())
    stack.times_square.pages["focus-report"] = PAGE
    stack.uws.outcomes.append("error")
    await stack.start_worker()
    pipeline, _ = await fire(stack)
    events = await stack.wait_history(lambda ev: finished(ev, pipeline), what="the pipeline")
    (job_id,) = stack.uws.jobs
    final = events_of(events, pipeline)[-1]
    assert final.state == ActionState.failed
    assert final.message == (
        f"OCPS job {job_id} ended in phase error: pipetask exited with status 1: no datasets"
        " matched DATA_QUERY"
    )
    assert stack.uws.count("PUT") == 1
    letters = await stack.wait_for(stack.dead_letters, what="a dead letter")
    assert [(d.stage, d.action_id) for d in letters] == [(DeadLetterStage.execute, pipeline)]


@pytest.mark.asyncio
async def test_job_past_its_max_runtime_is_aborted(stack: Stack) -> None:
    stack.write_rules(rules(max_runtime="2s"))
    stack.times_square.pages["focus-report"] = PAGE
    stack.uws.run_time = 120
    await stack.start_worker()
    pipeline, _ = await fire(stack)
    events = await stack.wait_history(lambda ev: finished(ev, pipeline), what="the abort")
    final = events_of(events, pipeline)[-1]
    job_id = final.job_id
    assert final.state == ActionState.failed
    assert final.message == f"Exceeded its maximum runtime of 0:00:02. OCPS job {job_id} aborted."
    assert stack.uws.deleted == [job_id]
    assert stack.uws.count("DELETE") == 1
    assert stack.uws.count("PUT") == 1


@pytest.mark.asyncio
async def test_cancel_from_the_cli_aborts_the_job_and_stops_polling(stack: Stack) -> None:
    stack.write_rules(rules())
    stack.times_square.pages["focus-report"] = PAGE
    stack.uws.run_time = 120
    await stack.start_worker()
    pipeline, _ = await fire(stack)
    events = await stack.wait_history(
        lambda ev: "submitted" in states(ev, pipeline), what="the job to be submitted"
    )
    job_id = events_of(events, pipeline)[-1].job_id
    code, out, err = await stack.cli("actions", "cancel", pipeline, "--by", "night-operator")
    assert code == 0, err
    assert out.strip() == (
        f"{pipeline}: cancelled. Cancelled by night-operator. OCPS job {job_id} aborted."
    )
    assert stack.uws.deleted == [job_id]
    polls = stack.uws.count("GET", f"/job/{job_id}")
    await asyncio.sleep(2.0)  # several poll intervals
    assert stack.uws.count("GET", f"/job/{job_id}") == polls
    code, _, err = await stack.cli("actions", "cancel", pipeline)
    assert code == 1
    assert "has already finished: cancelled" in err


@pytest.mark.asyncio
async def test_worker_killed_between_put_and_ledger_write_creates_one_job(stack: Stack) -> None:
    stack.write_rules(rules())
    stack.times_square.pages["focus-report"] = PAGE
    stack.uws.put_delay = 60  # the job exists; the answer never comes before the kill
    first = await stack.start_worker()
    pipeline, _ = await fire(stack)
    await stack.wait_for(
        lambda: asyncio.sleep(0, result=len(stack.uws.jobs) == 1), what="the job to exist"
    )
    first.kill()
    stack.uws.put_delay = 0
    await stack.start_worker()
    events = await stack.wait_history(
        lambda ev: finished(ev, pipeline), timeout=90, what="the pipeline"
    )
    assert len(stack.uws.jobs_for(run_id_for(pipeline))) == 1
    assert stack.uws.count("PUT") == 1
    (job_id,) = stack.uws.jobs
    ocps = events_of(events, pipeline)
    assert ocps[-1].state == ActionState.succeeded
    found = next(e for e in ocps if e.state == ActionState.submitted)
    assert found.message == (
        f"Found OCPS job {job_id} (run_id {run_id_for(pipeline)}) after an interrupted submission."
    )


REPORT_ONLY = """
rules:
  - id: focus-report
    description: Report only.
    actions:
      - name: report
        type: times_square
        page: focus-report
        force_rerun: {force_rerun}
        parameters: {day_obs: "{tags.day_obs}"}
"""


def report_rules(force_rerun: str = "false") -> str:
    return REPORT_ONLY.replace("{force_rerun}", force_rerun)


@pytest.mark.asyncio
async def test_times_square_execution_error_fails_the_action(stack: Stack) -> None:
    stack.write_rules(report_rules())
    stack.times_square.pages["focus-report"] = FakePage(
        parameters={"day_obs": {"type": "integer"}}, run_time=0.3, error="jupyter_error"
    )
    await stack.start_worker()
    trigger = await stack.publish("focus-report", Severity.WARNING, tags=TAGS)
    report = make_action_id(trigger.trigger_id, "report")
    events = await stack.wait_history(lambda ev: finished(ev, report), what="the report")
    final = events_of(events, report)[-1]
    assert final.state == ActionState.failed
    assert final.message == (
        "Times Square could not compute the page (jupyter_error): Notebook execution failed:"
        " The notebook could not be computed (jupyter_error)."
    )
    assert list(stack.times_square.executions.values()) == [1]


@pytest.mark.asyncio
async def test_times_square_422_fails_without_retry(stack: Stack) -> None:
    stack.write_rules(report_rules())
    stack.times_square.pages["focus-report"] = FakePage(
        parameters={"day_obs": {"type": "integer"}}
    )
    await stack.start_worker()
    trigger = await stack.publish("focus-report", Severity.WARNING, tags={"day_obs": "yesterday"})
    report = make_action_id(trigger.trigger_id, "report")
    events = await stack.wait_history(lambda ev: finished(ev, report), what="the report")
    assert states(events, report) == ["queued", "submitting", "failed"]
    assert events_of(events, report)[-1].message == (
        "Times Square rejected the parameters of page focus-report/htmlstatus?day_obs=yesterday:"
        " Parameter day_obs value 'yesterday' is not a valid integer"
    )
    assert stack.times_square.count("GET", f"{API}/pages/focus-report/htmlstatus") == 1
    assert stack.times_square.executions == {}


@pytest.mark.asyncio
async def test_forced_rerun_recomputes_a_cached_page(stack: Stack) -> None:
    stack.write_rules(report_rules(force_rerun="true"))
    stack.times_square.pages["focus-report"] = FakePage(
        parameters={"day_obs": {"type": "integer"}}, run_time=0.2
    )
    url = f"{stack.times_square.url}{API}/pages/focus-report/htmlstatus?day_obs=20261123"
    headers = {"Authorization": f"Bearer {stack.times_square.token}"}
    async with httpx.AsyncClient(headers=headers) as client:  # someone computed it before
        for _ in range(50):
            if (await client.get(url)).json()["available"]:
                break
            await asyncio.sleep(0.1)
    key = "focus-report?day_obs=20261123"
    assert stack.times_square.executions == {key: 1}
    await stack.start_worker()
    trigger = await stack.publish("focus-report", Severity.WARNING, tags=TAGS)
    report = make_action_id(trigger.trigger_id, "report")
    events = await stack.wait_history(lambda ev: finished(ev, report), what="the report")
    assert events_of(events, report)[-1].state == ActionState.succeeded
    assert stack.times_square.count("DELETE", f"{API}/pages/focus-report/html") == 1
    assert stack.times_square.executions == {key: 2}
