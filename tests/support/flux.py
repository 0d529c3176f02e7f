"""InfluxData's Flux language server, run through tools/flux-check, and Flux literal helpers."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
CHECKER = ROOT / "tools" / "flux-check"
STRING = re.compile(r'"(?:[^"\\]|\\.)*"', re.DOTALL)


def check_flux(paths: list[Path]) -> dict[str, list[dict[str, Any]]]:
    """Diagnostics of the Flux language server for each file."""
    node = shutil.which("node")
    assert node, "node is needed to run the Flux language server"
    assert (CHECKER / "node_modules" / "@influxdata" / "flux-lsp-browser").is_dir(), (
        "Install the Flux language server: npm ci --prefix tools/flux-check (.ci/run does)"
    )
    result = subprocess.run(
        [node, str(CHECKER / "check.mjs"), *map(str, paths)],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def errors(diagnostics: list[dict[str, Any]]) -> list[str]:
    """Messages of the error diagnostics (severity 1)."""
    return [d["message"] for d in diagnostics if d.get("severity") == 1]


def decode_literal(literal: str) -> str:
    """What a Flux string literal reads back as."""
    assert literal[0] == literal[-1] == '"'
    body = literal[1:-1]
    out = bytearray()
    index = 0
    simple = {"n": "\n", "r": "\r", "t": "\t", "\\": "\\", '"': '"', "$": "$"}
    while index < len(body):
        char = body[index]
        if char != "\\":
            out += char.encode()
            index += 1
            continue
        code = body[index + 1]
        if code == "x":
            out.append(int(body[index + 2 : index + 4], 16))
            index += 4
        else:
            out += simple[code].encode()
            index += 2
    return out.decode()


def literals(flux: str) -> list[str]:
    """Every string literal of a script, decoded, in order."""
    return [decode_literal(m.group(0)) for m in STRING.finditer(flux)]


def skeleton(flux: str) -> str:
    """The script with every string literal replaced by a placeholder: its structure."""
    return STRING.sub('"S"', flux)
