"""Files the package carries: the Flux templates and the Avro schemas.

They are kept at the top of the source tree (``flux/``, ``avro_schemas/``), and every
installation (wheel, sdist, image) carries a copy inside the package, under
``catcher/_data/`` (``setup.py`` copies them at build time). A source checkout installed in
editable mode reads them from the tree.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from .exceptions import ResourceError

__all__ = ["read_resource"]

ResourceDir = Literal["flux", "avro_schemas"]


def _candidates(directory: ResourceDir) -> list[Path]:
    package = Path(__file__).resolve().parent
    return [package / "_data" / directory, package.parent / directory]


def read_resource(directory: ResourceDir, name: str) -> str:
    """The text of one packaged file; a clear error when the installation lacks it."""
    for base in _candidates(directory):
        path = base / name
        if path.is_file():
            return path.read_text()
    raise ResourceError(
        f"This installation of Catcher has no {directory}/{name}: the package was built"
        " without its data files. Reinstall it from a wheel or sdist built by its setup.py"
        " (pip install .), which copies flux/ and avro_schemas/ into the package."
    )
