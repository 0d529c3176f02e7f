"""A Confluent Schema Registry subset: register, look up by id, check a subject."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from aiohttp import web

from .base import FakeService

__all__ = ["FakeSchemaRegistry"]

_CONTENT_TYPE = "application/vnd.schemaregistry.v1+json"


def _error(status: int, code: int, message: str) -> web.Response:
    return web.json_response(
        {"error_code": code, "message": message}, status=status, content_type=_CONTENT_TYPE
    )


@dataclass
class FakeSchemaRegistry(FakeService):
    """Schemas by id and subject versions, in memory, as Confluent's REST API answers."""

    schemas: dict[int, str] = field(default_factory=dict)
    subjects: dict[str, list[int]] = field(default_factory=dict)

    def routes(self) -> list[web.RouteDef]:
        """Confluent REST API calls Catcher makes."""
        return [
            web.post("/subjects/{subject}/versions", self._register),
            web.post("/subjects/{subject}", self._check),
            web.get("/subjects", self._list_subjects),
            web.get("/subjects/{subject}/versions/{version}", self._get_version),
            web.get("/schemas/ids/{schema_id}", self._by_id),
            web.post("/compatibility/subjects/{subject}/versions/{version}", self._compatible),
        ]

    @staticmethod
    def _canonical(text: str) -> str:
        return json.dumps(json.loads(text), sort_keys=True, separators=(",", ":"))

    async def _schema_from(self, request: web.Request) -> str | web.Response:
        try:
            payload = await request.json()
            return self._canonical(payload["schema"])
        except (ValueError, KeyError, TypeError):
            return _error(422, 42201, "Input schema is an invalid Avro schema")

    def _id_for(self, schema: str) -> int | None:
        return next((i for i, s in self.schemas.items() if s == schema), None)

    async def _register(self, request: web.Request) -> web.Response:
        schema = await self._schema_from(request)
        if isinstance(schema, web.Response):
            return schema
        schema_id = self._id_for(schema)
        if schema_id is None:
            schema_id = len(self.schemas) + 1
            self.schemas[schema_id] = schema
        versions = self.subjects.setdefault(request.match_info["subject"], [])
        if schema_id not in versions:
            versions.append(schema_id)
        return web.json_response({"id": schema_id}, content_type=_CONTENT_TYPE)

    async def _check(self, request: web.Request) -> web.Response:
        subject = request.match_info["subject"]
        if subject not in self.subjects:
            return _error(404, 40401, f"Subject '{subject}' not found.")
        schema = await self._schema_from(request)
        if isinstance(schema, web.Response):
            return schema
        schema_id = self._id_for(schema)
        if schema_id is None or schema_id not in self.subjects[subject]:
            return _error(404, 40403, "Schema not found")
        return web.json_response(
            {
                "subject": subject,
                "id": schema_id,
                "version": self.subjects[subject].index(schema_id) + 1,
                "schema": self.schemas[schema_id],
            },
            content_type=_CONTENT_TYPE,
        )

    async def _list_subjects(self, _request: web.Request) -> web.Response:
        return web.json_response(sorted(self.subjects), content_type=_CONTENT_TYPE)

    async def _get_version(self, request: web.Request) -> web.Response:
        subject = request.match_info["subject"]
        versions = self.subjects.get(subject)
        if not versions:
            return _error(404, 40401, f"Subject '{subject}' not found.")
        version = request.match_info["version"]
        index = len(versions) if version == "latest" else int(version)
        if not 1 <= index <= len(versions):
            return _error(404, 40402, f"Version {version} not found.")
        schema_id = versions[index - 1]
        return web.json_response(
            {
                "subject": subject,
                "id": schema_id,
                "version": index,
                "schema": self.schemas[schema_id],
            },
            content_type=_CONTENT_TYPE,
        )

    async def _by_id(self, request: web.Request) -> web.Response:
        try:
            schema_id = int(request.match_info["schema_id"])
        except ValueError:
            return _error(404, 40403, "Schema not found")
        if schema_id not in self.schemas:
            return _error(404, 40403, "Schema not found")
        return web.json_response({"schema": self.schemas[schema_id]}, content_type=_CONTENT_TYPE)

    async def _compatible(self, request: web.Request) -> web.Response:
        if request.match_info["subject"] not in self.subjects:
            return _error(404, 40401, "Subject not found.")
        return web.json_response({"is_compatible": True}, content_type=_CONTENT_TYPE)
