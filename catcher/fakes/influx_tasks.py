"""A fake InfluxDB /api/v2/tasks: ids, flux, status, labels and pagination."""

from __future__ import annotations

import itertools
import json
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from .base import FakeService

__all__ = ["FakeTasksApi"]

_OPTION = re.compile(
    r'option task = \{name: ("(?:[^"\\]|\\.)*")(?:, every: (\w+))?(?:, offset: (\w+))?'
)


def _error(status: int, code: str, message: str) -> web.Response:
    return web.json_response({"code": code, "message": message}, status=status)


@dataclass
class FakeTasksApi(FakeService):
    """InfluxDB's task endpoints, as influxdb-client calls them, behind a token."""

    token: str = "fake-influxdb-token"
    org: str = "rubin"
    org_id: str = "0000000000000001"
    tasks: dict[str, dict[str, Any]] = field(default_factory=dict)
    _ids: itertools.count = field(default_factory=lambda: itertools.count(0x0A00000000000000))

    def routes(self) -> list[web.RouteDef]:
        """The tasks endpoints."""
        return [
            web.get("/api/v2/tasks", self._list),
            web.post("/api/v2/tasks", self._create),
            web.get("/api/v2/tasks/{task_id}", self._get),
            web.patch("/api/v2/tasks/{task_id}", self._update),
            web.delete("/api/v2/tasks/{task_id}", self._delete),
        ]

    def add(self, flux: str, status: str = "active") -> dict[str, Any]:
        """Put a task on the server (as another user would)."""
        task = self._task(flux, status)
        if isinstance(task, web.Response):
            raise ValueError("the Flux has no option task")
        self.tasks[task["id"]] = task
        return task

    def writes(self) -> int:
        """How many requests changed tasks."""
        return sum(1 for r in self.requests if r.method in ("POST", "PATCH", "DELETE"))

    def _authorized(self, request: web.Request) -> bool:
        return request.headers.get("Authorization") == f"Token {self.token}"

    def _task(
        self, flux: str, status: str, task_id: str | None = None
    ) -> dict[str, Any] | web.Response:
        match = _OPTION.search(flux)
        if match is None:
            return _error(400, "invalid", "failed to create task: task option required")
        now = datetime.now(tz=UTC).isoformat().replace("+00:00", "Z")
        task_id = task_id or f"{next(self._ids):016x}"
        return {
            "id": task_id,
            "orgID": self.org_id,
            "org": self.org,
            "name": json.loads(match.group(1)),
            "status": status,
            "flux": flux,
            "every": match.group(2),
            "offset": match.group(3),
            "labels": [],
            "createdAt": now,
            "updatedAt": now,
            "links": {"self": f"/api/v2/tasks/{task_id}"},
        }

    async def _list(self, request: web.Request) -> web.Response:
        if not self._authorized(request):
            return _error(401, "unauthorized", "unauthorized access")
        limit = int(request.query.get("limit", "100"))
        after = request.query.get("after", "")
        name = request.query.get("name")
        tasks = sorted(self.tasks.values(), key=lambda t: t["id"])
        tasks = [t for t in tasks if t["id"] > after and (name is None or t["name"] == name)]
        page = tasks[:limit]
        links: dict[str, str] = {"self": f"/api/v2/tasks?limit={limit}"}
        if len(tasks) > limit:
            links["next"] = f"/api/v2/tasks?after={page[-1]['id']}&limit={limit}"
        return web.json_response({"tasks": page, "links": links})

    async def _create(self, request: web.Request) -> web.Response:
        if not self._authorized(request):
            return _error(401, "unauthorized", "unauthorized access")
        body = await request.json()
        if "org" not in body and "orgID" not in body:
            return _error(400, "invalid", "failed to decode request: org or orgID required")
        task = self._task(body.get("flux", ""), body.get("status", "active"))
        if isinstance(task, web.Response):
            return task
        task["description"] = body.get("description", "")
        self.tasks[task["id"]] = task
        return web.json_response(task, status=201)

    async def _get(self, request: web.Request) -> web.Response:
        task = self.tasks.get(request.match_info["task_id"])
        if task is None:
            return _error(404, "not found", "task not found")
        return web.json_response(task)

    async def _update(self, request: web.Request) -> web.Response:
        if not self._authorized(request):
            return _error(401, "unauthorized", "unauthorized access")
        old = self.tasks.get(request.match_info["task_id"])
        if old is None:
            return _error(404, "not found", "task not found")
        body = await request.json()
        task = self._task(
            body.get("flux", old["flux"]), body.get("status", old["status"]), old["id"]
        )
        if isinstance(task, web.Response):
            return task
        task["createdAt"] = old["createdAt"]
        self.tasks[old["id"]] = task
        return web.json_response(task)

    async def _delete(self, request: web.Request) -> web.Response:
        if not self._authorized(request):
            return _error(401, "unauthorized", "unauthorized access")
        if self.tasks.pop(request.match_info["task_id"], None) is None:
            return _error(404, "not found", "task not found")
        return web.Response(status=204)
