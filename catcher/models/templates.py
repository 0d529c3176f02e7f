"""Placeholders in action parameters, filled from the trigger.

A placeholder is ``{name}`` or ``{tags.NAME}``; ``{{`` and ``}}`` stand for literal braces.
A string that is exactly one placeholder is replaced by the typed value (a number stays a
number in a JSON body); inside a longer string the value is formatted as text.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from typing import Any

__all__ = [
    "PLACEHOLDERS",
    "check_template",
    "placeholders_in",
    "render",
]

PLACEHOLDERS: dict[str, str] = {
    "rule_id": "id of the rule",
    "trigger_id": "id of the trigger",
    "action_id": "id of the action",
    "action_name": "name of the action",
    "severity": "severity name (NONE, WARNING, SERIOUS, CRITICAL)",
    "reason": "the trigger's reason sentence",
    "value": "the evaluated value (a number, or empty)",
    "time": "evaluation time, ISO 8601 UTC",
    "window_start": "start of the evaluated window, ISO 8601 UTC (or empty)",
    "window_stop": "stop of the evaluated window, ISO 8601 UTC (or empty)",
    "source": "what produced the trigger (flux, stream, manual, mirror)",
    "generation": "re-run generation (0 for the original)",
    "tags.NAME": "the value of tag NAME of the series",
}

_TOKEN = re.compile(r"\{\{|\}\}|\{([^{}]*)\}|[{}]")
_NAME = re.compile(r"^(?:[a-z_]+|tags\.[A-Za-z0-9_.\-]+)$")


def _tokens(text: str) -> Iterator[tuple[int, int, str | None, str]]:
    for match in _TOKEN.finditer(text):
        yield match.start(), match.end(), match.group(1), match.group(0)


def check_template(text: str) -> list[str]:
    """Return the problems of one template string (empty when it is valid)."""
    problems = []
    for _, _, raw_name, token in _tokens(text):
        if token in ("{{", "}}"):
            continue
        if raw_name is None:
            problems.append(f"unbalanced {token!r} (write {token}{token} for a literal brace)")
            continue
        name = raw_name.strip()
        if not _NAME.match(name) or (not name.startswith("tags.") and name not in PLACEHOLDERS):
            known = ", ".join("{" + p + "}" for p in PLACEHOLDERS)
            problems.append(f"unknown placeholder {{{name}}}; known placeholders: {known}")
    return problems


def placeholders_in(value: Any) -> Iterator[tuple[str, str]]:
    """Yield (path, template string) for every string inside a JSON-like value."""

    def walk(item: Any, path: str) -> Iterator[tuple[str, str]]:
        if isinstance(item, str):
            yield path, item
        elif isinstance(item, Mapping):
            for key, sub in item.items():
                yield from walk(sub, f"{path}.{key}" if path else str(key))
        elif isinstance(item, list):
            for index, sub in enumerate(item):
                yield from walk(sub, f"{path}[{index}]")

    yield from walk(value, "")


def _lookup(name: str, context: Mapping[str, Any]) -> Any:
    name = name.strip()
    if name.startswith("tags."):
        tag = name.removeprefix("tags.")
        tags = context.get("tags") or {}
        if tag not in tags:
            have = ", ".join(sorted(tags)) or "none"
            raise KeyError(f"the trigger has no tag {tag!r} (its tags: {have})")
        return tags[tag]
    if name not in context:
        raise KeyError(f"unknown placeholder {{{name}}}")
    return context[name]


def _as_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        return repr(value)
    return str(value)


def render(value: Any, context: Mapping[str, Any]) -> Any:
    """Fill the placeholders of a JSON-like value from ``context``.

    Raises KeyError with a readable message when a placeholder cannot be filled.
    """
    if isinstance(value, Mapping):
        return {key: render(sub, context) for key, sub in value.items()}
    if isinstance(value, list):
        return [render(sub, context) for sub in value]
    if not isinstance(value, str):
        return value
    tokens = list(_tokens(value))
    if len(tokens) == 1 and tokens[0][2] is not None and tokens[0][:2] == (0, len(value)):
        return _lookup(tokens[0][2], context)
    out = []
    last = 0
    for start, end, name, token in tokens:
        out.append(value[last:start])
        if token in ("{{", "}}"):
            out.append(token[0])
        elif name is None:
            out.append(token)
        else:
            out.append(_as_text(_lookup(name, context)))
        last = end
    out.append(value[last:])
    return "".join(out)
