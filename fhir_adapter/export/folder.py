"""The export folder: pseudonymised Bundles, or Bulk-style NDJSON per resource type, ``README.txt`` and
``manifest.json``, appearing complete or not at all.

Everything is written into a hidden temporary folder beside the target (``.NAME.partial-…``), each file's
sha256 computed as it is written; ``README.txt`` and then ``manifest.json`` come last, and the folder is then
renamed to the target. An export that stops leaves at most that partial folder, never a manifest under the
target's name. A target that exists and holds anything is refused unless ``force`` (it is then replaced whole,
only once the new export is complete).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import textwrap
from collections import Counter, defaultdict
from importlib.resources import files as package_files
from pathlib import Path
from typing import IO, Any

import orjson

from fhir_adapter.errors import ConfigError
from fhir_adapter.export import manifest as manifest_mod
from fhir_adapter.export.deidentify import Pseudonymizer

LAYOUTS = ("bundles", "bulk")
BUNDLES_FILE = "Bundle.ndjson"
README = "README.txt"


def deidentification_text() -> str:
    """The de-identification method, as the README's "Export for sponsors" section gives it (one text, kept
    beside this module: the README holds it verbatim and a test keeps the two equal)."""
    return package_files("fhir_adapter.export").joinpath("deidentification.txt").read_text(encoding="utf-8")


def bulk_resources(bundle: dict[str, Any]) -> list[dict[str, Any]]:
    """A Bundle's resources as Bulk NDJSON holds them: each with the id of its entry's ``urn:uuid:`` fullUrl,
    and a reference to another entry's fullUrl (Provenance.target) written as ``Type/id``."""
    entries = bundle.get("entry") or []
    ids = {e["fullUrl"]: e["fullUrl"].removeprefix("urn:uuid:") for e in entries}
    local = {url: f"{e['resource']['resourceType']}/{ids[url]}" for url, e in zip(ids, entries, strict=True)}

    def resolve(node: Any) -> Any:
        if isinstance(node, dict):
            return {k: (local.get(v, v) if k == "reference" and isinstance(v, str) else resolve(v))
                    for k, v in node.items()}
        if isinstance(node, list):
            return [resolve(v) for v in node]
        return node

    out = []
    for e in entries:
        r = resolve(e["resource"])
        out.append({"resourceType": r["resourceType"], "id": ids[e["fullUrl"]],
                    **{k: v for k, v in r.items() if k != "resourceType"}})
    return out


class _File:
    """One NDJSON file being written, its sha256 and line count kept as it goes."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.f: IO[bytes] = open(path, "xb")  # noqa: SIM115 - closed by close()
        self.sha = hashlib.sha256()
        self.lines = 0
        self.bytes = 0

    def write(self, obj: Any) -> None:
        data = orjson.dumps(obj) + b"\n"
        self.f.write(data)
        self.sha.update(data)
        self.lines += 1
        self.bytes += len(data)

    def close(self) -> dict[str, Any]:
        self.f.flush()
        os.fsync(self.f.fileno())
        self.f.close()
        return {"sha256": self.sha.hexdigest(), "bytes": self.bytes, "lines": self.lines}


class ExportFolder:
    """``with ExportFolder(out, layout, force) as folder: folder.add(...); folder.finish(...)``: the target
    appears, complete, at ``finish``; leaving the block without it (an error, an interrupt) removes the partial
    folder."""

    def __init__(self, out: Path, layout: str = "bundles", *, force: bool = False) -> None:
        if layout not in LAYOUTS:
            raise ConfigError(f"layout {layout!r} is not one of {', '.join(LAYOUTS)}")
        self.out = Path(out)
        self.layout = layout
        self.force = force
        self._check_target()
        self.tmp: Path | None = None
        self._files: dict[str, _File] = {}
        self.results: defaultdict[str, Counter[str]] = defaultdict(Counter)
        self.resources: Counter[str] = Counter()
        self.studies: defaultdict[str, set[str]] = defaultdict(set)

    def _check_target(self) -> bool:
        """Whether the target holds something to replace; ``ConfigError`` when it may not be replaced."""
        if self.out.is_symlink() or (self.out.exists() and not self.out.is_dir()):
            raise ConfigError(f"--out {self.out}: exists and is not a folder; the export is a folder")
        if self.out.is_dir() and any(self.out.iterdir()):
            if not self.force:
                raise ConfigError(f"--out {self.out}: the folder is not empty; give an empty or new folder, or "
                                  f"--force to replace it once the new export is complete")
            return True
        return False

    def __enter__(self) -> ExportFolder:
        self.out.parent.mkdir(parents=True, exist_ok=True)
        self.tmp = Path(tempfile.mkdtemp(prefix=f".{self.out.name}.partial-", dir=self.out.parent))
        if self.layout == "bundles":
            self._file(BUNDLES_FILE)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.tmp is not None:  # not finished
            for f in self._files.values():
                f.f.close()
            shutil.rmtree(self.tmp, ignore_errors=True)
            self.tmp = None

    def _file(self, name: str) -> _File:
        f = self._files.get(name)
        if f is None:
            assert self.tmp is not None
            f = self._files[name] = _File(self.tmp / name)
        return f

    def add(self, bundle: dict[str, Any], kind: str, status: str, study: str) -> None:
        """One result's Bundle, counted under its kind (screening, response) and status."""
        if self.layout == "bundles":
            self._files[BUNDLES_FILE].write(bundle)
            for e in bundle["entry"]:
                self.resources[e["resource"]["resourceType"]] += 1
        else:
            for r in bulk_resources(bundle):
                self._file(f"{r['resourceType']}.ndjson").write(r)
                self.resources[r["resourceType"]] += 1
        self.results[kind][status] += 1
        self.studies[study].add(kind)

    def finish(self, pseudonymizer: Pseudonymizer, selection: dict[str, Any],
               not_exported: dict[str, int]) -> dict[str, Any]:
        """Close the data files, write README.txt and, last, manifest.json, and put the folder in place.
        Returns the manifest."""
        assert self.tmp is not None
        files = {name: f.close() for name, f in sorted(self._files.items())}
        self._files.clear()
        kinds = {"bundles": "one pseudonymised FHIR Bundle (type collection) per result, one per line",
                 "bulk": "FHIR Bulk Data NDJSON: one resource per line, one resource type per file"}[self.layout]
        readme = self.tmp / README
        readme.write_text(_readme(kinds, pseudonymizer), encoding="utf-8")
        files[README] = {"sha256": manifest_mod.sha256_file(readme), "bytes": readme.stat().st_size}
        doc = manifest_mod.build(
            layout=self.layout, files=files, results={k: dict(sorted(v.items())) for k, v in self.results.items()},
            resources=dict(self.resources), not_exported=not_exported, selection=selection,
            pseudonymizer=pseudonymizer, studies=manifest_mod.study_files(self.studies))
        part = self.tmp / f".{manifest_mod.MANIFEST}.part"
        with open(part, "xb") as f:
            f.write(orjson.dumps(doc, option=orjson.OPT_INDENT_2) + b"\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(part, self.tmp / manifest_mod.MANIFEST)
        self._put_in_place()
        return doc

    def _put_in_place(self) -> None:
        assert self.tmp is not None
        old = None
        if self._check_target():  # a non-empty target, with --force: set aside, replaced, then removed
            old = Path(tempfile.mkdtemp(prefix=f".{self.out.name}.old-", dir=self.out.parent))
            os.replace(self.out, old / "export")
        elif self.out.is_dir():
            self.out.rmdir()  # empty
        os.replace(self.tmp, self.out)
        self.tmp = None
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)


def _readme(kinds: str, p: Pseudonymizer) -> str:
    if p.dates == "shift":
        dates = f"every date moved by the patient's own offset, 1 to {p.max_shift_days} days back or forward"
    else:
        dates = "real dates (a limited data set, under a data use agreement)"
    text = "removed" if p.free_text == "drop" else "kept, de-identified as below"
    paragraphs = [
        "Pseudonymised FHIR R4 data from fhir-adapter for a study sponsor",
        f"Files: {kinds}. manifest.json lists every file with its sha256 (check them with sha256sum), the counts "
        "of results and resources, the de-identification settings and the fingerprint of the hospital's pseudonym "
        "key. A folder without manifest.json is incomplete.",
        f"This export: {dates}; free text {text}; key fingerprint {p.fingerprint()}.",
        "Only the hospital, which keeps the key, can find the patient behind a pseudonym: ask it, giving the "
        "Patient pseudonym and this export's key fingerprint.",
        "How the data was de-identified:"]
    wrapped = (textwrap.fill(t, 100, break_on_hyphens=False) for t in paragraphs)
    return "\n\n".join(wrapped) + "\n\n" + deidentification_text()
