"""Patterns operators give (alarm names, silences, tag values), matched in linear time.

Every pattern a user supplies, through the API, the command line or a stored silence, is
compiled here with RE2 (google-re2): matching takes time linear in the text, whatever
the pattern, so no pattern can stall the worker. RE2 has Python's syntax without
backreferences and lookaround; a pattern that uses them, or is longer than
``MAX_PATTERN_LENGTH``, or would need more than ``MAX_PATTERN_MEMORY`` to compile, is
refused with a message that says why.
"""

from __future__ import annotations

import functools
from typing import Annotated, Any

import re2
from pydantic import AfterValidator, WithJsonSchema

__all__ = [
    "MAX_PATTERN_LENGTH",
    "MAX_PATTERN_MEMORY",
    "Pattern",
    "check_pattern",
    "compile_pattern",
    "full_match",
]

MAX_PATTERN_LENGTH = 500
"""Longest pattern accepted, in characters."""

MAX_PATTERN_MEMORY = 1 << 20
"""Most memory one compiled pattern may take, in bytes (RE2's ``max_mem``)."""


def _options() -> Any:
    options = re2.Options()
    options.log_errors = False
    options.max_mem = MAX_PATTERN_MEMORY
    return options


@functools.lru_cache(maxsize=1024)
def compile_pattern(pattern: str) -> Any:
    """The compiled pattern; ``ValueError`` says why a pattern is refused."""
    if not pattern:
        raise ValueError("a pattern is not empty")
    if len(pattern) > MAX_PATTERN_LENGTH:
        raise ValueError(
            f"a pattern has at most {MAX_PATTERN_LENGTH} characters, not {len(pattern)}"
        )
    try:
        return re2.compile(pattern, _options())
    except re2.error as exc:
        reason = exc.args[0] if exc.args else "invalid"
        if isinstance(reason, bytes):
            reason = reason.decode(errors="replace")
        raise ValueError(
            f"not a pattern Catcher can match in linear time (RE2 syntax: no backreferences"
            f" or lookaround): {reason}"
        ) from None


def check_pattern(pattern: str) -> str:
    """The pattern itself if it compiles (a pydantic validator)."""
    compile_pattern(pattern)
    return pattern


def full_match(pattern: str, text: str) -> bool:
    """Whether the pattern matches the whole text."""
    return compile_pattern(pattern).fullmatch(text) is not None


Pattern = Annotated[
    str,
    AfterValidator(check_pattern),
    WithJsonSchema(
        {
            "type": "string",
            "minLength": 1,
            "maxLength": MAX_PATTERN_LENGTH,
            "description": "A regular expression in RE2 syntax, matched against the whole text.",
        }
    ),
]
"""A user-supplied regular expression, checked when it arrives."""
