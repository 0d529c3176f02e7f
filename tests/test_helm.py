"""The Phalanx charts, checked as Phalanx checks them: lint, render, validate, inspect."""

from __future__ import annotations

import json
import subprocess
import sys
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from catcher import topics
from catcher.config import Config, setting_names_all
from tests.support.helm import APP, ROOT, SUBCHART
from tests.support.helm import helm as _helm

ENVIRONMENTS = ["summit", "base", "usdfprod"]
CRDS = {
    "KafkaAccess": "kafkaaccess.json",
    "VaultSecret": "vaultsecret.json",
    "KafkaUser": "kafkauser.json",
    "KafkaTopic": "kafkatopic.json",
    "GafaelfawrIngress": "gafaelfawringress.json",
}


def _global(environment: str) -> list[str]:
    """What Argo CD sets for an environment."""
    return [
        "--set",
        (
            f"global.host={environment}.example.org,"
            f"global.baseUrl=https://{environment}.example.org,"
            f"global.environmentName={environment},"
            f"global.vaultSecretsPath=secret/phalanx/{environment}"
        ),
    ]


@cache
def rendered(environment: str) -> tuple[dict[str, Any], ...]:
    values = ["-f", str(APP / "values.yaml"), "-f", str(APP / f"values-{environment}.yaml")]
    text = _helm("template", "catcher", str(APP), *values, *_global(environment))
    return tuple(d for d in yaml.safe_load_all(text) if d)


def _one(documents: tuple[dict[str, Any], ...], kind: str, name: str = "") -> dict[str, Any]:
    found = [
        d for d in documents if d["kind"] == kind and (not name or d["metadata"]["name"] == name)
    ]
    assert len(found) == 1, [d["metadata"]["name"] for d in found]
    return found[0]


@pytest.mark.parametrize("environment", ENVIRONMENTS)
def test_the_application_chart_lints_strictly(environment: str) -> None:
    values = ["-f", str(APP / "values.yaml"), "-f", str(APP / f"values-{environment}.yaml")]
    _helm("lint", "--strict", str(APP), *values, *_global(environment))


def test_the_sasquatch_subchart_lints_strictly() -> None:
    _helm("lint", "--strict", str(SUBCHART))


def _validate(document: dict[str, Any]) -> None:
    kind = document["kind"]
    if kind in CRDS:
        schema = json.loads((ROOT / "tests" / "data" / "crds" / CRDS[kind]).read_text())
        jsonschema.validate(document, schema)
    else:
        kubernetes_validate.validate(document, "1.30.0", strict=True)


@pytest.mark.parametrize("environment", ENVIRONMENTS)
def test_every_rendered_manifest_is_valid(environment: str) -> None:
    documents = rendered(environment)
    kinds = sorted(d["kind"] for d in documents)
    assert {"Deployment", "ConfigMap", "VaultSecret", "KafkaAccess", "Service"} <= set(kinds)
    for document in documents:
        _validate(document)


def test_the_subchart_renders_valid_users_and_topics() -> None:
    documents = [d for d in yaml.safe_load_all(_helm("template", "sc", str(SUBCHART))) if d]
    for document in documents:
        _validate(document)
    declared = {d["spec"]["topicName"]: d["spec"] for d in documents if d["kind"] == "KafkaTopic"}
    values = yaml.safe_load((SUBCHART / "values.yaml").read_text())
    config = Config(topic_prefix="lsst.catcher", app_id="catcher")
    expected = {
        config.topic_name(t): (t.partitions(values["partitions"]), t.configs())
        for t in topics.CATALOGUE
    }
    found = {name: (spec["partitions"], spec["config"]) for name, spec in declared.items()}
    assert found == expected  # the catalogue, exactly: nothing missing, nothing else
    (user,) = [d for d in documents if d["kind"] == "KafkaUser"]
    acls = {
        (a["resource"]["type"], a["resource"]["name"])
        for a in user["spec"]["authorization"]["acls"]
    }
    assert {("group", "catcher"), ("topic", "lsst.catcher."), ("topic", "catcher-")} <= acls


@pytest.mark.parametrize("environment", ENVIRONMENTS)
def test_the_worker_gets_kafka_access_certificates_probes_and_no_root(environment: str) -> None:
    documents = rendered(environment)
    pod = _one(documents, "Deployment")["spec"]["template"]
    (container,) = pod["spec"]["containers"]
    env = {e["name"]: e for e in container["env"]}
    for name, key in (
        ("KAFKA_BOOTSTRAP_SERVERS", "bootstrapServers"),
        ("KAFKA_SECURITY_PROTOCOL", "securityProtocol"),
    ):
        ref = env[name]["valueFrom"]["secretKeyRef"]
        assert (ref["name"], ref["key"]) == ("catcher-kafka", key)
    access = _one(documents, "KafkaAccess")
    assert access["metadata"]["name"] == "catcher-kafka"  # its secret feeds the variables
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    for variable, sub_path in (
        ("KAFKA_CLUSTER_CA_PATH", "ssl.truststore.crt"),
        ("KAFKA_CLIENT_CERT_PATH", "ssl.keystore.crt"),
        ("KAFKA_CLIENT_KEY_PATH", "ssl.keystore.key"),
    ):
        path = env[variable]["value"]
        assert (mounts[path]["name"], mounts[path]["subPath"]) == ("kafka", sub_path)
    volumes = {v["name"]: v for v in pod["spec"]["volumes"]}
    assert volumes["kafka"]["secret"]["secretName"] == "catcher-kafka"
    assert "emptyDir" in volumes["data"]
    config = _one(documents, "ConfigMap", "catcher")
    config = next(
        d for d in documents if d["kind"] == "ConfigMap" and d["metadata"]["name"] == "catcher"
    )
    assert mounts[config["data"]["CATCHER_DATA_DIR"]]["name"] == "data"
    assert mounts[config["data"]["CATCHER_RULES_PATH"]]["name"] == "rules"
    assert container["livenessProbe"]["httpGet"]["path"] == "/health"
    assert container["readinessProbe"]["httpGet"]["path"] == "/ready"
    assert container["ports"][0]["containerPort"] == int(config["data"]["CATCHER_HTTP_PORT"])
    assert pod["spec"]["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert "checksum/config" in pod["metadata"]["annotations"]


@pytest.mark.parametrize("environment", ENVIRONMENTS)
def test_every_variable_the_worker_gets_is_one_the_code_knows(environment: str) -> None:
    documents = rendered(environment)
    known = set(setting_names_all())
    values = yaml.safe_load((APP / f"values-{environment}.yaml").read_text()) or {}
    webhooks = set(values.get("webhookSecrets") or {})
    config = next(
        d for d in documents if d["kind"] == "ConfigMap" and d["metadata"]["name"] == "catcher"
    )
    (container,) = _one(documents, "Deployment")["spec"]["template"]["spec"]["containers"]
    names = set(config["data"]) | {e["name"] for e in container["env"]}
    assert names - known - webhooks == set()
    secret_keys = set(yaml.safe_load((APP / "secrets.yaml").read_text()))
    referenced = {
        e["valueFrom"]["secretKeyRef"]["key"]
        for e in container["env"]
        if e.get("valueFrom", {}).get("secretKeyRef", {}).get("name") == "catcher"
    }
    assert referenced <= secret_keys  # every Vault key the pod reads is described


def test_the_rules_in_the_chart_are_valid(tmp_path: Path) -> None:
    from catcher.models.rules import RuleSet  # noqa: PLC0415

    documents = rendered("summit")
    rules = _one(documents, "ConfigMap", "catcher-rules")
    for name, text in rules["data"].items():
        (tmp_path / name).write_text(text)
    assert len(RuleSet.from_path(tmp_path)) >= 1


def test_the_chart_readmes_are_current() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "helm_docs.py"), "--check"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    sys.path.insert(0, str(ROOT / "tools"))
    import helm_docs  # noqa: PLC0415

    for chart in (APP, SUBCHART):
        assert helm_docs.undocumented(chart) == [], chart
