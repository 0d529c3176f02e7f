"""The ledger's records: compact for finished actions, readable from the earlier table."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from catcher.models.enums import ActionState
from catcher.storage.ledger_log import Finished, _decoded, decode_value, encode_value

WHEN = datetime(2026, 12, 1, 8, 30, 15, 123000, tzinfo=UTC)


def test_a_finished_action_is_its_state_and_time_in_about_twenty_bytes() -> None:
    raw = encode_value(Finished(ActionState.succeeded, WHEN, 2))
    assert raw == b"succeeded@1796113815123"
    assert decode_value(raw, 2) == Finished(ActionState.succeeded, WHEN, 2)
    assert encode_value(None) is None and decode_value(None, 0) is None  # tombstones


def test_an_unfinished_entry_is_compact_json() -> None:
    value = {"action_id": "t.a", "state": "submitted", "published": False, "job_id": "j"}
    raw = encode_value(value)
    assert raw is not None and b" " not in raw
    assert decode_value(raw, 0) == value


def test_the_earlier_tables_records_are_read() -> None:
    """Faust's table quoted keys as JSON; its final states marked published shrink."""
    marked = {
        "action_id": "t.a",
        "state": "failed",
        "published": True,
        "updated": WHEN.isoformat(),
    }
    assert _decoded(b'"t.a"', json.dumps(marked).encode(), 1) == (
        "t.a",
        Finished(ActionState.failed, WHEN, 1),
    )
    unmarked = {**marked, "published": False}
    assert _decoded(b"t.a", json.dumps(unmarked).encode(), 1) == ("t.a", unmarked)


@pytest.mark.parametrize(
    ("key", "value", "problem"),
    [
        (None, b"succeeded@1", "no key"),
        (b"t.a", b"running@12", "not a ledger record"),
        (b"t.a", b"succeeded@soon", "not a ledger record"),
        (b"t.a", b"[1, 2]", "not a ledger record"),
        (b"t.a", b'{"no": "state"}', "not a ledger entry"),
        (b"t.a", b"{not json", "Expecting property name"),
        (b"t.a", b"\xff\xfe", "can't decode"),
    ],
)
def test_a_malformed_record_is_reported_not_raised(
    key: bytes | None, value: bytes, problem: str
) -> None:
    found = _decoded(key, value, 0)
    assert isinstance(found, str) and problem in found
