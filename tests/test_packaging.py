"""Every installation carries flux/ and avro_schemas/: the wheel, the sdist, the image.

The image is built from the Dockerfile's build context, so the wheel here is built from
exactly the files the Dockerfile copies, in a directory that holds nothing else.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from catcher.exceptions import ResourceError
from catcher.resources import read_resource

ROOT = Path(__file__).resolve().parent.parent

RULES = """
rules:
  - id: packaged-rule
    description: A rule compiled by an installed copy of Catcher.
    condition:
      source: {measurement: lsst.sal.Test.temperature, field: value}
      thresholds: {warning: 1, critical: 2}
"""

CHECK = textwrap.dedent(
    """
    import io, json, sys
    from pathlib import Path
    import catcher, fastavro
    from catcher.avro import load_schema
    from catcher.services.influx.flux import CompileOptions, compile_rule
    from catcher.models.enums import Severity, TriggerSource
    from catcher.models.records import Trigger
    from catcher.models.rules import RuleSet

    rule = RuleSet.from_path(Path(sys.argv[1])).get("packaged-rule")
    flux = compile_rule(rule, CompileOptions("efd/autogen", "catcher/autogen", "t"))
    trigger = Trigger.create("packaged-rule", Severity.WARNING, reason="r",
                             source=TriggerSource.manual)
    buffer = io.BytesIO()
    fastavro.schemaless_writer(buffer, fastavro.parse_schema(load_schema("triggers", "x.y")),
                               trigger.to_avro())
    print(json.dumps({"file": catcher.__file__, "flux": flux, "avro": len(buffer.getvalue())}))
    """
)


def _dockerfile_context() -> list[str]:
    """What the Dockerfile's build stage copies from the repository."""
    copied: list[str] = []
    for line in (ROOT / "Dockerfile").read_text().splitlines():
        match = re.match(r"COPY (?!--from)(.+) \S+$", line)
        if match:
            copied += match.group(1).split()
    return copied


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A wheel and an sdist built from the Dockerfile's context alone."""
    context = tmp_path_factory.mktemp("context")
    for name in _dockerfile_context():
        source = ROOT / name
        (context / name).parent.mkdir(parents=True, exist_ok=True)
        if source.is_dir():
            shutil.copytree(source, context / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(source, context / name)
    out = tmp_path_factory.mktemp("dist")
    subprocess.run(
        [sys.executable, "-m", "build", "--no-isolation", "--outdir", str(out), str(context)],
        check=True,
        capture_output=True,
    )
    return out


def test_the_image_context_is_what_the_package_needs() -> None:
    assert set(_dockerfile_context()) >= {
        "pyproject.toml",
        "setup.py",
        "catcher",
        "flux",
        "avro_schemas",
    }


@pytest.mark.parametrize("kind", ["*.whl", "*.tar.gz"])
def test_an_installed_copy_compiles_rules_and_encodes_records(
    dist: Path, kind: str, tmp_path: Path
) -> None:
    (archive,) = dist.glob(kind)
    target = tmp_path / "site"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            "--target",
            str(target),
            str(archive),
        ],
        check=True,
        capture_output=True,
    )
    assert not list((target / "catcher").glob("flux_templates")), "no symlinks any more"
    page = sorted(p.name for p in (target / "catcher" / "web" / "page").iterdir())
    assert page == ["index.html", "page.css", "page.js"]  # the operator page, served by workers
    rules = tmp_path / "rules.yaml"
    rules.write_text(RULES)
    env = {"PYTHONPATH": str(target), "PATH": "/usr/bin:/bin"}

    def python(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, *args],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )

    result = python("-c", CHECK, str(rules))
    assert result.returncode == 0, result.stderr
    found = json.loads(result.stdout)
    assert found["file"].startswith(str(target))
    assert 'option task = {name: "catcher-packaged-rule"' in found["flux"]
    assert found["avro"] > 0
    cli = python("-m", "catcher", "rules", "compile", str(rules))
    assert cli.returncode == 0, cli.stderr
    assert cli.stdout.startswith("// ---- packaged-rule.flux\n")
    version = python("-m", "catcher", "--version")
    assert version.returncode == 0, version.stderr
    assert version.stdout.split()[-1] == "0.1.0"


def test_an_editable_install_reads_the_tree_from_anywhere(tmp_path: Path) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text(RULES)
    cli = subprocess.run(
        [sys.executable, "-m", "catcher", "rules", "compile", str(rules)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
    )
    assert cli.returncode == 0, cli.stderr
    assert cli.stdout.startswith("// ---- packaged-rule.flux\n")


def test_a_missing_resource_is_a_clear_error() -> None:
    with pytest.raises(ResourceError, match=r"has no flux/nope\.flux"):
        read_resource("flux", "nope.flux")
