"""The files docs/deploy.md has a Phalanx pull request copy, rendered as Phalanx would."""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any

import yaml

from catcher import topics
from catcher.config import Config
from tests.support.helm import APP, ROOT, helm

KIT = ROOT / "docs" / "phalanx"


def _snippets() -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all((KIT / "snippets.yaml").read_text()) if d]


def _snippet(key: str) -> Any:
    (found,) = [d[key] for d in _snippets() if key in d and not isinstance(d[key], bool)][:1]
    return found


def _environments(tmp_path: Path, enabled: bool) -> list[dict[str, Any]]:
    """Phalanx's environments chart, reduced to Catcher's template and the values it reads."""
    chart = tmp_path / "environments"
    template = chart / "templates" / "applications" / "monitoring" / "catcher.yaml"
    template.parent.mkdir(parents=True)
    shutil.copy(
        KIT / "environments" / "templates" / "applications" / "monitoring" / "catcher.yaml",
        template,
    )
    (chart / "Chart.yaml").write_text(
        "apiVersion: v2\nname: environments\nversion: 1.0.0\ndescription: Environments\n"
    )
    values = {
        "name": "summit",
        "fqdn": "summit-lsp.lsst.codes",
        "vaultPathPrefix": "secret/phalanx/summit",
        "repoUrl": "https://github.com/lsst-sqre/phalanx.git",
        "targetRevision": "main",
        "revisions": {},
        "applications": {"catcher": enabled},
    }
    (chart / "values.yaml").write_text(yaml.safe_dump(values))
    return [d for d in yaml.safe_load_all(helm("template", "e", str(chart))) if d]


def test_the_application_template_makes_the_namespace_and_the_argo_cd_application(
    tmp_path: Path,
) -> None:
    assert _environments(tmp_path / "off", enabled=False) == []
    namespace, application = _environments(tmp_path / "on", enabled=True)
    assert (namespace["kind"], namespace["metadata"]["name"]) == ("Namespace", "catcher")
    spec = application["spec"]
    assert application["kind"] == "Application"
    assert spec["project"] == "monitoring"  # with sasquatch and sasquatch-backpack
    assert spec["destination"]["namespace"] == "catcher"
    assert spec["source"]["path"] == "applications/catcher"
    assert spec["source"]["helm"]["valueFiles"] == ["values.yaml", "values-summit.yaml"]
    given = {p["name"]: p["value"] for p in spec["source"]["helm"]["parameters"]}
    assert given == {
        "global.host": "summit-lsp.lsst.codes",
        "global.vaultSecretsPath": "secret/phalanx/summit",
    }
    declared = yaml.safe_load((APP / "values.yaml").read_text())["global"]
    assert {f"global.{k}" for k in declared} == set(given)  # what the chart reads, no more


def test_the_docs_page_title_is_the_charts_description_within_phalanxs_limit() -> None:
    description = yaml.safe_load((APP / "Chart.yaml").read_text())["description"]
    lines = (KIT / "docs" / "applications" / "catcher" / "index.rst").read_text().splitlines()
    title = f"catcher — {description}"
    assert lines[3] == title and len(title) <= 80
    assert lines[2] == lines[4] == "#" * len(title)
    values_page = (KIT / "docs" / "applications" / "catcher" / "values.md").read_text()
    assert "applications/catcher/README.md" in values_page


def test_the_sasquatch_snippets_enable_the_subchart_as_the_dependency_names_it() -> None:
    (dependency,) = _snippet("dependencies")
    assert dependency == {"name": "catcher", "condition": "catcher.enabled", "version": "1.0.0"}
    subchart = yaml.safe_load((ROOT / "helm" / "sasquatch-catcher" / "Chart.yaml").read_text())
    assert (subchart["name"], subchart["version"]) == (dependency["name"], dependency["version"])
    defaults = [d["catcher"] for d in _snippets() if "catcher" in d]
    assert {"enabled": False} in defaults and any(d.get("enabled") for d in defaults)


def test_telegraf_persists_exactly_catchers_avro_topics() -> None:
    consumers = _snippet("telegraf")["kafkaConsumers"]
    patterns = [re.compile(p) for c in consumers.values() for p in c["topicRegexps"]]
    config = Config()
    avro = {p.stem for p in (ROOT / "avro_schemas").glob("*.avsc")}
    for topic in topics.CATALOGUE:
        name = config.topic_name(topic)
        persisted = any(p.search(name) for p in patterns)
        assert persisted == (not topic.faust and topic.name in avro), name
    assert all(c["database"] == "lsst.catcher" for c in consumers.values())
