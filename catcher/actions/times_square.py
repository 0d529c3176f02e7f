"""Times Square: compute a parameterised page and publish its HTML.

API (under ``{base}/times-square/api/v1``, bearer token): ``GET pages/{page}/htmlstatus?...``
reports ``available``, ``html_url`` and ``execution_error``; when nothing is cached and
nothing runs, that same call starts the computation, and polling it turns a finished run
into HTML. ``DELETE pages/{page}/html?...`` drops a cached result and recomputes. The same
parameters give the same page instance, so submitting again is harmless.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

import httpx
from pydantic_settings import SettingsConfigDict

from ..exceptions import PermanentActionError, http_status_error
from ..models.actions import TimesSquareAction
from ..models.records import LedgerEntry
from ..redact import brief
from .base import (
    JobStatus,
    SciencePlatformExecutor,
    SciencePlatformSettings,
    Submission,
    json_answer,
    render_params,
    request,
)

__all__ = ["TimesSquareExecutor", "TimesSquareSettings", "query_value"]


def query_value(value: Any) -> str:
    """A parameter value as Times Square reads it from a query string."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return ""
    return str(value)


class TimesSquareSettings(SciencePlatformSettings):
    """Where Times Square runs (``CATCHER_TIMES_SQUARE_*``).

    ``url`` is the Science Platform environment's base URL (the API is under
    /times-square/api/v1); ``token`` is a Gafaelfawr token with the exec:notebook scope.
    """

    model_config = SettingsConfigDict(env_prefix="CATCHER_TIMES_SQUARE_", extra="ignore")


class TimesSquareExecutor(SciencePlatformExecutor[TimesSquareAction]):
    """Runs Times Square pages and waits for their HTML."""

    type = "times_square"
    settings_class = TimesSquareSettings
    resubmit_message = (
        "asked again after uncertain outcome (Times Square runs a parameter set once)"
    )

    def _page_url(self, action: TimesSquareAction, entry: LedgerEntry, leaf: str) -> str:
        parameters = render_params(action.parameters, entry)
        query = urlencode({k: query_value(v) for k, v in parameters.items()})
        url = f"{self._base_url}/times-square/api/v1/pages/{action.page}/{leaf}"
        return f"{url}?{query}" if query else url

    async def _call(self, method: str, url: str) -> httpx.Response:
        response = await request(
            self._client, "Times Square", method, url, headers=self._headers()
        )
        if response.status_code == httpx.codes.UNPROCESSABLE_ENTITY:
            raise PermanentActionError(
                f"Times Square rejected the parameters of page {url.split('/pages/')[1]}:"
                f" {_detail(response)}"
            )
        if response.status_code == httpx.codes.NOT_FOUND and method == "GET":
            raise PermanentActionError(f"Times Square has no such page: {_detail(response)}")
        return response

    async def submit(self, action: TimesSquareAction, entry: LedgerEntry) -> Submission:
        """Optionally drop the cached result, then ask for the page's status (starts it)."""
        self._headers()
        if action.force_rerun:
            response = await self._call("DELETE", self._page_url(action, entry, "html"))
            if not response.is_success and response.status_code != httpx.codes.NOT_FOUND:
                raise http_status_error("Times Square", response)
        status_url = self._page_url(action, entry, "htmlstatus")
        status = await self._status(status_url)
        if status.finished:
            if not status.succeeded:
                raise PermanentActionError(status.message)
            return Submission(done=True, message=status.message, link=status.link)
        verb = "Recomputing" if action.force_rerun else "Computing"
        return Submission(
            done=False, message=f"{verb} Times Square page {action.page}.", link=status_url
        )

    async def poll(self, action: TimesSquareAction, entry: LedgerEntry) -> JobStatus:
        """Poll htmlstatus (the link recorded at submission)."""
        del action
        if entry.link is None:
            raise PermanentActionError("The ledger has no Times Square status URL.")
        return await self._status(entry.link)

    async def _status(self, url: str) -> JobStatus:
        response = await self._call("GET", url)
        if response.status_code != httpx.codes.OK:
            raise http_status_error("Times Square", response)
        status = json_answer("Times Square", response, "status")
        if not isinstance(status, dict):
            raise PermanentActionError(
                f"Times Square's status is not an object: {brief(response.text)}"
            )
        error = status.get("execution_error")
        if error and not isinstance(error, dict):
            error = {"code": "unknown", "message": str(error)}
        if error:
            return JobStatus(
                finished=True,
                message=f"Times Square could not compute the page ({error.get('code')}):"
                f" {error.get('title', '')}: {error.get('message', '')}".replace(":  :", ":"),
            )
        if status.get("available"):
            return JobStatus(
                finished=True,
                succeeded=True,
                message="The report is published.",
                link=status.get("html_url"),
            )
        return JobStatus(finished=False, message="Times Square is computing the page.")


def _detail(response: httpx.Response) -> str:
    try:
        detail = response.json().get("detail")
    except (ValueError, AttributeError):
        return response.text.strip()
    if isinstance(detail, list):
        return "; ".join(str(d.get("msg", d)) if isinstance(d, dict) else str(d) for d in detail)
    return str(detail)
