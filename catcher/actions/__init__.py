"""Executors: one module per external service an action can use."""

from __future__ import annotations

from .base import Executor, JobStatus, Submission
from .noteburst import NoteburstExecutor
from .ocps import OcpsExecutor
from .times_square import TimesSquareExecutor
from .webhook import WebhookExecutor

__all__ = [
    "Executor",
    "JobStatus",
    "NoteburstExecutor",
    "OcpsExecutor",
    "Submission",
    "TimesSquareExecutor",
    "WebhookExecutor",
]
