"""The alarm API's OpenAPI 3.1 document (``GET /openapi.json``).

Every body and answer is described by its pydantic model (``catcher/models/api.py``), all
under ``components/schemas``, so every ``$ref`` resolves; a test checks real answers
against this document.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from ..constants import USER_HEADER
from ..models.alarms import CommandKind, DisplayState, SilenceState
from ..models.api import (
    AlarmAnswer,
    AlarmList,
    CommandAnswer,
    CommandBody,
    Problem,
    RuleStateAnswer,
    RuleStateBody,
    RuleStateList,
    SilenceAnswer,
    SilenceBody,
    SilenceList,
)

__all__ = ["openapi_document"]

_REF = "#/components/schemas/{model}"


def _ref(model: type[BaseModel]) -> dict[str, str]:
    return {"$ref": _REF.format(model=model.__name__)}


def _json(model: type[BaseModel], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": _ref(model)}}}


def _problem(description: str) -> dict[str, Any]:
    return _json(Problem, description)


def _path(name: str, description: str, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "name": name,
        "in": "path",
        "required": True,
        "schema": schema or {"type": "string"},
        "description": description,
    }


def _query(name: str, description: str, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "schema": schema or {"type": "string"},
        "description": description,
    }


_USER = {
    "name": USER_HEADER,
    "in": "header",
    "required": True,
    "schema": {
        "type": "string",
        "minLength": 1,
        "maxLength": 256,
        "pattern": r"^[^\s\x00-\x1f\x7f](?:[^\x00-\x1f\x7f]*[^\s\x00-\x1f\x7f])?$",
    },
    "description": "The user, set by Gafaelfawr in front of the API (it is not a credential:"
    " the API trusts whoever sets it, so only the ingress may reach it).",
}

_COMMON = {
    "400": _problem(f"The {USER_HEADER} header is not a user name (UTF-8 text, no controls)."),
    "401": _problem(f"No {USER_HEADER} header: log in through Gafaelfawr."),
}


def openapi_document(prefix: str = "") -> dict[str, Any]:
    """OpenAPI 3.1 description of the alarm API, served under ``prefix``."""
    _, definitions = models_json_schema(
        [
            (CommandBody, "validation"),
            (SilenceBody, "validation"),
            (AlarmAnswer, "serialization"),
            (AlarmList, "serialization"),
            (SilenceAnswer, "serialization"),
            (SilenceList, "serialization"),
            (CommandAnswer, "serialization"),
            (RuleStateBody, "validation"),
            (RuleStateAnswer, "serialization"),
            (RuleStateList, "serialization"),
            (Problem, "serialization"),
        ],
        ref_template=_REF,
    )
    invalid = _problem("Invalid input, naming the field.")
    return {
        "openapi": "3.1.0",
        "info": {"title": "Catcher alarms", "version": "1"},
        "servers": [{"url": prefix or "/"}],
        "components": {"schemas": definitions["$defs"]},
        "paths": {
            "/alarms": {
                "get": {
                    "summary": "List alarms, sorted by name",
                    "parameters": [
                        _USER,
                        _query(
                            "state",
                            "Only alarms in this display state.",
                            {"enum": [s.value for s in DisplayState]},
                        ),
                        _query("rule", "Only the alarms of this rule."),
                        _query(
                            "name",
                            "Only names this regular expression (RE2) matches whole.",
                            {"type": "string", "maxLength": 500},
                        ),
                    ],
                    "responses": {
                        "200": _json(AlarmList, "The alarms."),
                        **_COMMON,
                        "422": invalid,
                    },
                }
            },
            "/alarms/{name}": {
                "get": {
                    "summary": "One alarm",
                    "parameters": [_USER, _path("name", "The alarm's name.")],
                    "responses": {
                        "200": _json(AlarmAnswer, "The alarm."),
                        **_COMMON,
                        "404": _problem("No such alarm."),
                    },
                },
                "post": {
                    "summary": "Acknowledge, unacknowledge, mute or unmute the alarms a regex"
                    " names: all of them, or none",
                    "parameters": [
                        _USER,
                        _path(
                            "name",
                            "The command (the path is /alarms/acknowledge, /alarms/mute...).",
                            {"enum": [k.value for k in CommandKind]},
                        ),
                    ],
                    "requestBody": {
                        "required": True,
                        "content": {"application/json": {"schema": _ref(CommandBody)}},
                    },
                    "responses": {
                        "202": _json(CommandAnswer, "Written for the alarms' owners."),
                        **_COMMON,
                        "404": _problem("No alarm matches."),
                        "409": _json(CommandAnswer, "Some alarm would refuse it: none sent."),
                        "422": invalid,
                    },
                },
            },
            "/silences": {
                "get": {
                    "summary": "List silences",
                    "parameters": [
                        _USER,
                        _query(
                            "state",
                            "Only silences in this state now.",
                            {"enum": [s.value for s in SilenceState]},
                        ),
                    ],
                    "responses": {
                        "200": _json(SilenceList, "The silences."),
                        **_COMMON,
                        "422": invalid,
                    },
                },
                "post": {
                    "summary": "Create a silence",
                    "parameters": [_USER],
                    "requestBody": {
                        "required": True,
                        "content": {"application/json": {"schema": _ref(SilenceBody)}},
                    },
                    "responses": {
                        "201": {
                            **_json(SilenceAnswer, "The silence."),
                            "links": {
                                "ExpireSilence": {
                                    "operationId": "expireSilence",
                                    "parameters": {"id": "$response.body#/id"},
                                }
                            },
                        },
                        **_COMMON,
                        "422": invalid,
                    },
                },
            },
            "/silences/{id}": {
                "delete": {
                    "operationId": "expireSilence",
                    "summary": "Expire a silence now",
                    "parameters": [_USER, _path("id", "The silence's id.")],
                    "responses": {
                        "200": _json(SilenceAnswer, "The expired silence."),
                        **_COMMON,
                        "404": _problem("No such silence."),
                        "409": _problem("Already expired."),
                    },
                }
            },
            "/rules": {
                "get": {
                    "summary": "List the loaded rules and whether their alarms are enabled",
                    "parameters": [_USER],
                    "responses": {"200": _json(RuleStateList, "The rules."), **_COMMON},
                }
            },
            "/rules/{rule_id}/{action}": {
                "post": {
                    "summary": "Disable or enable a rule's alarms at run time",
                    "parameters": [
                        _USER,
                        _path("rule_id", "A loaded rule's id."),
                        _path(
                            "action",
                            "disable: its triggers change none of its alarms; enable: again.",
                            {"enum": ["enable", "disable"]},
                        ),
                    ],
                    "requestBody": {
                        "required": False,
                        "content": {"application/json": {"schema": _ref(RuleStateBody)}},
                    },
                    "responses": {
                        "202": _json(RuleStateAnswer, "The rule's new state."),
                        **_COMMON,
                        "404": _problem("No such rule, or no such action."),
                        "422": invalid,
                    },
                }
            },
        },
    }
