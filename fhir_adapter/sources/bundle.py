"""FHIR Bundle files (searchset, collection, transaction, batch, document...), one file or a folder of them.

Entries are streamed with ijson, never loading a file whole. ``records`` reads every file twice:

1. **Aliases**: each entry's ``fullUrl`` (``urn:uuid:...`` or absolute) mapped to ``Type/id`` (small strings
   only). A resource without an id (transaction POST entries) gets one: the uuid of its ``urn:uuid``
   fullUrl, the id in an absolute fullUrl, else ``bundle<file>-entry<index>``.
2. **Group**: each entry goes to its patient (``patient_of`` through the aliases), Medications to a shared
   index; then one ``PatientRecord`` per patient. Groups stay in memory while the files total less than
   ``bucket_bytes``; above that they spill to temporary NDJSON buckets by a hash of the patient id, and one
   bucket at a time is held in memory.

Messages name the file and the entry's 0-based index, as in ``Bundle.entry[12]``: "bundle.json entry 12".
"""

from __future__ import annotations

import gzip
import json
import logging
import re
import shutil
import tempfile
from collections.abc import Collection, Iterator, Mapping
from pathlib import Path
from typing import IO, Any
from zlib import crc32

import ijson
import orjson

from fhir_adapter.errors import SourceError
from fhir_adapter.record.assemble import assemble_record, patient_of
from fhir_adapter.record.patient_record import PatientRecord
from fhir_adapter.record.references import local_id, parse_reference, reference_of
from fhir_adapter.record.resource_types import rules
from fhir_adapter.sources.base import Source
from fhir_adapter.sources.check import problem

log = logging.getLogger("fhir_adapter.sources")

SUFFIXES = (".json", ".json.gz")
_ID = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")
Entry = tuple[dict[str, Any], str]


def bundle_files(path: Path) -> list[Path]:
    """The Bundle files of a folder (``*.json``, ``*.json.gz``, subfolders too) in name order; or ``[path]``."""
    if path.is_file():
        return [path]
    return sorted(p for p in path.rglob("*") if p.is_file() and p.name.endswith(SUFFIXES))


class _NotReadable(Exception):
    """A file (or the rest of it) cannot be read; ``where`` and the message say where and why."""

    def __init__(self, where: str, reason: str, kind: str) -> None:
        super().__init__(reason)
        self.where, self.reason, self.kind = where, reason, kind


class BundleSource(Source):
    """A FHIR Bundle JSON file, or a folder of them (each file one Bundle)."""

    def __init__(self, path: str | Path, name: str | None = None, *, bucket_bytes: int = 48 << 20,
                 workdir: str | Path | None = None, **options: Any) -> None:
        super().__init__()
        self.path = Path(path)
        if not self.path.exists():
            raise SourceError(f"{self.path}: no such file or folder")
        self.files = bundle_files(self.path)
        if not self.files:
            raise SourceError(f"{self.path}: no Bundle files (*.json, *.json.gz) found")
        self.name = name or str(self.path)
        self.bucket_bytes = bucket_bytes
        self.workdir = Path(workdir) if workdir else None
        if options:
            log.debug("BundleSource ignores options %s", sorted(options))

    # -- reading entries -------------------------------------------------------------------------------

    def _label(self, f: Path) -> str:
        return f.name if self.path.is_file() else str(f.relative_to(self.path))

    def _entries(self, fileno: int, *, report: bool = True) -> Iterator[tuple[str, int, Any]]:
        """``(where, index, entry)`` for every entry of one file. A file that is not a Bundle, or not JSON
        from some point on, is reported (when ``report``); the entries before that point are kept."""
        f = self.files[fileno]
        label = self._label(f)
        skip = self.report.skip if report else _ignore
        n = 0
        with _open(f) as fh:
            try:
                _check_bundle(fh, label)
                fh.seek(0)
                for entry in ijson.items(fh, "entry.item", use_float=True):
                    yield f"{label} entry {n}", n, entry
                    n += 1
            except _NotReadable as e:
                skip(e.where, e.reason, kind=e.kind)
            except (ijson.JSONError, ValueError, EOFError, OSError) as e:  # gzip faults are OSError/EOFError
                near = f"near byte {fh.tell():,}" if not fh.closed else "at the end"
                after = f"after entry {n - 1}, " if n else ""
                reason = " ".join(str(e).split())
                skip(label, f"not valid JSON {after}{near}: {reason}; the rest of the file is not read",
                     kind="not JSON")

    def _resources(self, fileno: int, *, file_errors: bool = True) -> Iterator[Entry]:
        """The readable resources of one file, each with an id, and where they are. Entries without one
        are reported; files that cannot be read are reported when ``file_errors``."""
        for where, index, entry in self._entries(fileno, report=file_errors):
            resource = self._resource(entry, where)
            if resource is not None:
                _give_id(resource, entry.get("fullUrl"), fileno, index)
                yield resource, where

    def _resource(self, entry: Any, where: str) -> dict[str, Any] | None:
        """The entry's resource, or None (reported) when it has no readable one."""
        skip = self.report.skip
        if not isinstance(entry, dict):
            skip(where, "Bundle entry is not a JSON object", kind="not a FHIR resource")
            return None
        request = entry.get("request")
        if isinstance(request, dict) and request.get("method") == "DELETE":
            skip(where, f"DELETE {request.get('url', '')} entry carries no resource", kind="DELETE entry")
            return None
        resource = entry.get("resource")
        if resource is None:
            skip(where, "Bundle entry without a resource", kind="entry without resource")
            return None
        bad = problem(resource)
        if bad:
            skip(where, bad[1], kind=bad[0])
            return None
        return resource

    def resources(self, types: Collection[str] | None = None) -> Iterator[Entry]:
        wanted = set(types) if types else None
        for fileno in range(len(self.files)):
            for resource, where in self._resources(fileno):
                if wanted is None or resource["resourceType"] in wanted:
                    yield resource, where

    # -- records ---------------------------------------------------------------------------------------

    def aliases(self) -> dict[str, str]:
        """Pass 1: entries' fullUrls mapped to ``Type/id`` (``urn:`` ones, and absolute ones whose last segments
        are not the resource's type and id). Reports files that cannot be read."""
        aliases: dict[str, str] = {}
        for fileno in range(len(self.files)):
            for _where, index, entry in self._entries(fileno):
                if not isinstance(entry, dict):
                    continue
                url, resource = entry.get("fullUrl"), entry.get("resource")
                if not isinstance(url, str) or not isinstance(resource, dict):
                    continue
                rtype = resource.get("resourceType")
                if isinstance(rtype, str) and rtype:
                    rid = resource.get("id")
                    rid = rid if isinstance(rid, str) else _synthetic_id(url, rtype, fileno, index)
                    target = f"{rtype}/{rid}"
                    if parse_reference(url) != target:  # absolute URLs that say Type/id need no alias
                        aliases.setdefault(url, target)
        return aliases

    def records(self, patients: Collection[str] | None = None) -> Iterator[PatientRecord]:
        aliases = self.aliases()
        wanted = set(patients) if patients is not None else None
        shared: dict[str, dict[str, Any]] = {}
        groups = _Groups(self._buckets(), self.workdir)
        try:
            for fileno in range(len(self.files)):
                for resource, where in self._resources(fileno, file_errors=False):
                    pid = self._place(resource, where, aliases, shared)
                    if pid is not None and (wanted is None or pid in wanted):
                        groups.add(pid, resource, where)
            for pid, items in groups:
                record = assemble_record(pid, items, self.report, shared=shared, aliases=aliases,
                                         source=self.name)
                if record is not None:
                    yield record
        finally:
            groups.close()

    def _buckets(self) -> int:
        total = sum(f.stat().st_size * (6 if f.name.endswith(".gz") else 1) for f in self.files)
        return max(1, -(-total // self.bucket_bytes))

    def _place(self, resource: dict[str, Any], where: str, aliases: Mapping[str, str],
               shared: dict[str, dict[str, Any]]) -> str | None:
        """The patient a resource goes to; None when it is shared, skipped or belongs to no patient."""
        r = rules()
        rtype = resource["resourceType"]
        if rtype == "Patient":
            return resource["id"]
        if rtype in r.clinical:
            return self._patient(resource, where, aliases)
        key = local_id(resource)
        if rtype in r.shared:
            if key in shared:
                self.report.skip(where, f"duplicate id {key}; the first one is used", key, kind="duplicate id")
            else:
                shared[key] = resource
                self.report.count_read(rtype)
        elif rtype == "Bundle":
            self.report.skip(where, "a Bundle inside a Bundle is not read", key, kind="nested Bundle")
        else:
            self.report.skip(where, f"{rtype} is not used by any criterion", key,
                             kind=f"{rtype} not used by any criterion", quiet=True)
        return None

    def _patient(self, resource: dict[str, Any], where: str, aliases: Mapping[str, str]) -> str | None:
        """The Patient id of a clinical resource, or None (reported) when it names no Patient."""
        fields = rules().clinical[resource["resourceType"]]
        found = next(((f, ref) for f in fields if (ref := reference_of(resource.get(f)))), None)
        key = local_id(resource)
        if found is None:
            self.report.skip(where, f"no {'/'.join(fields)} reference to a Patient", key,
                             kind="no patient reference")
            return None
        field, ref = found
        target = aliases.get(ref)
        # only the one alias needed: patient_of copies the mapping it is given
        pid = patient_of(resource, {ref: target} if target else None)
        if pid is not None:
            return pid
        target = target or parse_reference(ref)
        if target is None and ref.startswith("urn:"):
            self.report.skip(where, f"{field} {ref} is the fullUrl of no entry in the source", key,
                             kind="subject Patient not in the source")
        else:
            what = f"points at {target}" if target else "is not a reference to a resource"
            self.report.skip(where, f"{field} {ref!r} {what}, not a Patient", key, kind="subject is not a Patient")
        return None


def _ignore(*_args: Any, **_kwargs: Any) -> None:
    """A ``report.skip`` that counts nothing: pass 2 meets again the unreadable files pass 1 reported."""


def _open(f: Path) -> IO[bytes]:
    return gzip.open(f, "rb") if f.name.endswith(".gz") else open(f, "rb")


def _check_bundle(fh: IO[bytes], label: str) -> None:
    """Raise ``_NotReadable`` unless the top level is a JSON object whose resourceType is Bundle.

    Reads only up to the top-level ``resourceType`` (the first key, in practice).
    """
    events = ijson.parse(fh, use_float=True)
    first = next(events, None)
    if first is None or first[1] != "start_map":
        got = "empty" if first is None else f"a JSON {first[1].replace('start_', '')}"
        raise _NotReadable(label, f"the file is {got}, not a FHIR Bundle; not read", "not a Bundle")
    for prefix, event, value in events:
        if prefix == "resourceType" and event == "string":
            if value == "Bundle":
                return
            raise _NotReadable(label, f"resourceType {value!r} at the top level, not a Bundle; not read",
                               "not a Bundle")
    raise _NotReadable(label, "JSON object without resourceType at the top level, not a Bundle; not read",
                       "not a Bundle")


def _synthetic_id(full_url: Any, rtype: str, fileno: int, index: int) -> str:
    """An id for a resource that has none: from its fullUrl when possible, else from its place."""
    if isinstance(full_url, str):
        for prefix in ("urn:uuid:", "urn:oid:"):
            if full_url.startswith(prefix) and _ID.match(full_url[len(prefix):]):
                return full_url[len(prefix):]
        target = parse_reference(full_url)
        if target and target.partition("/")[0] == rtype:
            return target.partition("/")[2]
    return f"bundle{fileno}-entry{index}"


def _give_id(resource: dict[str, Any], full_url: Any, fileno: int, index: int) -> None:
    if not isinstance(resource.get("id"), str):
        resource["id"] = _synthetic_id(full_url, resource["resourceType"], fileno, index)


class _Groups:
    """Entries grouped by patient id: in memory with one bucket, else in temporary NDJSON bucket files."""

    def __init__(self, buckets: int, workdir: Path | None) -> None:
        self.n = buckets
        self.memory: dict[str, list[Entry]] = {}
        self.dir: Path | None = None
        self.files: dict[int, IO[bytes]] = {}
        if buckets > 1:
            if workdir:
                workdir.mkdir(parents=True, exist_ok=True)
            self.dir = Path(tempfile.mkdtemp(prefix="fhir-adapter-bundle-", dir=workdir))

    def add(self, pid: str, resource: dict[str, Any], where: str) -> None:
        if self.dir is None:
            self.memory.setdefault(pid, []).append((resource, where))
            return
        b = crc32(pid.encode()) % self.n
        fh = self.files.get(b)
        if fh is None:
            fh = self.files[b] = open(self.dir / f"b{b:05d}.ndjson", "wb")  # noqa: SIM115 - closed in close()
        try:
            line = orjson.dumps([pid, where, resource])
        except TypeError:  # an integer beyond 64 bits
            line = json.dumps([pid, where, resource]).encode()
        fh.write(line + b"\n")

    def __iter__(self) -> Iterator[tuple[str, list[Entry]]]:
        if self.dir is None:
            for pid in sorted(self.memory):
                yield pid, self.memory.pop(pid)
            return
        for fh in self.files.values():
            fh.close()
        for b in sorted(self.files):
            groups: dict[str, list[Entry]] = {}
            with open(self.dir / f"b{b:05d}.ndjson", "rb") as fh:
                for line in fh:
                    pid, where, resource = _loads(line)
                    groups.setdefault(pid, []).append((resource, where))
            for pid in sorted(groups):
                yield pid, groups.pop(pid)

    def close(self) -> None:
        for fh in self.files.values():
            fh.close()
        if self.dir is not None:
            shutil.rmtree(self.dir, ignore_errors=True)


def _loads(line: bytes) -> Any:
    try:
        return orjson.loads(line)
    except orjson.JSONDecodeError:  # written by json.dumps: an integer beyond 64 bits
        return json.loads(line)
