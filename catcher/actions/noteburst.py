"""noteburst: run a notebook on the Rubin Science Platform and follow the job.

API: ``POST {base}/noteburst/v1/notebooks/`` answers 202 with the job's ``self_url``;
``GET self_url`` reports ``queued``/``deferred``/``in_progress``/``complete``. noteburst has no
idempotency key, so an interrupted submission is submitted again and recorded as such.
"""

from __future__ import annotations

import copy
import json
from typing import Any

import httpx
from pydantic_settings import SettingsConfigDict

from ..exceptions import PermanentActionError, http_status_error
from ..models.actions import NoteburstAction
from ..models.records import LedgerEntry
from .base import (
    JobStatus,
    SciencePlatformExecutor,
    SciencePlatformSettings,
    Submission,
    render_params,
    request,
)

__all__ = ["NoteburstExecutor", "NoteburstSettings", "inject_parameters"]

_RUNNING = {"queued", "deferred", "in_progress"}
_INJECTED_TAG = "injected-parameters"


def _literal(value: Any) -> str:
    """Python source for a JSON-like value (repr is exact for these types)."""
    return repr(value)


def inject_parameters(notebook: dict[str, Any], parameters: dict[str, Any]) -> dict[str, Any]:
    """A copy of the notebook with a cell assigning the parameters.

    The cell goes right after the first cell tagged ``parameters`` (papermill's convention),
    or first when there is none, so the values override the notebook's defaults.
    """
    result = copy.deepcopy(notebook)
    if not parameters:
        return result
    source = ["# Parameters injected by Catcher\n"]
    source += [f"{name} = {_literal(value)}\n" for name, value in parameters.items()]
    cell = {
        "cell_type": "code",
        "execution_count": None,
        "metadata": {"tags": [_INJECTED_TAG]},
        "outputs": [],
        "source": source,
    }
    cells = result["cells"]
    index = next(
        (
            i + 1
            for i, c in enumerate(cells)
            if "parameters" in (c.get("metadata", {}).get("tags") or [])
        ),
        0,
    )
    cells.insert(index, cell)
    return result


class NoteburstSettings(SciencePlatformSettings):
    """Where noteburst runs (``CATCHER_NOTEBURST_*``).

    ``url`` is the Science Platform environment's base URL (the API is under
    /noteburst/v1); ``token`` is a Gafaelfawr token with the exec:notebook scope.
    """

    model_config = SettingsConfigDict(env_prefix="CATCHER_NOTEBURST_", extra="ignore")


class NoteburstExecutor(SciencePlatformExecutor[NoteburstAction]):
    """Submits notebooks to noteburst and polls their jobs."""

    type = "noteburst"
    settings_class = NoteburstSettings

    async def submit(self, action: NoteburstAction, entry: LedgerEntry) -> Submission:
        """POST the notebook with its parameters filled in."""
        headers = self._headers()
        parameters = render_params(action.parameters, entry)
        body = {
            "ipynb": json.dumps(inject_parameters(action.notebook_content, parameters)),
            "kernel_name": action.kernel_name,
            "timeout": int(action.timeout.total_seconds()),
            "enable_retry": action.enable_retry,
        }
        response = await request(
            self._client,
            "noteburst",
            "POST",
            f"{self._base_url}/noteburst/v1/notebooks/",
            expect={httpx.codes.ACCEPTED},
            json=body,
            headers=headers,
        )
        try:
            job = response.json()
            job_id = str(job["job_id"])
            self_url = str(job.get("self_url") or response.headers["Location"])
        except (ValueError, KeyError, TypeError) as exc:
            raise PermanentActionError(
                f"noteburst accepted the notebook but its answer has no job_id/self_url: {exc}"
            ) from exc
        return Submission(
            done=False,
            message=f"noteburst job {job_id} is {job.get('status', 'queued')}.",
            job_id=job_id,
            link=self_url,
        )

    async def poll(self, action: NoteburstAction, entry: LedgerEntry) -> JobStatus:
        """GET the job and translate its status."""
        del action
        headers = self._headers()
        if entry.link is None:
            raise PermanentActionError("The ledger has no noteburst job URL for this action.")
        response = await request(
            self._client,
            "noteburst",
            "GET",
            entry.link,
            params={"source": "false", "result": "true"},
            headers=headers,
        )
        if response.status_code == httpx.codes.NOT_FOUND:
            return JobStatus(
                finished=True,
                message=f"noteburst no longer knows job {entry.job_id}; it may have expired.",
            )
        if response.status_code != httpx.codes.OK:
            raise http_status_error("noteburst", response)
        try:
            job = response.json()
            status = job["status"]
        except (ValueError, KeyError, TypeError) as exc:
            raise PermanentActionError(f"noteburst's job answer has no status: {exc}") from exc
        if status in _RUNNING:
            return JobStatus(finished=False, message=f"noteburst job {entry.job_id} is {status}.")
        if status == "not_found":
            return JobStatus(finished=True, message=f"noteburst lost job {entry.job_id}.")
        if status not in ("complete", "completed"):
            return JobStatus(
                finished=True, message=f"noteburst reports unknown status {status!r}."
            )
        return self._result(job)

    @staticmethod
    def _result(job: dict[str, Any]) -> JobStatus:
        if not job.get("success", False):
            error = job.get("error") or {}
            return JobStatus(
                finished=True,
                message=f"noteburst could not run the notebook ({error.get('code', 'unknown')}):"
                f" {error.get('message', 'no message')}",
            )
        if job.get("ipynb_error"):
            error = job["ipynb_error"]
            return JobStatus(
                finished=True,
                message=f"The notebook raised {error.get('name', 'an exception')}:"
                f" {error.get('message', '')}",
            )
        timing = ""
        if job.get("start_time") and job.get("finish_time"):
            timing = f" ({job['start_time']} to {job['finish_time']})"
        return JobStatus(finished=True, succeeded=True, message=f"The notebook ran{timing}.")
