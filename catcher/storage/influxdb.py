"""InfluxDB 1.x over InfluxQL (``/query``): the EFD for backtests, the mirror's bucket.

One client for every reader: identifiers and literals are quoted here and nowhere else,
answers are read the same way, and every failure is one short message (no credentials, no
long bodies) raised as the caller's own error class.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx

from ..exceptions import CatcherError
from ..redact import brief

__all__ = ["InfluxQL", "InfluxSeries", "quote_identifier", "quote_literal"]


def quote_identifier(name: str) -> str:
    """A measurement, field, tag or retention policy name, quoted and escaped."""
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


def quote_literal(value: str) -> str:
    """A string literal, quoted and escaped."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


@dataclass(frozen=True)
class InfluxSeries:
    """One series of an answer: its tags, its columns and its rows (time in ns first)."""

    name: str
    tags: dict[str, str]
    columns: list[str]
    values: list[list[Any]] = field(default_factory=list)

    def rows(self) -> list[dict[str, Any]]:
        """The rows as column → value."""
        return [dict(zip(self.columns, values, strict=True)) for values in self.values]


class InfluxQL:
    """Queries one database of an InfluxDB 1.x server.

    ``what`` names the server in messages ("the EFD", "InfluxDB"); ``error`` is the class of
    the errors raised, so that each caller reports failures in its own terms.
    """

    def __init__(
        self,
        http: httpx.AsyncClient,
        url: str,
        database: str,
        *,
        what: str = "InfluxDB",
        error: type[CatcherError] = CatcherError,
        auth: httpx.Auth | None = None,
        headers: dict[str, str] | None = None,
        timeout: float | None = None,
    ) -> None:
        self._http = http
        self._timeout = httpx.USE_CLIENT_DEFAULT if timeout is None else timeout
        self._url = url.rstrip("/") + "/query"
        self._shown = str(httpx.URL(self._url).copy_with(username=None, password=None))
        """The URL in messages: without the user and password it may carry."""
        self._database = database
        self._what = what
        self._error = error
        self._auth = auth
        self._headers = headers or {}

    @property
    def _title(self) -> str:
        return self._what[:1].upper() + self._what[1:]

    async def query(self, query: str) -> list[InfluxSeries]:
        """Every series of every statement's result, times in nanoseconds."""
        try:
            response = await self._http.get(
                self._url,
                params={"db": self._database, "epoch": "ns", "q": query},
                headers=self._headers,
                auth=self._auth or httpx.USE_CLIENT_DEFAULT,
                timeout=self._timeout,
            )
        except httpx.HTTPError as exc:
            raise self._unreachable(exc) from None
        if response.status_code != httpx.codes.OK:
            raise self._error(
                f"{self._title} answered HTTP {response.status_code}: {brief(response.text)}"
            )
        return self._series(response.text)

    async def query_chunks(
        self, query: str, chunk_size: int = 10_000
    ) -> AsyncIterator[InfluxSeries]:
        """Every series of the answer, in chunks of rows as the server streams them.

        Only one chunk is held at a time, so an answer of millions of points costs the
        memory of ``chunk_size`` rows. A series may come in several chunks, in order.
        """
        params = {"db": self._database, "epoch": "ns", "q": query, "chunked": "true"}
        params["chunk_size"] = str(chunk_size)
        try:
            async with self._http.stream(
                "GET",
                self._url,
                params=params,
                headers=self._headers,
                auth=self._auth or httpx.USE_CLIENT_DEFAULT,
                timeout=self._timeout,
            ) as response:
                if response.status_code != httpx.codes.OK:
                    body = (await response.aread()).decode(errors="replace")
                    raise self._error(
                        f"{self._title} answered HTTP {response.status_code}: {brief(body)}"
                    )
                async for line in response.aiter_lines():
                    if line.strip():
                        for series in self._series(line):
                            yield series
        except httpx.HTTPError as exc:
            raise self._unreachable(exc) from None

    def _unreachable(self, exc: httpx.HTTPError) -> CatcherError:
        detail = brief(str(exc)) or type(exc).__name__
        detail = detail.replace(self._url, self._shown)
        return self._error(f"Cannot reach {self._what} at {self._shown}: {detail}")

    def _series(self, text: str) -> list[InfluxSeries]:
        """The series of one JSON answer (or one chunk of a chunked answer)."""
        try:
            results = json.loads(text).get("results", [])
        except (ValueError, AttributeError):
            raise self._error(
                f"{self._title} answered with something that is not InfluxQL's JSON: {brief(text)}"
            ) from None
        found: list[InfluxSeries] = []
        for result in results:
            if "error" in result:
                raise self._error(f"{self._title} could not run the query: {result['error']}")
            found.extend(
                InfluxSeries(
                    name=raw.get("name", ""),
                    tags=dict(raw.get("tags") or {}),
                    columns=list(raw["columns"]),
                    values=list(raw.get("values") or []),
                )
                for raw in result.get("series", [])
            )
        return found
