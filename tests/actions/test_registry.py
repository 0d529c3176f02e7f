"""The action types: declared once by their models and executors, and the two agree."""

from __future__ import annotations

import pytest

from catcher.actions import DEFAULT_CONCURRENCY, EXECUTORS, executor_class
from catcher.config import load_config
from catcher.exceptions import ConfigError
from catcher.models.actions import ACTION_TYPES


def test_every_action_model_has_one_executor() -> None:
    assert sorted(ACTION_TYPES) == sorted(e.type for e in EXECUTORS)
    assert all(executor_class(t).type == t for t in ACTION_TYPES)
    assert DEFAULT_CONCURRENCY == {"webhook": 32, "noteburst": 8, "ocps": 8, "times_square": 8}


def test_each_service_reads_its_own_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CATCHER_OCPS_URL", "http://ocps.example/api")
    monkeypatch.setenv("CATCHER_OCPS_PASSWORD", "basic-secret")
    monkeypatch.setenv("CATCHER_TIMES_SQUARE_URL", "http://rsp.example")
    config = load_config()
    assert {t: config.service(t) is not None for t in ACTION_TYPES} == {
        "webhook": False,
        "noteburst": True,
        "ocps": True,
        "times_square": True,
    }
    assert "basic-secret" in config.secret_values()
    assert "basic-secret" not in repr(config)
    monkeypatch.setenv("CATCHER_OCPS_PASSWORD_FILE", "/nonexistent/password")
    with pytest.raises(ConfigError) as raised:
        load_config()
    assert str(raised.value) == (
        "Invalid configuration (CATCHER_OCPS_*):\n"
        "  Set CATCHER_OCPS_PASSWORD or CATCHER_OCPS_PASSWORD_FILE, not both."
    )
