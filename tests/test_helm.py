"""The Phalanx charts, checked as Phalanx checks them: lint, render, validate, inspect."""

from __future__ import annotations

import json
import shutil
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
from tests.support.helm import APP, HELM, ROOT, SUBCHART
from tests.support.helm import helm as _helm

ENVIRONMENTS = ["summit", "base", "usdfprod"]
CRDS = {
    "KafkaAccess": "kafkaaccess.json",
    "VaultSecret": "vaultsecret.json",
    "KafkaUser": "kafkauser.json",
    "KafkaTopic": "kafkatopic.json",
    "GafaelfawrIngress": "gafaelfawringress.json",
    "GafaelfawrServiceToken": "gafaelfawrservicetoken.json",
}


def _global(environment: str) -> list[str]:
    """What Argo CD sets for an environment."""
    return [
        "--set",
        f"global.host={environment}.example.org,global.vaultSecretsPath=secret/phalanx/{environment}",
    ]


@cache
def rendered(environment: str, *settings: str) -> tuple[dict[str, Any], ...]:
    """The manifests of an environment, with ``KEY=VALUE`` settings on top of its values."""
    values = ["-f", str(APP / "values.yaml"), "-f", str(APP / f"values-{environment}.yaml")]
    sets = [arg for setting in settings for arg in ("--set", setting)]
    text = _helm("template", "catcher", str(APP), *values, *_global(environment), *sets)
    return tuple(d for d in yaml.safe_load_all(text) if d)


def _refused(environment: str, *settings: str) -> str:
    """What helm says when it refuses to render an environment with ``settings``."""
    values = ["-f", str(APP / "values.yaml"), "-f", str(APP / f"values-{environment}.yaml")]
    sets = [arg for setting in settings for arg in ("--set", setting)]
    done = subprocess.run(
        [str(HELM), "template", "catcher", str(APP), *values, *_global(environment), *sets],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode != 0, "rendered"
    return done.stderr


def _settings(documents: tuple[dict[str, Any], ...]) -> dict[str, str]:
    return _one(documents, "ConfigMap", "catcher")["data"]


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


SUMMIT_LOVE = "ws://love-nginx-service.love/love/manager/producers/ws/subscription"
UWS = "http://uws-server.uws/api/v1"
ENDPOINTS: dict[str, dict[str, str | None]] = {
    # What each environment has, per Phalanx's environments/values-<env>.yaml and sasquatch.
    "summit": {
        "CATCHER_EFD_URL": "http://sasquatch-influxdb-enterprise-data.sasquatch:8086",
        "CATCHER_OCPS_URL": UWS,
        "CATCHER_LOVE_URL": SUMMIT_LOVE,
        "CATCHER_NOTEBURST_URL": None,  # not deployed at the summit
        "CATCHER_TIMES_SQUARE_URL": None,
        "CATCHER_TELEMETRY_TOPIC_PREFIX": "",
    },
    "base": {
        "CATCHER_EFD_URL": "http://sasquatch-influxdb.sasquatch:8086",
        "CATCHER_OCPS_URL": UWS,
        "CATCHER_LOVE_URL": SUMMIT_LOVE,
        "CATCHER_NOTEBURST_URL": None,
        "CATCHER_TIMES_SQUARE_URL": None,
        "CATCHER_TELEMETRY_TOPIC_PREFIX": "",
    },
    "usdfprod": {
        "CATCHER_EFD_URL": "http://sasquatch-influxdb-enterprise-active-data.sasquatch:8086",
        "CATCHER_OCPS_URL": None,  # no uws there
        "CATCHER_LOVE_URL": None,  # no LOVE there
        "CATCHER_NOTEBURST_URL": "https://usdf-rsp.slac.stanford.edu",
        "CATCHER_TIMES_SQUARE_URL": "https://usdf-rsp.slac.stanford.edu",
        "CATCHER_TELEMETRY_TOPIC_PREFIX": "summit.",  # MirrorMaker2's summit.lsst.sal.*
    },
}


@pytest.mark.parametrize("environment", ENVIRONMENTS)
def test_each_environment_evaluates_on_the_stream_against_its_own_endpoints(
    environment: str,
) -> None:
    documents = rendered(environment)
    settings = _settings(documents)
    for name, value in ENDPOINTS[environment].items():
        assert settings.get(name) == value, name
    assert settings["CATCHER_DEFAULT_ENGINE"] == "stream"
    assert settings["CATCHER_EFD_USERNAME"] == "efdreader"
    assert settings["CATCHER_MIRROR_ENABLED"] == "false"
    assert "CATCHER_INFLUXDB_URL" not in settings
    assert settings["CATCHER_PATH_PREFIX"] == "/catcher"
    assert settings["CATCHER_API_URL"] == "http://localhost:8080/catcher"  # the CLI in the pod
    ingress = _one(documents, "GafaelfawrIngress")
    path = ingress["template"]["spec"]["rules"][0]["http"]["paths"][0]["path"]
    assert path == settings["CATCHER_PATH_PREFIX"]  # served where the ingress sends it
    assert ingress["config"]["service"] == "catcher"
    assert "delegate" not in ingress["config"] and "baseUrl" not in ingress["config"]
    assert not [d for d in documents if d["kind"] == "Job"]  # no task host: no tasks hook
    tokens = [d for d in documents if d["kind"] == "GafaelfawrServiceToken"]
    local = settings.get("CATCHER_NOTEBURST_URL") or settings.get("CATCHER_TIMES_SQUARE_URL")
    assert len(tokens) == (1 if local else 0)
    (container,) = _one(documents, "Deployment")["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e.get("valueFrom", {}).get("secretKeyRef") for e in container["env"]}
    if local:
        assert env["CATCHER_NOTEBURST_TOKEN"] == {
            "name": tokens[0]["metadata"]["name"],
            "key": "token",
        }
    else:
        assert "CATCHER_NOTEBURST_TOKEN" not in env
    assert env["CATCHER_EFD_PASSWORD"]["key"] == "efd-password"


@pytest.mark.parametrize("environment", ENVIRONMENTS)
def test_only_the_ingress_reaches_the_api_and_only_scrapers_the_metrics(environment: str) -> None:
    policy = _one(rendered(environment), "NetworkPolicy")
    deployment = _one(rendered(environment), "Deployment")
    selector = deployment["spec"]["selector"]["matchLabels"]
    assert policy["spec"]["podSelector"]["matchLabels"] == selector
    assert policy["spec"]["policyTypes"] == ["Ingress"]
    (api,) = policy["spec"]["ingress"]  # no scraper configured: nothing else at all
    assert api["from"] == [
        {
            "namespaceSelector": {},
            "podSelector": {"matchLabels": {"gafaelfawr.lsst.io/ingress": "true"}},
        }
    ]
    assert api["ports"] == [{"protocol": "TCP", "port": 8080}]
    scraped = rendered(
        environment,
        "networkPolicy.metricsFrom[0].namespaceSelector.matchLabels.kubernetes\\.io/metadata\\.name=prometheus",
    )
    _api, metrics = _one(scraped, "NetworkPolicy")["spec"]["ingress"]
    assert metrics["ports"] == [{"protocol": "TCP", "port": 9090}]
    assert metrics["from"] == [
        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "prometheus"}}}
    ]
    settings = _settings(scraped)
    assert settings["CATCHER_METRICS_PORT"] == "9090"  # /metrics only there, not on 8080
    (container,) = _one(scraped, "Deployment")["spec"]["template"]["spec"]["containers"]
    assert {p["containerPort"] for p in container["ports"]} == {8080, 9090}


def test_flux_is_opt_in_and_needs_a_task_host() -> None:
    assert "flux.taskHost must be set" in _refused("summit", "flux.enabled=true")
    assert "no task host would evaluate" in _refused("summit", "config.defaultEngine=flux")
    kapacitor = "http://sasquatch-kapacitor.sasquatch:9092/kapacitor/v1"
    efd = "http://sasquatch-influxdb-enterprise-data.sasquatch:8086"
    assert "flux.influxdbUrl must be set" in _refused(
        "summit", "flux.enabled=true", f"flux.taskHost={kapacitor}"
    )
    documents = rendered(
        "summit", "flux.enabled=true", f"flux.taskHost={kapacitor}", f"flux.influxdbUrl={efd}"
    )
    for document in documents:
        _validate(document)
    settings = _settings(documents)
    assert settings["CATCHER_INFLUXDB_URL"] == kapacitor
    assert settings["CATCHER_MIRROR_ENABLED"] == "true"
    assert settings["CATCHER_MIRROR_URL"] == efd
    assert settings["CATCHER_TASKS_INFLUXDB_URL"] == efd
    job = _one(documents, "Job")
    assert job["metadata"]["annotations"]["argocd.argoproj.io/hook"] == "PostSync"
    labels = job["spec"]["template"]["metadata"]["labels"]
    selector = _one(documents, "Deployment")["spec"]["selector"]["matchLabels"]
    assert not set(selector.items()) <= set(labels.items())  # not one of the worker's pods
    (container,) = job["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e.get("valueFrom", {}).get("secretKeyRef") for e in container["env"]}
    assert env["CATCHER_INFLUXDB_TOKEN"]["key"] == "influxdb-token"
    volumes = {v["name"] for v in job["spec"]["template"]["spec"]["volumes"]}
    assert {m["name"] for m in container["volumeMounts"]} == volumes - {"data"} | {"tmp"}
    hookless = rendered(
        "summit",
        "flux.enabled=true",
        f"flux.taskHost={kapacitor}",
        f"flux.influxdbUrl={efd}",
        "flux.tasksHook=false",
    )
    assert not [d for d in hookless if d["kind"] == "Job"]


def test_a_secret_in_config_extra_is_refused() -> None:
    assert "looks like a secret" in _refused("base", "config.extra.CATCHER_INFLUXDB_TOKEN=abc")
    settings = _settings(rendered("base", "config.extra.CATCHER_BATCH_MAX=100"))
    assert settings["CATCHER_BATCH_MAX"] == "100"


def test_scratch_space_is_memory_backed_and_bounded() -> None:
    pod = _one(rendered("summit"), "Deployment")["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    for name in ("data", "tmp"):
        assert volumes[name]["emptyDir"] == {"medium": "Memory", "sizeLimit": "64Mi"}
    (container,) = pod["containers"]
    assert {m["mountPath"] for m in container["volumeMounts"]} >= {"/tmp", "/var/lib/catcher"}


def _secret_files() -> list[Path]:
    return sorted(APP.glob("secrets*.yaml"))


@pytest.mark.parametrize("path", _secret_files(), ids=lambda p: p.name)
def test_every_secret_is_described_and_its_condition_is_a_value(path: Path) -> None:
    values = yaml.safe_load((APP / "values.yaml").read_text())
    for key, spec in yaml.safe_load(path.read_text()).items():
        assert set(spec) <= {"description", "if", "copy", "generate", "onepassword"}, key
        assert spec["description"].strip(), key
        if "if" in spec:
            found: Any = values
            for part in spec["if"].split("."):
                assert isinstance(found, dict) and part in found, (key, spec["if"])
                found = found[part]
        if "copy" in spec:
            assert set(spec["copy"]) <= {"application", "key", "if"}, key
    environment = path.stem.removeprefix("secrets").removeprefix("-")
    assert not environment or environment in ENVIRONMENTS


def test_the_subchart_renders_as_a_dependency_of_sasquatch(tmp_path: Path) -> None:
    """As Phalanx has it: applications/sasquatch/charts/catcher, enabled by catcher.enabled."""
    parent = tmp_path / "sasquatch"
    (parent / "charts").mkdir(parents=True)
    shutil.copytree(SUBCHART, parent / "charts" / "catcher")
    (parent / "Chart.yaml").write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v2",
                "name": "sasquatch",
                "version": "1.0.0",
                "description": "A minimal Sasquatch parent chart",
                "dependencies": [
                    {"name": "catcher", "condition": "catcher.enabled", "version": "1.0.0"}
                ],
            }
        )
    )
    (parent / "values.yaml").write_text(
        "catcher:\n  # -- Enable the Catcher subchart\n  enabled: false\n"
    )
    assert not [d for d in yaml.safe_load_all(_helm("template", "s", str(parent))) if d]
    on = [
        d
        for d in yaml.safe_load_all(
            _helm("template", "s", str(parent), "--set", "catcher.enabled=true")
        )
        if d
    ]
    kinds = sorted({d["kind"] for d in on})
    assert kinds == ["KafkaTopic", "KafkaUser"]
    assert all(d["metadata"]["labels"]["strimzi.io/cluster"] == "sasquatch" for d in on)
    _helm("lint", "--strict", str(parent), "--set", "catcher.enabled=true")
