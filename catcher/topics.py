"""The topic catalogue: every topic Catcher uses, with its name, cleanup and retention.

The worker creates what it needs from here (``CATCHER_CREATE_TOPICS``), the command line
reads the names from here, and the Sasquatch subchart's ``KafkaTopic`` resources are checked
against it (``tests/test_helm.py``), so that a topic declared by Strimzi is the topic the
code expects.

Names: ``<CATCHER_TOPIC_PREFIX>.<name>`` for Catcher's own topics; the tables' changelogs
and Faust's leader topic are named by Faust, ``<CATCHER_APP_ID>-<name>``.
Telemetry topics are not listed: they are the EFD's, never created by Catcher.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from enum import StrEnum

__all__ = [
    "ACTIONS",
    "ACTION_REQUESTS",
    "ALARMS",
    "ALARM_TABLE",
    "CATALOGUE",
    "DEADLETTER",
    "EVENT_RETENTION",
    "INTERNAL_RETENTION",
    "LEADER",
    "LEDGER_TABLE",
    "MIRROR",
    "RULE_STATES",
    "SAMPLES",
    "SERIES",
    "SERIES_STATE_TABLE",
    "SILENCES",
    "STREAM_STATE_TABLE",
    "TRIGGERS",
    "Cleanup",
    "Topic",
]

EVENT_RETENTION = timedelta(days=30)
"""How long triggers, action history and dead letters are kept (replay reaches this far)."""

INTERNAL_RETENTION = timedelta(days=7)
"""How long the internal request topics are kept (longer than any trigger may wait)."""


class Cleanup(StrEnum):
    """A topic's ``cleanup.policy``."""

    delete = "delete"
    compact = "compact"


@dataclass(frozen=True)
class Topic:
    """One topic of the catalogue."""

    name: str
    """Name after the prefix (Catcher's topics) or after ``<app_id>-`` (Faust's)."""
    cleanup: Cleanup
    purpose: str
    retention: timedelta | None = None
    """``retention.ms`` of a ``delete`` topic."""
    faust: bool = False
    """Named by Faust after the application id: a table's changelog, the leader topic."""
    single_partition: bool = False
    """One partition whatever ``CATCHER_TOPIC_PARTITIONS`` says."""
    stream_only: bool = False
    """Used only when the worker evaluates stream rules."""
    by_partition: bool = False
    """Read partition by partition beside the tables: it must have exactly
    ``CATCHER_TOPIC_PARTITIONS`` partitions (the others may have any count)."""

    def full_name(self, prefix: str, app_id: str) -> str:
        """The topic's name on the broker."""
        return f"{app_id}-{self.name}" if self.faust else f"{prefix}.{self.name}"

    def partitions(self, configured: int) -> int:
        """Its partition count, given ``CATCHER_TOPIC_PARTITIONS``."""
        return 1 if self.single_partition else configured

    def configs(self) -> dict[str, str]:
        """Its topic configuration at creation."""
        configs = {"cleanup.policy": self.cleanup.value}
        if self.cleanup == Cleanup.compact:
            configs |= COMPACTION
        if self.retention is not None:
            configs["retention.ms"] = str(int(self.retention.total_seconds() * 1000))
        return configs


COMPACTION = {"segment.ms": "3600000", "min.cleanable.dirty.ratio": "0.1"}
"""Compacted topics roll a segment every hour and are cleaned once a tenth is stale.

Kafka never compacts the segment being written, and by default a segment rolls at 1 GiB
or after 7 days: a worker restarted would read a week of every change. With these, what
a restart reads is about one record per live key plus the last hour's changes.
"""

LEDGER_TABLE = "ledger"
ALARM_TABLE = "alarms"
SERIES_STATE_TABLE = "series-state"
STREAM_STATE_TABLE = "stream-state"


def _changelog(table: str, purpose: str, *, stream_only: bool = False) -> Topic:
    return Topic(
        f"{table}-changelog",
        Cleanup.compact,
        purpose,
        faust=True,
        stream_only=stream_only,
        by_partition=True,
    )


TRIGGERS = Topic(
    "triggers",
    Cleanup.delete,
    "Trigger records (Flux tasks, the mirror)",
    EVENT_RETENTION,
    by_partition=True,
)
ACTIONS = Topic("actions", Cleanup.delete, "Action history events", EVENT_RETENTION)
DEADLETTER = Topic("deadletter", Cleanup.delete, "Rejected records, with reasons", EVENT_RETENTION)
SERIES = Topic(
    "internal.series",
    Cleanup.delete,
    "Triggers keyed by rule and series, so that one worker owns a series",
    INTERNAL_RETENTION,
    by_partition=True,
)
ACTION_REQUESTS = Topic(
    "internal.action-requests",
    Cleanup.delete,
    "Planned actions keyed by action id, so that one worker owns an action",
    INTERNAL_RETENTION,
    by_partition=True,
)
SAMPLES = Topic(
    "internal.samples",
    Cleanup.delete,
    "Telemetry samples keyed by rule and series, so that stream work spreads over workers",
    INTERNAL_RETENTION,
    stream_only=True,
    by_partition=True,
)
ALARMS = Topic("alarms", Cleanup.compact, "Alarm states, keyed by alarm name")
SILENCES = Topic("silences", Cleanup.compact, "Silences (maintenance windows), keyed by id")
RULE_STATES = Topic(
    "rule-states", Cleanup.compact, "Rules' alarms disabled or enabled at run time, by rule id"
)
MIRROR = Topic(
    "internal.mirror", Cleanup.compact, "The mirror's checkpoint (one key)", single_partition=True
)
LEADER = Topic(
    "__assignor-__leader",
    Cleanup.delete,
    "Faust's leader election (Faust declares it with one partition)",
    INTERNAL_RETENTION,
    faust=True,
    single_partition=True,
)

CATALOGUE: tuple[Topic, ...] = (
    TRIGGERS,
    ACTIONS,
    DEADLETTER,
    SERIES,
    ACTION_REQUESTS,
    SAMPLES,
    ALARMS,
    SILENCES,
    RULE_STATES,
    MIRROR,
    _changelog(SERIES_STATE_TABLE, "Each series' last severity"),
    _changelog(LEDGER_TABLE, "The ledger: each action's state"),
    _changelog(ALARM_TABLE, "The alarm owner's table"),
    _changelog(STREAM_STATE_TABLE, "Stream rules' samples and windows", stream_only=True),
    LEADER,
)
"""Every topic Catcher uses."""
