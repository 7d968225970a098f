"""Where the data shipped beside the code lives: ``mappings/``, ``profiles/`` and the sample population.

In a source checkout (editable install) they are the top-level folders of the repository; in a wheel they
are copied into ``fhir_adapter/_data/``.
"""

from __future__ import annotations

from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent


def data_dir(name: str) -> Path:
    """The folder ``name`` ("mappings" or "profiles"), wherever this installation keeps it."""
    for candidate in (_PACKAGE / "_data" / name, _PACKAGE.parent / name):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(f"data folder {name!r} not found beside the fhir_adapter package")


def sample_dir() -> Path:
    """The built-in synthetic sample population (Bulk Data NDJSON, one file per resource type)."""
    return _PACKAGE / "sample" / "data"
