"""The charts, rendered with the Helm binary `.ci/run` installs in `tools/helm`."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent.parent
HELM = ROOT / "tools" / "helm" / "bin" / "helm"
APP = ROOT / "helm" / "catcher"
SUBCHART = ROOT / "helm" / "sasquatch-catcher"


def helm(*args: str) -> str:
    """Run helm; its output, or a failed assertion with what it said."""
    assert HELM.exists(), "tools/helm/bin/helm is missing: .ci/run installs it"
    result = subprocess.run([str(HELM), *args], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def subchart_topics(**values: str) -> dict[str, dict[str, Any]]:
    """The KafkaTopics the Sasquatch subchart declares, by topic name, with ``values`` set."""
    settings = ",".join(f"{key}={value}" for key, value in values.items())
    text = helm("template", "sc", str(SUBCHART), *(["--set", settings] if settings else []))
    return {
        d["spec"]["topicName"]: d["spec"]
        for d in yaml.safe_load_all(text)
        if d and d["kind"] == "KafkaTopic"
    }
