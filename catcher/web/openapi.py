"""The alarm API's OpenAPI 3.1 document (``GET /openapi.json``)."""

from __future__ import annotations

from typing import Any

from ..constants import USER_HEADER
from ..models.alarms import Alarm, CommandKind, Silence
from ..models.api import CommandBody, SilenceBody

__all__ = ["openapi_document"]


def openapi_document() -> dict[str, Any]:
    """OpenAPI 3.1 description of the alarm API."""
    alarm_ref = {"$ref": "#/components/schemas/Alarm"}
    command_names = [k.value for k in CommandKind]
    user = {
        "name": USER_HEADER,
        "in": "header",
        "required": True,
        "schema": {"type": "string"},
        "description": "Set by Gafaelfawr.",
    }
    return {
        "openapi": "3.1.0",
        "info": {"title": "Catcher alarms", "version": "1"},
        "paths": {
            "/alarms": {
                "get": {
                    "summary": "List alarms",
                    "parameters": [
                        user,
                        {"name": "state", "in": "query", "schema": {"type": "string"}},
                        {"name": "rule", "in": "query", "schema": {"type": "string"}},
                        {"name": "name", "in": "query", "schema": {"type": "string"}},
                    ],
                    "responses": {"200": {"description": "The alarms."}},
                }
            },
            "/alarms/{name}": {
                "get": {
                    "summary": "One alarm",
                    "parameters": [
                        user,
                        {
                            "name": "name",
                            "in": "path",
                            "required": True,
                            "schema": {"type": "string"},
                        },
                    ],
                    "responses": {
                        "200": {"content": {"application/json": {"schema": alarm_ref}}},
                        "404": {"description": "No such alarm."},
                    },
                }
            },
            "/silences": {
                "get": {
                    "summary": "List silences (state: pending, active, expired)",
                    "parameters": [
                        user,
                        {"name": "state", "in": "query", "schema": {"type": "string"}},
                    ],
                    "responses": {"200": {"description": "The silences."}},
                },
                "post": {
                    "summary": "Create a silence",
                    "parameters": [user],
                    "requestBody": {
                        "content": {
                            "application/json": {
                                "schema": {"$ref": "#/components/schemas/SilenceBody"}
                            }
                        }
                    },
                    "responses": {
                        "201": {
                            "content": {
                                "application/json": {
                                    "schema": {"$ref": "#/components/schemas/Silence"}
                                }
                            }
                        },
                        "422": {"description": "Invalid input, naming the field."},
                    },
                },
            },
            "/silences/{id}": {
                "delete": {
                    "summary": "Expire a silence now",
                    "parameters": [
                        user,
                        {
                            "name": "id",
                            "in": "path",
                            "required": True,
                            "schema": {"type": "string"},
                        },
                    ],
                    "responses": {
                        "200": {"description": "The expired silence."},
                        "404": {"description": "No such silence."},
                        "409": {"description": "Already expired."},
                    },
                }
            },
            "/alarms/{command}": {
                "post": {
                    "summary": "Acknowledge, unacknowledge, mute or unmute alarms by regex",
                    "parameters": [
                        user,
                        {
                            "name": "command",
                            "in": "path",
                            "required": True,
                            "schema": {"enum": command_names},
                        },
                    ],
                    "requestBody": {
                        "content": {
                            "application/json": {
                                "schema": {"$ref": "#/components/schemas/CommandBody"}
                            }
                        }
                    },
                    "responses": {
                        "202": {"description": "Sent to the alarms' owners."},
                        "401": {"description": "No user."},
                        "404": {"description": "No alarm matches."},
                        "409": {"description": "Refused for every matching alarm."},
                        "422": {"description": "Invalid input, naming the field."},
                    },
                }
            },
        },
        "components": {
            "schemas": {
                "Alarm": Alarm.model_json_schema(),
                "CommandBody": CommandBody.model_json_schema(),
                "SilenceBody": SilenceBody.model_json_schema(),
                "Silence": Silence.model_json_schema(),
            }
        },
    }
