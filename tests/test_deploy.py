"""The deployment files stay in step with the code."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from catcher.config import KafkaConnectionSettings, load_config, setting_names_all
from catcher.factory import check_rules_against_config
from catcher.models.rules import RuleSet
from catcher.settings import setting_names

ROOT = Path(__file__).resolve().parent.parent


def test_compose_file_is_valid() -> None:
    compose = shutil.which("docker-compose")
    assert compose, "docker-compose (Debian package) is needed; .ci/run installs it"
    result = subprocess.run(
        [compose, "-f", str(ROOT / "docker-compose.yml"), "config", "-q"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr


def test_compose_configures_catcher_with_real_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    environment = compose["services"]["catcher"]["environment"]
    known = set(setting_names_all())
    rules = RuleSet.from_path(ROOT / "examples" / "rules")
    needed = {
        a.url_env for r in rules.rules.values() for a in r.actions if getattr(a, "url_env", None)
    }
    for key, value in environment.items():
        if key.startswith("CATCHER_"):
            assert key in known | needed, f"{key} is not a Catcher setting"
        monkeypatch.setenv(key, str(value).split(":-")[-1].rstrip("}"))
    monkeypatch.setenv("CATCHER_RULES_PATH", str(ROOT / "examples" / "rules"))
    config = load_config()
    check_rules_against_config(rules, config)
    assert config.kafka.bootstrap_servers == "kafka:9092"
    volume = compose["services"]["catcher"]["volumes"][0]
    assert volume.split(":")[1] == environment["CATCHER_RULES_PATH"]


def test_compose_kafka_ui_reads_as_sasquatch_configures_it() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    ui = compose["services"]["kafka-ui"]["environment"]
    assert ui["KAFKA_CLUSTERS_0_SCHEMAREGISTRY"] == "http://schema-registry:8081"
    assert ui["KAFKA_CLUSTERS_0_DEFAULTVALUESERDE"] == "SchemaRegistry"
    assert ui["KAFKA_CLUSTERS_0_DEFAULTKEYSERDE"] == "String"
    assert ui["KAFKA_CLUSTERS_0_READONLY"] == "true"
    worker = compose["services"]["catcher"]
    port = worker["environment"]["CATCHER_HTTP_PORT"]
    assert any(str(p).endswith(f":{port}") for p in worker["ports"])
    known_kafka = set(setting_names(KafkaConnectionSettings))
    kafka = {k for k in worker["environment"] if k.startswith("KAFKA_")}
    assert kafka <= known_kafka


def test_dockerfile_ships_the_schemas_and_runs_the_worker() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "COPY avro_schemas ./avro_schemas" in dockerfile
    assert 'ENTRYPOINT ["catcher"]' in dockerfile
    assert "USER 1000" in dockerfile
