"""A fake OCPS execution service (uws-api-server): jobs whose phase progresses over time."""

from __future__ import annotations

import asyncio
import base64
import json
import re
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from aiohttp import BasicAuth, web

from .base import FakeService

__all__ = ["FakeUws", "FakeUwsJob"]

Outcome = Literal["completed", "error"]
PHASES = ("pending", "queued", "executing", "completed", "error", "unknown")
_RUN_ID = re.compile(r"^[a-zA-Z0-9]([-._a-zA-Z0-9]{0,61}[a-zA-Z0-9])?$")


def _text(status: int, text: str) -> web.Response:
    return web.Response(status=status, text=text, content_type="text/plain")


def _stamp(timestamp: float | None) -> str | None:
    if timestamp is None:
        return None
    return str(datetime.fromtimestamp(timestamp, tz=UTC))


@dataclass
class FakeUwsJob:
    """A job the fake accepted."""

    job_id: str
    run_id: str
    command: str
    environment: list[dict[str, str]]
    url: str
    commit_ref: str
    replicas: int
    created: float
    outcome: Outcome


@dataclass
class FakeUws(FakeService):
    """uws-api-server's /job API behind HTTP basic auth.

    A job is ``pending`` for ``pending_time`` s, ``queued`` for ``queue_time`` s, ``executing``
    for ``run_time`` s, then ``completed`` (with result URIs) or ``error`` (with an error
    summary), as ``outcomes`` says (one per job; default completed). ``put_delay`` holds the
    PUT answer after the job exists, as the real server waits for Kubernetes.
    """

    username: str = "ocps"
    password: str = "fake-ocps-password"
    pending_time: float = 0.2
    queue_time: float = 0.2
    run_time: float = 0.5
    put_delay: float = 0.0
    outcomes: list[Outcome] = field(default_factory=list)
    jobs: dict[str, FakeUwsJob] = field(default_factory=dict)
    deleted: list[str] = field(default_factory=list)

    def routes(self) -> list[web.RouteDef]:
        """The /job endpoints."""
        return [
            web.put("/job", self._put),
            web.get("/job", self._list),
            web.get("/job/{job_id}", self._get),
            web.get("/job/{job_id}/{prop}", self._get),
            web.delete("/job/{job_id}", self._delete),
        ]

    def jobs_for(self, run_id: str) -> list[FakeUwsJob]:
        """The jobs (not deleted) with this run id."""
        return [j for j in self.jobs.values() if j.run_id == run_id]

    def _authorized(self, request: web.Request) -> bool:
        header = request.headers.get("Authorization", "")
        try:
            auth = BasicAuth.decode(header)
        except ValueError:
            return False
        return (auth.login, auth.password) == (self.username, self.password)

    def _unauthorized(self) -> web.Response:
        return web.Response(
            status=401,
            text="401 Authorization Required",
            headers={"WWW-Authenticate": 'Basic realm="ocps"'},
        )

    def _phase(self, job: FakeUwsJob, now: float) -> tuple[str, float | None, float | None]:
        queued = job.created + self.pending_time
        started = queued + self.queue_time
        ended = started + self.run_time
        if now < queued:
            return "pending", None, None
        if now < started:
            return "queued", queued, None
        if now < ended:
            return "executing", queued, None
        return job.outcome, queued, ended

    def _job_json(self, job: FakeUwsJob) -> dict[str, Any]:
        phase, start, end = self._phase(job, time.time())
        results = []
        message = ""
        if phase == "completed":
            uri = f"/project/ocps/{job.job_id}/out/metrics.json"
            results = [{"id": base64.b64encode(uri.encode()).decode(), "uri": uri}]
        if phase == "error":
            message = "pipetask exited with status 1: no datasets matched DATA_QUERY"
        return {
            "jobId": job.job_id,
            "runId": job.run_id,
            "ownerId": "",
            "phase": phase,
            "creationTime": _stamp(job.created),
            "startTime": _stamp(start),
            "endTime": _stamp(end),
            "executionDuration": (end - start) if end and start else None,
            "destruction": None,
            "parameters": {"command": job.command, "environment": job.environment},
            "results": results,
            "errorSummary": {"message": message},
            "jobInfo": {},
        }

    async def _put(self, request: web.Request) -> web.Response:
        if not self._authorized(request):
            return self._unauthorized()
        try:
            body = await request.json()
            command = body["command"]
        except (ValueError, KeyError, TypeError) as exc:
            return _text(400, str(exc))
        run_id = body.get("run_id", "")
        if run_id and not _RUN_ID.match(run_id):
            return _text(
                400,
                "Invalid run_id. Must be 63 characters or less and begin with alphanumeric"
                " character and contain only dashes (-), underscores (_), dots (.), and"
                " alphanumerics between.",
            )
        job = FakeUwsJob(
            job_id=uuid.uuid4().hex,
            run_id=run_id,
            command=command,
            environment=list(body.get("environment", [])),
            url=body.get("url", ""),
            commit_ref=body.get("commit_ref", ""),
            replicas=int(body.get("replicas", 1)),
            created=time.time(),
            outcome=self.outcomes.pop(0) if self.outcomes else "completed",
        )
        self.jobs[job.job_id] = job
        if self.put_delay:
            await asyncio.sleep(self.put_delay)
        return web.json_response(self._job_json(job), dumps=lambda d: json.dumps(d, indent=2))

    async def _list(self, request: web.Request) -> web.Response:
        if not self._authorized(request):
            return self._unauthorized()
        phase = request.query.get("phase", "")
        if phase and phase not in PHASES:
            return _text(400, f"Valid job categories are: {list(PHASES)}")
        jobs = [self._job_json(j) for j in self.jobs.values()]
        return web.json_response([j for j in jobs if not phase or j["phase"] == phase])

    async def _get(self, request: web.Request) -> web.Response:
        if not self._authorized(request):
            return self._unauthorized()
        job = self.jobs.get(request.match_info["job_id"])
        if job is None:
            return web.json_response("Job not found.", status=404)
        data = self._job_json(job)
        prop = request.match_info.get("prop")
        if prop is None:
            return web.json_response(data)
        if prop not in ("phase", "results", "parameters"):
            return web.json_response(
                "Invalid job property requested. Supported properties are phase, results,"
                " parameters",
                status=400,
            )
        return web.json_response(data[prop])

    async def _delete(self, request: web.Request) -> web.Response:
        if not self._authorized(request):
            return self._unauthorized()
        job_id = request.match_info["job_id"]
        if self.jobs.pop(job_id, None) is None:
            return _text(404, f"Job {job_id} not found.")
        self.deleted.append(job_id)
        return web.json_response({"status": "ok", "code": 200, "message": f"Deleted {job_id}"})
