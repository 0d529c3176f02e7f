"""Text tables for people: the history and any list a command prints.

Used by the command line and the demo (which the command line runs), so it sits beside
both rather than under either.
"""

from __future__ import annotations

from collections.abc import Sequence

from .models.records import ActionEvent, isoformat

__all__ = ["HISTORY_HEADERS", "format_table", "history_rows"]


def history_rows(events: Sequence[ActionEvent]) -> list[list[str]]:
    """Table rows for history events."""
    return [
        [
            isoformat(e.time.replace(microsecond=0)) or "",
            e.rule_id,
            e.action_name,
            e.state.value,
            str(e.attempt),
            e.message or "",
            e.link or "",
        ]
        for e in events
    ]


HISTORY_HEADERS = ("time", "rule", "action", "state", "attempt", "outcome", "link")


def format_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A plain text table with aligned columns."""
    widths = [len(h) for h in headers]
    for row in rows:
        widths = [max(w, len(c)) for w, c in zip(widths, row, strict=True)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip()]
    lines.append("  ".join("-" * w for w in widths))
    lines += [
        "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in rows
    ]
    return "\n".join(lines)
