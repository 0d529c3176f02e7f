"""A fake Times Square: parameterised pages computed once per parameter set."""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from .base import FakeService

__all__ = ["FakePage", "FakeTimesSquare"]

API = "/times-square/api/v1"
_TYPES = {"string": str, "integer": int, "number": float}


def _convert(text: str, kind: str) -> Any:
    """A query value as its JSON schema type, or None when it is not one."""
    if kind == "boolean":
        return {"true": True, "false": False}.get(text)
    try:
        return _TYPES.get(kind, str)(text)
    except ValueError:
        return None


def _detail(status: int, msg: str, kind: str, loc: list[str] | None = None) -> web.Response:
    item: dict[str, Any] = {"msg": msg, "type": kind}
    if loc:
        item["loc"] = loc
    return web.json_response({"detail": [item]}, status=status)


@dataclass
class FakePage:
    """A page: its parameters (JSON schemas) and how its runs end."""

    parameters: dict[str, dict[str, Any]] = field(default_factory=dict)
    run_time: float = 0.5
    error: str | None = None
    """Execution error code of every run (timeout, jupyter_error, ...), or None."""


@dataclass
class _Instance:
    started: float | None = None
    html: str | None = None
    error: dict[str, str] | None = None


@dataclass
class FakeTimesSquare(FakeService):
    """The page API: htmlstatus starts a run and reports it; html is 404 until it is done."""

    token: str = "fake-times-square-token"
    pages: dict[str, FakePage] = field(default_factory=dict)
    executions: dict[str, int] = field(default_factory=dict)
    """How many notebook runs each page instance (page + parameters) started."""
    _instances: dict[str, _Instance] = field(default_factory=dict)

    def routes(self) -> list[web.RouteDef]:
        """The page endpoints Catcher uses."""
        return [
            web.get(f"{API}/pages/{{page}}", self._page),
            web.get(f"{API}/pages/{{page}}/htmlstatus", self._htmlstatus),
            web.get(f"{API}/pages/{{page}}/html", self._html),
            web.delete(f"{API}/pages/{{page}}/html", self._delete_html),
        ]

    def _authorized(self, request: web.Request) -> bool:
        return request.headers.get("Authorization") == f"Bearer {self.token}"

    def _resolve(self, page: FakePage, query: dict[str, str]) -> dict[str, Any] | web.Response:
        values: dict[str, Any] = {}
        for name in query:
            if name not in page.parameters:
                return _detail(
                    422, f"Parameter {name} is unknown", "parameter_error", ["query", name]
                )
        for name, schema in page.parameters.items():
            if name not in query:
                values[name] = schema.get("default")
                continue
            value = _convert(query[name], schema.get("type", "string"))
            if value is None:
                return _detail(
                    422,
                    f"Parameter {name} value {query[name]!r} is not a valid"
                    f" {schema.get('type', 'string')}",
                    "parameter_error",
                    ["query", name],
                )
            values[name] = value
        return values

    def key(self, page: str, values: dict[str, Any]) -> str:
        """Identity of a page instance: the page and its resolved parameters."""
        return page + "?" + "&".join(f"{k}={values[k]}" for k in sorted(values))

    def _lookup(self, request: web.Request) -> tuple[str, FakePage, str] | web.Response:
        if not self._authorized(request):
            return _detail(401, "Authentication required", "unauthorized")
        name = request.match_info["page"]
        page = self.pages.get(name)
        if page is None:
            return _detail(404, f"Page {name} not found.", "page_not_found")
        values = self._resolve(page, dict(request.query))
        if isinstance(values, web.Response):
            return values
        return name, page, self.key(name, values)

    def _start(self, key: str, instance: _Instance) -> None:
        instance.started = time.time()
        self.executions[key] = self.executions.get(key, 0) + 1

    def _advance(self, page: FakePage, key: str, instance: _Instance) -> None:
        """Turn a finished run into HTML or an error (done when the status is polled)."""
        if instance.started is None or time.time() < instance.started + page.run_time:
            return
        instance.started = None
        if page.error:
            instance.error = {
                "code": page.error,
                "title": "Notebook execution failed",
                "message": f"The notebook could not be computed ({page.error}).",
            }
        else:
            instance.html = f"<html><body>{key}</body></html>"

    def _urls(self, request: web.Request, name: str) -> dict[str, str]:
        base = f"{self.url}{API}/pages/{name}"
        query = f"?{request.query_string}" if request.query_string else ""
        return {"html_url": f"{base}/html{query}", "html_status_url": f"{base}/htmlstatus{query}"}

    async def _page(self, request: web.Request) -> web.Response:
        found = self._lookup(request)
        if isinstance(found, web.Response):
            return found
        name, page, _ = found
        base = f"{self.url}{API}/pages/{name}"
        return web.json_response(
            {
                "name": name,
                "title": name,
                "parameters": page.parameters,
                "self_url": base,
                "html_url": f"{base}/html",
                "html_status_url": f"{base}/htmlstatus",
                "rendered_url": f"{base}/rendered",
            }
        )

    async def _htmlstatus(self, request: web.Request) -> web.Response:
        found = self._lookup(request)
        if isinstance(found, web.Response):
            return found
        name, page, key = found
        instance = self._instances.setdefault(key, _Instance())
        self._advance(page, key, instance)
        if instance.html is None and instance.error is None and instance.started is None:
            self._start(key, instance)
        urls = self._urls(request, name)
        return web.json_response(
            {
                "available": instance.html is not None,
                "html_url": urls["html_url"],
                "html_hash": hashlib.sha256(instance.html.encode()).hexdigest()
                if instance.html
                else None,
                "execution_error": instance.error,
            }
        )

    async def _html(self, request: web.Request) -> web.Response:
        found = self._lookup(request)
        if isinstance(found, web.Response):
            return found
        _, page, key = found
        instance = self._instances.get(key)
        if instance is not None:
            self._advance(page, key, instance)
        if instance is None or instance.html is None:
            return web.json_response({"detail": "Computing the notebook..."}, status=404)
        return web.Response(text=instance.html, content_type="text/html")

    async def _delete_html(self, request: web.Request) -> web.Response:
        found = self._lookup(request)
        if isinstance(found, web.Response):
            return found
        _, _, key = found
        instance = _Instance()
        self._instances[key] = instance
        self._start(key, instance)
        return web.Response(status=204)
