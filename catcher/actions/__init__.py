"""Executors: one module per external service an action can use.

``EXECUTORS`` is the one list of action types: adding one is a model in
:mod:`catcher.models.rules`, an executor (with its settings class) here, and a fake in
:mod:`catcher.fakes`.
"""

from __future__ import annotations

from typing import Any

from .base import Executor, JobStatus, Submission
from .noteburst import NoteburstExecutor
from .ocps import OcpsExecutor
from .times_square import TimesSquareExecutor
from .webhook import WebhookExecutor

__all__ = [
    "DEFAULT_CONCURRENCY",
    "EXECUTORS",
    "Executor",
    "JobStatus",
    "NoteburstExecutor",
    "OcpsExecutor",
    "Submission",
    "TimesSquareExecutor",
    "WebhookExecutor",
    "executor_class",
]

EXECUTORS: tuple[type[Executor[Any, Any]], ...] = (
    WebhookExecutor,
    NoteburstExecutor,
    OcpsExecutor,
    TimesSquareExecutor,
)
"""Every action type's executor."""

DEFAULT_CONCURRENCY = {executor.type: executor.default_concurrency for executor in EXECUTORS}
"""Most calls in flight to each service at once, by action type."""


def executor_class(action_type: str) -> type[Executor[Any, Any]]:
    """The executor of an action type."""
    return next(e for e in EXECUTORS if e.type == action_type)
