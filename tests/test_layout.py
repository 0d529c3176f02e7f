"""The test tree mirrors the package, and every directory of it is a package.

Test modules are imported by their package path (``tests.services.alarms.test_engine``),
so two modules may share a name in different folders; a folder without ``__init__.py``
would fall back to the bare name and collide.
"""

from __future__ import annotations

from pathlib import Path

TESTS = Path(__file__).resolve().parent


def test_every_test_folder_is_a_package() -> None:
    folders = {p.parent for p in TESTS.rglob("*.py") if "data" not in p.relative_to(TESTS).parts}
    assert (
        sorted(str(f.relative_to(TESTS)) for f in folders if not (f / "__init__.py").exists())
        == []
    )


def test_unit_tests_of_a_service_sit_where_the_service_does() -> None:
    package = TESTS.parent / "catcher"
    misplaced = [
        str(p.relative_to(TESTS))
        for p in (TESTS / "services").rglob("test_*.py")
        if not (package / p.parent.relative_to(TESTS)).is_dir()
    ]
    assert misplaced == []
