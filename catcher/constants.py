"""Names and defaults shared by the whole package."""

__all__ = [
    "ACTIONS_SUFFIX",
    "ACTION_REQUESTS_SUFFIX",
    "ALARMS_SUFFIX",
    "ALARM_TABLE",
    "DEADLETTER_SUFFIX",
    "DEFAULT_TOPIC_PREFIX",
    "LEDGER_TABLE",
    "MIRROR_SUFFIX",
    "SERIES_STATE_TABLE",
    "SERIES_SUFFIX",
    "SILENCES_SUFFIX",
    "STREAM_STATE_TABLE",
    "TRIGGERS_SUFFIX",
    "USER_HEADER",
]

DEFAULT_TOPIC_PREFIX = "lsst.catcher"
"""Default prefix of Catcher's topics and of its Avro namespace."""

TRIGGERS_SUFFIX = "triggers"
ACTIONS_SUFFIX = "actions"
DEADLETTER_SUFFIX = "deadletter"
ALARMS_SUFFIX = "alarms"
SILENCES_SUFFIX = "silences"
MIRROR_SUFFIX = "internal.mirror"
SERIES_SUFFIX = "internal.series"
"""Internal topic: triggers re-keyed by rule and series, so that one worker owns a series."""
ACTION_REQUESTS_SUFFIX = "internal.action-requests"
"""Internal topic: planned actions keyed by action_id, so that one worker owns an action."""

LEDGER_TABLE = "ledger"
ALARM_TABLE = "alarms"
STREAM_STATE_TABLE = "stream-state"
SERIES_STATE_TABLE = "series-state"

USER_HEADER = "X-Auth-Request-User"
"""The header Gafaelfawr sets to the authenticated user's name."""
