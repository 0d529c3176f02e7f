from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import faust
import pytest

from catcher.actions.noteburst import NoteburstSettings
from catcher.config import load_config
from catcher.exceptions import ConfigError


def test_defaults_and_topics(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CATCHER_TOPIC_PREFIX", "lsst.catcher.dev")
    config = load_config()
    assert config.triggers_topic == "lsst.catcher.dev.triggers"
    assert config.actions_topic == "lsst.catcher.dev.actions"
    assert config.deadletter_topic == "lsst.catcher.dev.deadletter"
    month = {"cleanup.policy": "delete", "retention.ms": "2592000000"}
    week = {"cleanup.policy": "delete", "retention.ms": "604800000"}
    # Compacted topics roll a segment an hour, so that the cleaner can do its work.
    compact = {
        "cleanup.policy": "compact",
        "segment.ms": "3600000",
        "min.cleanable.dirty.ratio": "0.1",
    }
    names = {config.topic_name(t): t.configs() for t in config.worker_topics(stream=True)}
    assert names == {
        "lsst.catcher.dev.triggers": month,
        "lsst.catcher.dev.actions": month,
        "lsst.catcher.dev.deadletter": month,
        "lsst.catcher.dev.internal.series": week,
        "lsst.catcher.dev.internal.action-requests": week,
        "lsst.catcher.dev.internal.samples": week,
        "lsst.catcher.dev.alarms": compact,
        "lsst.catcher.dev.silences": compact,
        "lsst.catcher.dev.rule-states": compact,
        "lsst.catcher.dev.internal.mirror": compact,
        "catcher-series-state-changelog": compact,
        "catcher-ledger-changelog": compact,
        "catcher-alarms-changelog": compact,
        "catcher-stream-state-changelog": compact,
        "catcher-__assignor-__leader": week,
    }
    assert "catcher-stream-state-changelog" not in [
        config.topic_name(t) for t in config.worker_topics(stream=False)
    ]
    assert [t.partitions(3) for t in config.worker_topics(stream=False)].count(1) == 2
    assert config.kafka.aiokafka_params() == {
        "bootstrap_servers": "localhost:9092",
        "security_protocol": "PLAINTEXT",
        "request_timeout_ms": 10_000,
    }


def test_sasl_scram_from_kafka_access_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "sasquatch-kafka-bootstrap:9092")
    monkeypatch.setenv("KAFKA_SECURITY_PROTOCOL", "SASL_PLAINTEXT")
    monkeypatch.setenv("KAFKA_SASL_USERNAME", "catcher")
    monkeypatch.setenv("KAFKA_SASL_PASSWORD", "s3cret-pw")
    config = load_config()
    params = config.kafka.aiokafka_params()
    assert params["sasl_mechanism"] == "SCRAM-SHA-512"
    assert params["sasl_plain_password"] == "s3cret-pw"
    assert config.kafka.faust_broker_url() == "kafka://sasquatch-kafka-bootstrap:9092"
    assert "s3cret-pw" not in repr(config)
    credentials = config.kafka.faust_credentials()
    assert isinstance(credentials, faust.SASLCredentials)
    assert (credentials.username, credentials.password) == ("catcher", "s3cret-pw")
    assert credentials.mechanism.value == "SCRAM-SHA-512"
    assert credentials.ssl_context is None  # SASL_PLAINTEXT: no TLS


def test_plaintext_has_no_faust_credentials() -> None:
    assert load_config().kafka.faust_credentials() is None


def test_sasl_needs_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAFKA_SECURITY_PROTOCOL", "SASL_SSL")
    with pytest.raises(ConfigError) as info:
        load_config()
    assert str(info.value) == (
        "Invalid configuration (KAFKA_*):\n  Set KAFKA_SASL_USERNAME and"
        " KAFKA_SASL_PASSWORD since KAFKA_SECURITY_PROTOCOL is SASL_SSL."
    )


def test_ssl_needs_client_certificate(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAFKA_SECURITY_PROTOCOL", "SSL")
    with pytest.raises(ConfigError, match="Set KAFKA_CLIENT_CERT_PATH and KAFKA_CLIENT_KEY_PATH"):
        load_config()


def test_bad_value_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CATCHER_POLL_INTERVAL", "-1")
    with pytest.raises(ConfigError, match="CATCHER_POLL_INTERVAL: Input should be greater than 0"):
        load_config()
    monkeypatch.delenv("CATCHER_POLL_INTERVAL")
    monkeypatch.setenv("CATCHER_RETRY_ATTEMPTS", "0")
    with pytest.raises(ConfigError, match="CATCHER_RETRY_ATTEMPTS: Input should be greater"):
        load_config()


def test_token_from_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("gt-secret-token\n")
    monkeypatch.setenv("CATCHER_NOTEBURST_TOKEN_FILE", str(token))
    config = load_config()
    settings = config.service("noteburst")
    assert isinstance(settings, NoteburstSettings)
    assert settings.token is not None
    assert settings.token.get_secret_value() == "gt-secret-token"
    assert "gt-secret-token" not in repr(config)
    monkeypatch.setenv("CATCHER_NOTEBURST_TOKEN", "other")
    with pytest.raises(ConfigError, match="not both"):
        load_config()
    monkeypatch.delenv("CATCHER_NOTEBURST_TOKEN")
    monkeypatch.setenv("CATCHER_NOTEBURST_TOKEN_FILE", str(tmp_path / "missing"))
    with pytest.raises(ConfigError, match="Cannot read CATCHER_NOTEBURST_TOKEN_FILE"):
        load_config()


def test_bounds_and_log_level_are_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CATCHER_LOG_LEVEL", "debug")
    assert load_config().log_level == "DEBUG"
    monkeypatch.setenv("CATCHER_LOG_LEVEL", "LOUD")
    with pytest.raises(ConfigError, match="CATCHER_LOG_LEVEL: Input should be 'DEBUG'"):
        load_config()
    monkeypatch.delenv("CATCHER_LOG_LEVEL")
    # By default the ledger keeps finished actions an hour longer than a trigger can be
    # delivered again and still run: the default maximum age, or an action's longer one.
    config = load_config()
    assert config.ledger_retention is None
    assert config.retention_for(None) == timedelta(hours=7)
    assert config.retention_for(timedelta(days=2)) == timedelta(days=2, hours=1)
    monkeypatch.setenv("CATCHER_LEDGER_RETENTION", "2h")
    with pytest.raises(ConfigError, match="Set CATCHER_LEDGER_RETENTION longer than"):
        load_config()
    monkeypatch.setenv("CATCHER_LEDGER_RETENTION", "3d")
    monkeypatch.setenv("CATCHER_CONCURRENCY", '{"ocps": 2}')
    config = load_config()
    assert config.retention_for(timedelta(days=1)) == timedelta(days=3)  # as set
    assert config.concurrency == {"webhook": 32, "noteburst": 8, "ocps": 2, "times_square": 8}
    monkeypatch.setenv("CATCHER_CONCURRENCY", '{"pager": 2}')
    with pytest.raises(ConfigError, match="unknown action types pager"):
        load_config()


@pytest.mark.parametrize(
    ("given", "kept"), [("", ""), ("/catcher", "/catcher"), ("/catcher/", "/catcher"), ("/", "")]
)
def test_the_api_path_prefix_is_a_path(given: str, kept: str) -> None:
    assert load_config(path_prefix=given).path_prefix == kept


@pytest.mark.parametrize("given", ["catcher", "/cat cher", "/catcher?x=1", "/{name}"])
def test_a_path_prefix_that_is_not_a_path_is_refused_naming_it(given: str) -> None:
    with pytest.raises(ConfigError, match="CATCHER_PATH_PREFIX"):
        load_config(path_prefix=given)


def test_telemetry_topics_carry_the_environments_prefix() -> None:
    topic = "lsst.sal.ESS.temperature"
    assert load_config().telemetry_topic(topic) == topic
    mirrored = load_config(telemetry_topic_prefix="summit.")
    assert mirrored.telemetry_topic(topic) == f"summit.{topic}"
