"""A fake noteburst: the /noteburst/v1/notebooks API with jobs that progress over time."""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from aiohttp import web

from .base import FakeService

__all__ = ["FakeNotebookJob", "FakeNoteburst"]

Outcome = Literal["success", "ipynb_error", "error"]


def _iso(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, tz=UTC).isoformat()


def _detail(status: int, msg: str, kind: str) -> web.Response:
    return web.json_response({"detail": [{"msg": msg, "type": kind}]}, status=status)


@dataclass
class FakeNotebookJob:
    """A job the fake has accepted."""

    job_id: str
    ipynb: str
    kernel_name: str
    timeout: float | None
    enqueued: float
    outcome: Outcome


@dataclass
class FakeNoteburst(FakeService):
    """noteburst's notebook API: 202 + Location, queued → in_progress → complete.

    ``queue_time`` and ``run_time`` set how long a job stays queued and in progress.
    ``outcomes`` is consumed one per submitted job (default: success).
    """

    token: str = "fake-noteburst-token"
    queue_time: float = 0.2
    run_time: float = 0.5
    outcomes: list[Outcome] = field(default_factory=list)
    jobs: dict[str, FakeNotebookJob] = field(default_factory=dict)

    def routes(self) -> list[web.RouteDef]:
        """The notebooks endpoints."""
        return [
            web.post("/noteburst/v1/notebooks/", self._submit),
            web.get("/noteburst/v1/notebooks/{job_id}", self._get),
        ]

    def _authorized(self, request: web.Request) -> bool:
        return request.headers.get("Authorization") == f"Bearer {self.token}"

    def _self_url(self, job_id: str) -> str:
        return f"{self.url}/noteburst/v1/notebooks/{job_id}"

    async def _submit(self, request: web.Request) -> web.Response:
        if not self._authorized(request):
            return _detail(401, "Authentication required", "unauthorized")
        try:
            payload = await request.json()
        except ValueError:
            return _detail(422, "Body is not valid JSON", "value_error.jsondecode")
        if not isinstance(payload, dict) or "ipynb" not in payload:
            return web.json_response(
                {
                    "detail": [
                        {
                            "loc": ["body", "ipynb"],
                            "msg": "field required",
                            "type": "value_error.missing",
                        }
                    ]
                },
                status=422,
            )
        ipynb = payload["ipynb"]
        if not isinstance(ipynb, str):
            ipynb = json.dumps(ipynb)
        timeout = payload.get("timeout")
        job = FakeNotebookJob(
            job_id=uuid.uuid4().hex,
            ipynb=ipynb,
            kernel_name=payload.get("kernel_name", "lsst"),
            timeout=float(timeout) if isinstance(timeout, int | float) else None,
            enqueued=time.time(),
            outcome=self.outcomes.pop(0) if self.outcomes else "success",
        )
        self.jobs[job.job_id] = job
        body: dict[str, Any] = {
            "job_id": job.job_id,
            "kernel_name": job.kernel_name,
            "enqueue_time": _iso(job.enqueued),
            "status": "queued",
            "self_url": self._self_url(job.job_id),
        }
        if job.timeout is not None:
            body["timeout"] = job.timeout
        return web.json_response(body, status=202, headers={"Location": body["self_url"]})

    async def _get(self, request: web.Request) -> web.Response:
        if not self._authorized(request):
            return _detail(401, "Authentication required", "unauthorized")
        job = self.jobs.get(request.match_info["job_id"])
        if job is None:
            return _detail(404, "Job not found", "not_found")
        now = time.time()
        started = job.enqueued + self.queue_time
        finished = started + self.run_time
        body: dict[str, Any] = {
            "job_id": job.job_id,
            "kernel_name": job.kernel_name,
            "enqueue_time": _iso(job.enqueued),
            "self_url": self._self_url(job.job_id),
        }
        if job.timeout is not None:
            body["timeout"] = job.timeout
        if now < started:
            body["status"] = "queued"
        elif now < finished:
            body["status"] = "in_progress"
            body["start_time"] = _iso(started)
        else:
            body.update(status="complete", start_time=_iso(started), finish_time=_iso(finished))
            if job.outcome == "error":
                body["success"] = False
                body["error"] = {
                    "code": "jupyter_error",
                    "message": "The kernel died while running the notebook.",
                    "exception_type": "JupyterError",
                }
            else:
                body["success"] = True
                if request.query.get("result", "true") != "false":
                    body["ipynb"] = job.ipynb
                if job.outcome == "ipynb_error":
                    body["ipynb_error"] = {"name": "ValueError", "message": "bad value in cell 3"}
        return web.json_response(body)
