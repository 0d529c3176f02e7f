"""The API's rule states: an operator disables or enables a rule's alarms at run time.

A state is a record on the compacted rule-states topic, keyed by rule id, that every
worker follows; the owner of each alarm reads it before applying a trigger. The routes are
part of the alarm API (same prefix, same user header).
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

import structlog
from aiohttp import web
from pydantic import ValidationError

from ..models.alarms import RuleState
from ..models.api import RuleStateBody
from ..models.records import utcnow
from ..models.rules import RuleSet
from ..services.alarms.view import TopicView

__all__ = ["RuleStatesApi", "SaveRuleState"]

logger = structlog.get_logger("catcher")

SaveRuleState = Callable[[RuleState], Awaitable[None]]
"""Write a rule's state to the rule-states topic (acknowledged)."""

ACTIONS = {"enable": True, "disable": False}


def _problem(status: int, detail: Any) -> web.Response:
    return web.json_response({"detail": detail}, status=status)


class RuleStatesApi:
    """``GET /rules`` and ``POST /rules/{rule_id}/{enable|disable}``."""

    def __init__(
        self, rules: RuleSet, states: TopicView[RuleState], save: SaveRuleState, user_key: Any
    ) -> None:
        self._rules = rules
        self._states = states
        self._save = save
        self._user = user_key

    def routes(self, prefix: str) -> list[web.RouteDef]:
        """The routes, under the API's prefix."""
        return [
            web.get(f"{prefix}/rules", self.list_rules),
            web.post(f"{prefix}/rules/{{rule_id}}/{{action}}", self.change),
        ]

    def _answer(self, rule_id: str) -> dict[str, Any]:
        rule = self._rules.rules[rule_id]
        state = self._states.values.get(rule_id)
        return {
            "rule_id": rule_id,
            "alarms_enabled": state is None or state.alarms_enabled,
            "configured": rule.alarm.enabled,
            "by": state.by if state else "",
            "at": state.at.isoformat() if state else None,
            "comment": state.comment if state else "",
        }

    async def list_rules(self, _request: web.Request) -> web.Response:
        """``GET /rules``: every loaded rule, with its alarms' state."""
        return web.json_response({"rules": [self._answer(r) for r in sorted(self._rules.rules)]})

    async def change(self, request: web.Request) -> web.Response:
        """``POST /rules/{rule_id}/{enable|disable}``: answered 202 with the new state."""
        action, rule_id = request.match_info["action"], request.match_info["rule_id"]
        if action not in ACTIONS:
            return _problem(404, f"No rule action {action!r}: enable or disable.")
        if rule_id not in self._rules.rules:
            return _problem(404, f"No rule {rule_id!r} is loaded.")
        try:
            body = RuleStateBody.model_validate(json.loads(await request.read() or b"{}"))
        except ValidationError as exc:
            errors = exc.errors(include_url=False, include_input=False)
            detail = [{"loc": ["body", *e["loc"]], "msg": e["msg"]} for e in errors]
            return _problem(422, detail)
        except ValueError:
            return _problem(422, [{"loc": ["body"], "msg": "not JSON"}])
        user = request[self._user]
        state = RuleState(
            rule_id=rule_id,
            alarms_enabled=ACTIONS[action],
            by=user,
            at=utcnow(),
            comment=body.comment,
        )
        await self._save(state)
        self._states.values[rule_id] = state  # visible here at once
        logger.info(
            "Changed a rule's alarms", rule=rule_id, enabled=state.alarms_enabled, user=user
        )
        return web.json_response(self._answer(rule_id), status=202)
