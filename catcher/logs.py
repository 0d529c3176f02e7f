"""structlog set-up: JSON lines in production, readable lines in development.

Tracebacks never carry local variables (they would hold tokens and URLs), and every value
of every line is passed through the secret registry (:mod:`catcher.redact`).
"""

from __future__ import annotations

import logging
import sys
from typing import Any

import structlog
from structlog.tracebacks import ExceptionDictTransformer

from .config import LogProfile
from .redact import mask_event

__all__ = ["configure_logging", "stdlib_logging_config"]


class _CurrentStderr:
    """Whatever ``sys.stderr`` is when a line is written (click's runner replaces it)."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()


def configure_logging(profile: LogProfile, level: str = "INFO") -> None:
    """Configure structlog (and the standard library's root logger) for this process."""
    numeric = logging.getLevelNamesMapping()[level.upper()]
    processors: list[structlog.types.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    if profile == LogProfile.production:
        processors += [
            structlog.processors.ExceptionRenderer(ExceptionDictTransformer(show_locals=False)),
            structlog.processors.EventRenamer("message"),
            mask_event,
            structlog.processors.JSONRenderer(),
        ]
    else:
        processors += [
            structlog.processors.format_exc_info,
            mask_event,
            structlog.dev.ConsoleRenderer(colors=False),
        ]
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.WriteLoggerFactory(file=_CurrentStderr()),  # type: ignore[arg-type]
        cache_logger_on_first_use=False,
    )
    logging.basicConfig(level=max(numeric, logging.WARNING), stream=sys.stderr)
    # httpx logs every request URL at INFO; webhook URLs can be secrets.
    for name in ("httpx", "httpcore"):
        logging.getLogger(name).setLevel(logging.WARNING)
    logging.getLogger("aiokafka").setLevel(logging.NOTSET)  # the CLI quiets it; a worker not


def stdlib_logging_config(profile: LogProfile, level: str) -> dict[str, Any] | None:
    """``logging.config`` of the standard library loggers (Faust, mode, aiokafka).

    In production every line is a JSON object with the keys of Catcher's own lines
    (``timestamp``, ``level``, ``message``, plus ``logger``), secrets masked and tracebacks
    without locals; in development Faust keeps its own format (None).
    """
    if profile != LogProfile.production:
        return None
    formatter = {
        "()": structlog.stdlib.ProcessorFormatter,
        "foreign_pre_chain": [
            structlog.stdlib.add_log_level,
            structlog.stdlib.add_logger_name,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
        ],
        "processors": [
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.ExceptionRenderer(ExceptionDictTransformer(show_locals=False)),
            structlog.processors.EventRenamer("message"),
            mask_event,
            structlog.processors.JSONRenderer(),
        ],
    }
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": formatter},
        "handlers": {
            "default": {
                "class": "logging.StreamHandler",
                "formatter": "json",
                "stream": "ext://sys.stderr",
                "level": level.upper(),
            }
        },
        "root": {"level": level.upper(), "handlers": ["default"]},
        "loggers": {name: {"level": "WARNING"} for name in ("httpx", "httpcore")},
    }
