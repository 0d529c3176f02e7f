"""OCPS: pipeline jobs through the execution service (uws-api-server).

API: ``PUT {base}/job`` creates a job (200 with the job, or 500 "Job creation timed out.");
``GET {base}/job`` lists jobs; ``GET {base}/job/{id}`` reports a lowercase ``phase``
(pending, queued, executing, then completed, error, aborted or unknown);
``DELETE {base}/job/{id}`` aborts. The ingress asks for HTTP basic auth.

The ``run_id`` of a job is derived from the action id, so Catcher can always find the job
it may have created: before a retry, and after a crash, it lists the jobs and looks for its
run id before submitting anything.
"""

from __future__ import annotations

import hashlib
from datetime import timedelta
from pathlib import Path
from typing import Any, Self

import httpx
from pydantic import Field, SecretStr
from pydantic_settings import SettingsConfigDict

from ..exceptions import PermanentActionError, http_status_error
from ..models.actions import OcpsAction
from ..models.records import LedgerEntry
from ..settings import ServiceSettings
from .base import Executor, JobStatus, Submission, json_answer, render_params, request

__all__ = ["TERMINAL_PHASES", "OcpsExecutor", "OcpsSettings", "run_id_for"]

TERMINAL_PHASES = frozenset({"completed", "error", "aborted", "unknown"})


def run_id_for(action_id: str) -> str:
    """A run id for the action: stable, unique and a valid Kubernetes label value."""
    return "catcher-" + hashlib.sha256(action_id.encode()).hexdigest()[:40]


class OcpsSettings(ServiceSettings):
    """Where the OCPS execution service is (``CATCHER_OCPS_*``)."""

    model_config = SettingsConfigDict(env_prefix="CATCHER_OCPS_", extra="ignore")
    secret_fields = ("password",)

    url: str | None = Field(
        None,
        description="Base URL of the OCPS execution service (uws-api-server); jobs are under"
        " {base}/job.",
    )
    username: str | None = Field(None, description="HTTP basic auth user for the OCPS.")
    password: SecretStr | None = Field(None, description="HTTP basic auth password.")
    password_file: Path | None = Field(
        None, description="File holding the OCPS password (instead of CATCHER_OCPS_PASSWORD)."
    )


class OcpsExecutor(Executor[OcpsAction, OcpsSettings]):
    """Submits OCPS jobs, follows their phase, aborts them."""

    type = "ocps"
    settings_class = OcpsSettings
    resubmit_message = "resubmitted after uncertain outcome (no job with its run_id existed)"

    def __init__(
        self,
        client: httpx.AsyncClient,
        base_url: str | None,
        username: str | None,
        password: SecretStr | None,
    ) -> None:
        self._client = client
        self._base_url = base_url.rstrip("/") if base_url else None
        self._username = username
        self._password = password

    @classmethod
    def create(cls, client: httpx.AsyncClient, settings: OcpsSettings) -> Self:
        """The executor with the service's URL and basic auth."""
        return cls(client, settings.url, settings.username, settings.password)

    @classmethod
    def missing_settings(cls, action: OcpsAction, settings: OcpsSettings) -> list[str]:
        """The URL."""
        del action
        return [] if settings.url else ["set CATCHER_OCPS_URL for ocps actions."]

    def _auth(self) -> tuple[str, httpx.BasicAuth | None]:
        if self._base_url is None:
            raise PermanentActionError("Set CATCHER_OCPS_URL to run ocps actions.")
        auth = None
        if self._username:
            password = self._password.get_secret_value() if self._password else ""
            auth = httpx.BasicAuth(self._username, password)
        return self._base_url, auth

    async def _request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        _, auth = self._auth()
        return await request(self._client, "OCPS", method, url, auth=auth, **kwargs)

    def job_url(self, job_id: str) -> str:
        """URL of one job."""
        base, _ = self._auth()
        return f"{base}/job/{job_id}"

    def _submission(self, job: dict[str, Any], message: str) -> Submission:
        job_id = str(job["jobId"])
        return Submission(done=False, message=message, job_id=job_id, link=self.job_url(job_id))

    async def find(self, run_id: str) -> dict[str, Any] | None:
        """The job with this run id, if the service has one."""
        base, _ = self._auth()
        response = await self._request("GET", f"{base}/job", expect={httpx.codes.OK})
        jobs = json_answer("OCPS", response, "job list")
        if not isinstance(jobs, list):
            raise PermanentActionError("OCPS's job list is not a list.")
        matches = [j for j in jobs if isinstance(j, dict) and j.get("runId") == run_id]
        return matches[0] if matches else None

    async def reconcile(self, action: OcpsAction, entry: LedgerEntry) -> Submission | None:
        """An interrupted PUT may have created the job: look for its run id."""
        del action
        run_id = run_id_for(entry.action_id)
        job = await self.find(run_id)
        if job is None:
            return None
        return self._submission(
            job,
            f"Found OCPS job {job['jobId']} (run_id {run_id}) after an interrupted submission.",
        )

    async def submit(self, action: OcpsAction, entry: LedgerEntry) -> Submission:
        """PUT the job, unless an earlier attempt already created it."""
        base, _ = self._auth()
        run_id = run_id_for(entry.action_id)
        if entry.attempt > 1:
            found = await self.reconcile(action, entry)
            if found is not None:
                return found
        environment = render_params(action.job_environment(), entry)
        body = {
            "run_id": run_id,
            "command": render_params(action.command, entry),
            "url": render_params(action.git_url, entry),
            "commit_ref": render_params(action.commit_ref, entry),
            "environment": [{"name": k, "value": str(v)} for k, v in environment.items()],
            "replicas": action.replicas,
        }
        response = await self._request("PUT", f"{base}/job", expect={httpx.codes.OK}, json=body)
        try:
            job = response.json()
            return self._submission(
                job, f"OCPS job {job['jobId']} (run_id {run_id}) is {job.get('phase', 'pending')}."
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise PermanentActionError(
                f"OCPS accepted the job but its answer has no jobId: {exc}"
            ) from exc

    async def poll(self, action: OcpsAction, entry: LedgerEntry) -> JobStatus:
        """GET the job and report its phase."""
        del action
        if entry.job_id is None:
            raise PermanentActionError("The ledger has no OCPS job id for this action.")
        response = await self._request("GET", self.job_url(entry.job_id))
        if response.status_code == httpx.codes.NOT_FOUND:
            return JobStatus(
                finished=True,
                message=f"OCPS no longer knows job {entry.job_id}: it was aborted or deleted.",
            )
        if response.status_code != httpx.codes.OK:
            raise http_status_error("OCPS", response)
        try:
            job = response.json()
            phase = str(job["phase"])
            results = job.get("results") or []
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise PermanentActionError(f"OCPS's job answer has no phase: {exc}") from exc
        if phase not in TERMINAL_PHASES:
            return JobStatus(finished=False, message=f"OCPS job {entry.job_id} is {phase}.")
        uris = [
            str(r["uri"])
            for r in (results if isinstance(results, list) else [])
            if isinstance(r, dict) and r.get("uri")
        ]
        if phase == "completed":
            listed = f": {', '.join(uris)}" if uris else "."
            return JobStatus(
                finished=True,
                succeeded=True,
                message=f"OCPS job {entry.job_id} completed with {len(uris)} result(s){listed}",
            )
        summary_field = job.get("errorSummary")
        summary = (
            summary_field.get("message") if isinstance(summary_field, dict) else summary_field
        ) or "no error summary"
        return JobStatus(
            finished=True, message=f"OCPS job {entry.job_id} ended in phase {phase}: {summary}"
        )

    def max_runtime(self, action: OcpsAction) -> timedelta | None:
        """The rule's max_runtime."""
        return action.max_runtime

    async def abort(self, action: OcpsAction, entry: LedgerEntry) -> str | None:
        """DELETE the job."""
        del action
        if entry.job_id is None:
            return None
        response = await self._request("DELETE", self.job_url(entry.job_id))
        if response.status_code == httpx.codes.NOT_FOUND:
            return f"OCPS job {entry.job_id} was already gone."
        if not response.is_success:
            raise http_status_error("OCPS", response)
        return f"OCPS job {entry.job_id} aborted."
