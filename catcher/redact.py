"""Keeping secrets out of logs, history events, dead letters and error messages.

Two tools:

- :data:`secrets`, the process's registry of secret values (tokens, passwords, webhook URLs
  read from the environment or mounted files). :func:`mask` replaces each registered value
  with ``***`` wherever it appears; the log configuration applies it to every log line.
- :func:`brief`, for text quoted from outside (an HTTP answer's body, an exception's
  message): one line, short, URLs cut to their scheme and host, bearer and Gafaelfawr
  tokens masked, registered secrets masked.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, MutableMapping
from typing import Any

__all__ = ["MASK", "SecretRegistry", "brief", "mask", "mask_event", "secrets"]

MASK = "***"
_URL = re.compile(r"\b([a-zA-Z][a-zA-Z0-9+.-]*)://(?:[^@/\s\"'<>]*@)?([^/\s\"'<>?#]+)[^\s\"'<>]*")
_BEARER = re.compile(r"\b(Bearer|Basic|Token)\s+[A-Za-z0-9._~+/=-]+", re.IGNORECASE)
_GAFAELFAWR = re.compile(r"\bgt-[A-Za-z0-9_-]{8,}(?:\.[A-Za-z0-9_-]+)?")
_SHORTEST_SECRET = 4
"""Values shorter than this are not masked: masking them would garble ordinary text."""


class SecretRegistry:
    """Secret values of this process, masked wherever they would be written."""

    def __init__(self) -> None:
        self._values: set[str] = set()
        self._pattern: re.Pattern[str] | None = None

    def register(self, *values: str | None) -> None:
        """Remember secret values (None and very short values are ignored)."""
        added = {v.strip() for v in values if v and len(v.strip()) >= _SHORTEST_SECRET}
        if added - self._values:
            self._values |= added
            ordered = sorted(self._values, key=len, reverse=True)
            self._pattern = re.compile("|".join(re.escape(v) for v in ordered))

    def clear(self) -> None:
        """Forget every value (for tests)."""
        self._values.clear()
        self._pattern = None

    def mask(self, text: str) -> str:
        """The text with every registered value replaced by ``***``."""
        if self._pattern is None or not text:
            return text
        return self._pattern.sub(MASK, text)

    def __contains__(self, value: object) -> bool:
        return value in self._values


secrets = SecretRegistry()
"""The registry of this process."""


def mask(text: str) -> str:
    """Mask the registered secrets in ``text``."""
    return secrets.mask(text)


def _cut_url(match: re.Match[str]) -> str:
    scheme, host = match.group(1), match.group(2)
    rest = match.group(0).split(host, 1)[-1]
    return f"{scheme}://{host}" + ("/..." if rest.strip("/") else "")


def brief(text: str, limit: int = 300) -> str:
    """Outside text made safe to quote: one line, at most ``limit`` characters, no secrets."""
    text = " ".join(str(text).split())
    text = _URL.sub(_cut_url, text)
    text = _BEARER.sub(lambda m: f"{m.group(1)} {MASK}", text)
    text = _GAFAELFAWR.sub(MASK, text)
    text = secrets.mask(text)
    if len(text) > limit:
        text = text[: limit - 3].rstrip() + "..."
    return text


def _mask_value(value: Any) -> Any:
    if isinstance(value, str):
        return secrets.mask(value)
    if isinstance(value, dict):
        return {k: _mask_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_mask_value(v) for v in value]
    return value


def mask_event(_logger: Any, _method: str, event: MutableMapping[str, Any]) -> Mapping[str, Any]:
    """Mask (a structlog processor) registered secrets in every value of a log event."""
    return {key: _mask_value(value) for key, value in event.items()}
