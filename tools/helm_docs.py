"""Write each chart's README.md values table from the ``# --`` comments of values.yaml.

    python tools/helm_docs.py          # write helm/*/README.md
    python tools/helm_docs.py --check  # fail when a README is stale (the tests run this)

The format follows helm-docs with Phalanx's template (description, homepage line, sources
section, values): every key documented by a ``# --`` comment (continued on the
following ``#`` lines) is a row; ``# @default --`` replaces the shown default. A mapping
with a comment is one row; one without is documented key by key.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
_KEY = re.compile(r"^(\s*)([A-Za-z0-9_.-]+):(.*)$")


def _comments(lines: list[str]) -> dict[str, tuple[str, str | None]]:
    """Key path → (description, @default text) from the comments above each key."""
    found: dict[str, tuple[str, str | None]] = {}
    stack: list[tuple[int, str]] = []
    description: list[str] = []
    default: str | None = None
    mode = ""
    for line in lines:
        stripped = line.strip()
        if stripped.startswith("# --"):
            description, default, mode = [stripped[4:].strip()], None, "description"
            continue
        if stripped.startswith("# @default --"):
            default, mode = stripped[len("# @default --") :].strip(), "default"
            continue
        if stripped.startswith("#"):
            if mode == "description":
                description.append(stripped[1:].strip())
            continue
        match = _KEY.match(line)
        if not match or stripped.startswith("-"):
            if not stripped:
                continue
            description, default, mode = [], None, ""
            continue
        indent = len(match.group(1))
        while stack and stack[-1][0] >= indent:
            stack.pop()
        path = ".".join([name for _, name in stack] + [match.group(2)])
        if description:
            found[path] = (" ".join(description).strip(), default)
        description, default, mode = [], None, ""
        stack.append((indent, match.group(2)))
    return found


def _type(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "float"
    if isinstance(value, list):
        return "list"
    if isinstance(value, dict):
        return "object"
    return "string"


def _rows(
    values: dict[str, Any], docs: dict[str, tuple[str, str | None]], prefix: str = ""
) -> list[str]:
    rows = []
    for key, value in values.items():
        path = f"{prefix}{key}"
        if path in docs:
            description, default = docs[path]
            shown = default if default is not None else f"`{json.dumps(value)}`"
            rows.append(f"| {path} | {_type(value)} | {shown} | {description} |")
        elif isinstance(value, dict):
            rows.extend(_rows(value, docs, f"{path}."))
    return rows


def render(chart: Path) -> str:
    """The README of one chart."""
    text = (chart / "values.yaml").read_text()
    values = yaml.safe_load(text) or {}
    meta = yaml.safe_load((chart / "Chart.yaml").read_text())
    rows = sorted(_rows(values, _comments(text.splitlines())))
    home = [f"**Homepage:** <{meta['home']}>", ""] if meta.get("home") else []
    sources = meta.get("sources") or []
    source_section = ["## Source Code", "", *(f"* <{url}>" for url in sources), ""]
    return "\n".join(
        [
            f"# {meta['name']}",
            "",
            meta["description"],
            "",
            *home,
            *(source_section if sources else []),
            "## Values",
            "",
            "| Key | Type | Default | Description |",
            "|-----|------|---------|-------------|",
            *rows,
            "",
        ]
    )


def undocumented(chart: Path) -> list[str]:
    """Leaf keys of values.yaml without a ``# --`` comment (on them or a parent)."""
    text = (chart / "values.yaml").read_text()
    docs = _comments(text.splitlines())

    def walk(value: Any, path: str) -> list[str]:
        if path in docs:
            return []
        if isinstance(value, dict) and value:
            return [m for k, v in value.items() for m in walk(v, f"{path}.{k}" if path else k)]
        return [path]

    return walk(yaml.safe_load(text) or {}, "")


def main() -> int:
    """Write the READMEs, or with ``--check`` say which are stale; returns the exit code."""
    check = "--check" in sys.argv[1:]
    stale = []
    for chart in sorted((ROOT / "helm").iterdir()):
        if not (chart / "Chart.yaml").exists():
            continue
        readme = chart / "README.md"
        text = render(chart)
        if check:
            if not readme.exists() or readme.read_text() != text:
                stale.append(str(readme.relative_to(ROOT)))
        else:
            readme.write_text(text)
    if stale:
        print("Stale chart READMEs (run python tools/helm_docs.py):", *stale, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
