"""Executors: one module per external service an action can use."""

from __future__ import annotations

from .base import Executor, JobStatus, Submission
from .noteburst import NoteburstExecutor
from .webhook import WebhookExecutor

__all__ = ["Executor", "JobStatus", "NoteburstExecutor", "Submission", "WebhookExecutor"]
