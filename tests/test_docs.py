"""The README documents every setting and command the code has."""

from __future__ import annotations

from pathlib import Path

from catcher.cli import main
from catcher.config import setting_names_all

README = (Path(__file__).resolve().parent.parent / "README.md").read_text()


def test_every_setting_is_documented() -> None:
    missing = [n for n in setting_names_all() if f"| `{n}` |" not in README]
    assert missing == []


def test_every_command_is_documented() -> None:
    commands = [f"catcher {name}" for name in main.commands if name != "rules"]
    commands += [f"catcher rules {name}" for name in main.commands["rules"].commands]  # type: ignore[attr-defined]
    missing = [c for c in commands if f"`{c}" not in README]
    assert missing == []


def test_readme_starts_with_the_two_commands() -> None:
    blocks = README.split("```sh\n")
    assert blocks[1].startswith(
        "python3 -m venv .venv && .venv/bin/pip install -e '.[demo]' && .venv/bin/catcher demo\n"
    )
    assert blocks[2].startswith("bash .ci/run\n")
