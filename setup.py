"""Build hook: carry the top-level flux/ and avro_schemas/ inside the package.

The layout keeps the Flux templates and the Avro schemas at the top of the repository;
every wheel (and so every image) needs them inside ``catcher/_data/``.
"""

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

DATA = {"flux": "*.flux", "avro_schemas": "*.avsc"}


class BuildWithData(build_py):
    """build_py that also copies the data directories into the built package."""

    def run(self) -> None:
        """Build the package, then copy the data files into it."""
        super().run()
        root = Path(__file__).resolve().parent
        for directory, pattern in DATA.items():
            files = sorted((root / directory).glob(pattern))
            if not files:
                raise SystemExit(f"{directory}/ has no {pattern} files to package.")
            target = Path(self.build_lib) / "catcher" / "_data" / directory
            target.mkdir(parents=True, exist_ok=True)
            for path in files:
                shutil.copyfile(path, target / path.name)


setup(cmdclass={"build_py": BuildWithData})
