"""``manifest.json`` of a sponsor export: what the folder holds and how it was made, so a sponsor can check it
and the hospital can tell which key made it.

It holds the files' sha256, the counts of results (per kind and status) and resources (per type), the key's
fingerprint (``Pseudonymizer.fingerprint``: never the key), the adapter's version, the sha256 of the study files
the results name, and the de-identification method and settings with the date-shift range. It holds no clock
time: an export time beside shifted dates would give the offsets away. It is written last: an export folder
without one is incomplete.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import orjson

from fhir_adapter import __version__
from fhir_adapter.errors import ConfigError
from fhir_adapter.export.deidentify import FINGERPRINT_LABEL, Pseudonymizer

MANIFEST = "manifest.json"
FORMAT = "fhir-adapter sponsor export"
FORMAT_VERSION = 1
RESPONSE_FILES = ("response.json", "tis-2016-acr-eular.json")  # what a response result was scored by


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def study_files(kinds_by_study: dict[str, set[str]]) -> dict[str, dict[str, str]]:
    """The sha256 of each study file the exported results were made by, as this installation has them: the
    study definition for a screening result, the response settings and TIS rules for a response result."""
    from fhir_adapter.studies.definition import find_study, studies_dir

    paths: list[Path] = []
    for study, kinds in sorted(kinds_by_study.items()):
        if "screening" in kinds:
            paths.append(find_study(study))
        if "response" in kinds:
            paths += [studies_dir() / name for name in RESPONSE_FILES]
    return {f"studies/{p.name}": {"sha256": sha256_file(p)} for p in dict.fromkeys(paths)}


def deidentification(p: Pseudonymizer) -> dict[str, Any]:
    """The method and settings, in words a sponsor's data manager can check against the README."""
    shift = p.dates == "shift"
    return {
        "pseudonyms": "HMAC-SHA256 of 'Type/id' under the hospital's key, first 32 hex digits",
        "dates": p.dates,
        "date_shift": ({"method": "one offset per patient, derived from the key, never 0",
                        "range_days": [-p.max_shift_days, p.max_shift_days]} if shift else None),
        "free_text": p.free_text,
        "key_fingerprint": p.fingerprint(),
        "key_fingerprint_method": f"HMAC-SHA256 of the text {FINGERPRINT_LABEL!r} under the key, first 16 hex digits",
    }


def build(*, layout: str, files: dict[str, dict[str, Any]], results: dict[str, dict[str, int]],
          resources: dict[str, int], not_exported: dict[str, int], selection: dict[str, Any],
          pseudonymizer: Pseudonymizer, studies: dict[str, dict[str, str]]) -> dict[str, Any]:
    return {
        "format": FORMAT, "format_version": FORMAT_VERSION,
        "adapter": {"name": "fhir-adapter", "version": __version__},
        "layout": layout,
        "selection": selection,
        "counts": {"results": results, "bundles": sum(sum(v.values()) for v in results.values()),
                   "resources": dict(sorted(resources.items())), "not_exported": not_exported},
        "files": files,
        "deidentification": deidentification(pseudonymizer),
        "studies": studies,
    }


def read(path: Path) -> dict[str, Any]:
    """A manifest from its file or its export folder; ``ConfigError`` naming the file when it cannot be read."""
    path = Path(path)
    if path.is_dir():
        path = path / MANIFEST
    try:
        doc = orjson.loads(path.read_bytes())
    except OSError as exc:
        raise ConfigError(f"manifest {path}: {exc.strerror} (an export folder without one is incomplete)") from None
    except orjson.JSONDecodeError as exc:
        raise ConfigError(f"manifest {path}: not JSON ({exc})") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise ConfigError(f"manifest {path}: not the manifest of a fhir-adapter sponsor export")
    return doc


def check_key(manifest: dict[str, Any], pseudonymizer: Pseudonymizer, where: str) -> None:
    """Raise ``ConfigError`` when the key is not the one that made the export: its fingerprint differs."""
    wanted = (manifest.get("deidentification") or {}).get("key_fingerprint")
    got = pseudonymizer.fingerprint()
    if wanted != got:
        raise ConfigError(f"{where}: the key's fingerprint is {got} but the export was made with the key of "
                          f"fingerprint {wanted}: wrong key, nothing looked up")
