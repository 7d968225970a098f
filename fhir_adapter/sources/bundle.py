"""FHIR Bundle files (searchset, collection, transaction, batch, document...), one file or a folder of them.

Entries are streamed with ijson, never loading a file whole. ``records`` reads every file twice:

1. **Scan**: each entry's ``fullUrl`` (``urn:uuid:...`` or absolute) mapped to ``Type/id`` (small strings
   only). A resource without an id (transaction POST entries) gets one: the uuid of its ``urn:uuid``
   fullUrl, the id in an absolute fullUrl, else ``bundle<file>-entry<index>``. Patients' ``link``s (merged
   patients, ``record/merged.py``). And whether each file parses to its end: a file that breaks off midway
   (cut short, an integer past 64 bits, ``NaN``, over ``FHIR_ADAPTER_MAX_BUNDLE_BYTES``) is not read, and the
   patients with entries before the break are not screened at all (``report.patient_not_read``), rather than
   screened on part of their record; the patients of a file are held only while that file is read.
2. **Group**: each entry goes to its patient (``patient_of`` through the aliases), Medications to a shared
   index; then one ``PatientRecord`` per patient. Groups stay in memory while the files total less than
   ``bucket_bytes``; above that they spill to temporary NDJSON buckets by a hash of the (surviving) patient
   id, and one bucket at a time is held in memory. An entry whose resource cannot be read but names its patient
   goes to that patient's record as unreadable.

Messages name the file and the entry's 0-based index, as in ``Bundle.entry[12]``: "bundle.json entry 12".
"""

from __future__ import annotations

import gzip
import json
import logging
import re
import shutil
import tempfile
import zlib
from collections.abc import Collection, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any
from zlib import crc32

import ijson
import orjson

from fhir_adapter.errors import SourceError
from fhir_adapter.record.assemble import assemble_record, patient_of
from fhir_adapter.record.merged import Merges, links_of, resolve
from fhir_adapter.record.merged import groups as merged_groups
from fhir_adapter.record.patient_record import PatientRecord, Unreadable
from fhir_adapter.record.references import local_id, parse_reference, reference_of
from fhir_adapter.record.resource_types import rules
from fhir_adapter.sources import limits
from fhir_adapter.sources.base import Source
from fhir_adapter.sources.check import problem

log = logging.getLogger("fhir_adapter.sources")

SUFFIXES = (".json", ".json.gz")
_ID = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")
Entry = tuple[dict[str, Any], str]
Item = tuple["dict[str, Any] | Unreadable", str]  # a resource, or what could not be read of one, and where


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


class _Broken(_NotReadable):
    """A Bundle that breaks off after its start: what it held beyond the break is lost."""


@dataclass
class _Scan:
    """What pass 1 learns of the files."""

    aliases: dict[str, str] = field(default_factory=dict)
    merges: Merges = field(default_factory=Merges)
    broken: set[int] = field(default_factory=set)  # Bundles that break off: not read in pass 2
    unread: set[int] = field(default_factory=set)  # files that are no Bundle: not read in pass 2
    not_read: dict[str, tuple[str, str]] = field(default_factory=dict)  # patient -> where, why (of a broken file)


class BundleSource(Source):
    """A FHIR Bundle JSON file, or a folder of them (each file one Bundle). Files over ``max_bundle_bytes``
    (default: ``FHIR_ADAPTER_MAX_BUNDLE_BYTES``, 4 GiB, after decompression) are named and not read."""

    def __init__(self, path: str | Path, name: str | None = None, *, bucket_bytes: int = 48 << 20,
                 workdir: str | Path | None = None, max_bundle_bytes: int | None = None, **options: Any) -> None:
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
        self.max_bundle_bytes = max_bundle_bytes or limits.max_bundle_bytes()
        if options:
            log.debug("BundleSource ignores options %s", sorted(options))

    # -- reading entries -------------------------------------------------------------------------------

    def _label(self, f: Path) -> str:
        return f.name if self.path.is_file() else str(f.relative_to(self.path))

    def _entries(self, fileno: int, *, report: bool = True) -> Iterator[tuple[str, int, Any]]:
        """``(where, index, entry)`` for every entry of one file. A file that is not a Bundle, or not JSON
        from some point on, is reported after the entries before that point when ``report``; else
        ``_NotReadable`` (``_Broken`` for a Bundle that breaks off after its start) is raised after them."""
        f = self.files[fileno]
        label = self._label(f)
        try:
            for n, entry in enumerate(self._stream(f, label)):
                yield f"{label} entry {n}", n, entry
        except _NotReadable as e:
            if not report:
                raise
            self.report.skip(e.where, e.reason, kind=e.kind)

    def _stream(self, f: Path, label: str) -> Iterator[Any]:
        """The entries of one file; ``_NotReadable`` when it is no Bundle, ``_Broken`` when it breaks off."""
        limit = self.max_bundle_bytes
        if not f.name.endswith(".gz") and f.stat().st_size > limit:
            raise _Broken(label, f"a file of {f.stat().st_size:,} bytes, over the limit of {limit:,} "
                                 f"({limits.BUNDLE_VARIABLE}); not read", "Bundle over the size limit")
        n = 0
        with _open(f) as fh:
            try:
                _check_bundle(fh, label)
            except (ijson.JSONError, ValueError, EOFError, OSError, zlib.error) as e:
                raise _NotReadable(label, f"not valid JSON: {_first_line(e)}; not read", "not JSON") from e
            fh.seek(0)
            capped = _Capped(fh, limit)
            try:
                for entry in ijson.items(capped, "entry.item", use_float=True):
                    yield entry
                    n += 1
            except _TooBig as e:
                raise _Broken(label, f"over the limit of {limit:,} bytes ({limits.BUNDLE_VARIABLE}) after entry "
                                     f"{n - 1}; the rest of the file is not read", "Bundle over the size limit") from e
            except (ijson.JSONError, ValueError, EOFError, OSError, zlib.error) as e:  # gzip faults too
                near = f"near byte {fh.tell():,}" if not fh.closed else "at the end"
                after = f"after entry {n - 1}, " if n else ""
                raise _Broken(label, f"not valid JSON {after}{near}: {_first_line(e)}; the rest of the file "
                                     "is not read", "not JSON") from e

    def _resource(self, entry: Any, where: str) -> tuple[dict[str, Any] | None, tuple[str, str] | None]:
        """The entry's resource, or None with ``(kind, reason)`` when it has no readable one (not yet counted)."""
        if not isinstance(entry, dict):
            return None, ("not a FHIR resource", "Bundle entry is not a JSON object")
        request = entry.get("request")
        if isinstance(request, dict) and request.get("method") == "DELETE":
            return None, ("DELETE entry", f"DELETE {request.get('url', '')} entry carries no resource")
        resource = entry.get("resource")
        if resource is None:
            return None, ("entry without resource", "Bundle entry without a resource")
        bad = problem(resource)
        if bad:
            return None, bad
        return resource, None

    def resources(self, types: Collection[str] | None = None) -> Iterator[Entry]:
        wanted = set(types) if types else None
        for fileno in range(len(self.files)):
            for where, index, entry in self._entries(fileno):
                resource, bad = self._resource(entry, where)
                if bad is not None:
                    self.report.skip(where, bad[1], kind=bad[0])
                    continue
                assert resource is not None
                _give_id(resource, entry.get("fullUrl"), fileno, index)
                if wanted is None or resource["resourceType"] in wanted:
                    yield resource, where

    # -- records ---------------------------------------------------------------------------------------

    def aliases(self) -> dict[str, str]:
        """Entries' fullUrls mapped to ``Type/id`` (``urn:`` ones, and absolute ones whose last segments are not
        the resource's type and id). Reports files that cannot be read."""
        return self._scan().aliases

    def _scan(self) -> _Scan:
        """Pass 1: aliases, merges, and the files that break off with the patients they held."""
        scan = _Scan()
        links: list[tuple[str, dict[str, Any]]] = []  # where, a Patient with links (resolved once aliases are known)
        for fileno in range(len(self.files)):
            refs: list[str] = []  # whose entries this file holds, as references (kept until the file ends whole)
            try:
                for where, index, entry in self._entries(fileno, report=False):
                    self._scan_entry(entry, fileno, index, where, scan.aliases, refs, links)
            except _Broken as e:
                scan.broken.add(fileno)
                self._broken(e, refs, scan)
            except _NotReadable as e:
                scan.unread.add(fileno)
                self.report.skip(e.where, e.reason, kind=e.kind)
        edges: list[tuple[str, str]] = []
        for where, patient in links:
            found, problems = links_of(patient, scan.aliases)
            edges.extend(found)
            for why in problems:
                self.report.note(where, f"Patient/{patient['id']}: {why}", kind="Patient.link not followed")
        scan.merges = resolve(edges)
        for pid, why in sorted(scan.merges.problems.items()):
            self.report.note("Patient.link", f"Patient/{pid}: {why}", kind="Patient.link not followed")
        # a file's patients, resolved now that every alias is known
        for pid in list(scan.not_read):
            if pid.startswith("ref:"):
                where, why = scan.not_read.pop(pid)
                target = parse_reference(pid[4:], scan.aliases)
                if target and target.startswith("Patient/"):
                    scan.not_read.setdefault(target[8:], (where, why))
        return scan

    @staticmethod
    def _scan_entry(entry: Any, fileno: int, index: int, where: str, aliases: dict[str, str], refs: list[str],
                    links: list[tuple[str, dict[str, Any]]]) -> None:
        if not isinstance(entry, dict):
            return
        url, resource = entry.get("fullUrl"), entry.get("resource")
        if not isinstance(resource, dict):
            return
        rtype = resource.get("resourceType")
        if not isinstance(rtype, str) or not rtype:
            return
        rid = resource.get("id")
        rid = rid if isinstance(rid, str) else _synthetic_id(url, rtype, fileno, index)
        target = f"{rtype}/{rid}"
        if isinstance(url, str) and parse_reference(url) != target:  # absolute URLs that say Type/id need no alias
            aliases.setdefault(url, target)
        if rtype == "Patient":
            refs.append(target)
            if resource.get("link") and problem(resource) is None:
                links.append((where, {**resource, "id": rid}))
        elif rtype in rules().clinical:
            ref = next((r for f in rules().clinical[rtype] if (r := reference_of(resource.get(f)))), None)
            if ref:
                refs.append(ref)

    def _broken(self, e: _Broken, refs: list[str], scan: _Scan) -> None:
        """A file that broke off: the patients with entries before the break are not read (counted once all
        aliases are known); when none can be told, the file itself is counted as a patient not read."""
        patients = set(refs)
        if not patients:
            self.report.patient_not_read(None, e.where, f"{e.reason}; its patients are unknown", kind=e.kind)
            return
        for ref in sorted(patients):
            key = ref[8:] if ref.startswith("Patient/") and "/" not in ref[8:] else f"ref:{ref}"
            scan.not_read.setdefault(key, (e.where, e.reason))

    def records(self, patients: Collection[str] | None = None) -> Iterator[PatientRecord]:
        scan = self._scan()
        aliases, merges = scan.aliases, scan.merges
        wanted = set(patients) if patients is not None else None
        if wanted is not None and merges:
            for survivor, olds in merges.members().items():
                if wanted & {survivor, *olds}:
                    wanted |= {survivor, *olds}
        # a patient merged with one not read is not read either: both are one person
        for survivor, olds in merges.members().items():
            lost = next(((p, scan.not_read[p]) for p in (survivor, *olds) if p in scan.not_read), None)
            if lost is not None:
                for p in (survivor, *olds):
                    scan.not_read.setdefault(p, lost[1])
        for pid, (where, why) in sorted(scan.not_read.items()):
            if wanted is None or pid in wanted:
                self.report.patient_not_read(f"Patient/{pid}", where, f"its Bundle breaks off: {why}",
                                             kind="Bundle file broken off")
        shared: dict[str, dict[str, Any]] = {}
        groups = _Groups(self._buckets(), self.workdir)
        into = merges.into
        try:
            for fileno in range(len(self.files)):
                if fileno in scan.broken or fileno in scan.unread:
                    continue
                for where, index, entry in self._entries(fileno, report=False):
                    item, pid = self._item(entry, fileno, index, where, aliases, shared)
                    if pid is None or (wanted is not None and pid not in wanted):
                        continue
                    if pid in scan.not_read:
                        self.report.ignore("resource of a patient not read")
                        continue
                    groups.add(pid, item, where, into.get(pid, pid))
            for bucket in groups:
                yield from self._assemble(bucket, merges, shared, aliases)
        finally:
            groups.close()

    def _item(self, entry: Any, fileno: int, index: int, where: str, aliases: Mapping[str, str],
              shared: dict[str, dict[str, Any]]) -> tuple[dict[str, Any] | Unreadable, str | None]:
        """What an entry gives its patient, and which patient (None: nobody's; counted here)."""
        resource, bad = self._resource(entry, where)
        if bad is not None:
            self.report.skip(where, bad[1], kind=bad[0])
            raw = entry.get("resource") if isinstance(entry, dict) else None
            pid = _patient_of_unreadable(raw, entry.get("fullUrl") if raw is not None else None, fileno, index,
                                         aliases)
            rtype = raw.get("resourceType") if isinstance(raw, dict) else None
            known = rtype if isinstance(rtype, str) and rtype in rules().r4_types else None
            return Unreadable(known, where, bad[1]), pid
        assert resource is not None
        _give_id(resource, entry.get("fullUrl"), fileno, index)
        return resource, self._place(resource, where, aliases, shared)

    def _assemble(self, bucket: dict[str, list[Item]], merges: Merges, shared: Mapping[str, dict[str, Any]],
                  aliases: Mapping[str, str]) -> Iterator[PatientRecord]:
        """The records of one bucket of groups, merged patients together."""
        def has_patient(pid: str) -> bool:  # readable or not: one that cannot be read still joins its charts
            return any(r.resource_type == "Patient" if isinstance(r, Unreadable) else
                       r["resourceType"] == "Patient" and r["id"] == pid for r, _ in bucket[pid])

        todo, notes = merged_groups(set(bucket), merges, has_patient)
        for _pid, why in notes:
            self.report.note("Patient.link", why, kind="Patient.link not followed")
        for pid, olds in todo:
            items = bucket.pop(pid)
            for old in olds:
                items += bucket.pop(old)
            resources = [(r, w) for r, w in items if isinstance(r, dict)]
            unread = [r for r, _ in items if isinstance(r, Unreadable)]
            record = assemble_record(pid, resources, self.report, shared=shared, aliases=aliases, source=self.name,
                                     unreadable=unread, replaced=olds)
            if record is not None:
                yield record

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
        field_name, ref = found
        target = aliases.get(ref)
        # only the one alias needed: patient_of copies the mapping it is given
        pid = patient_of(resource, {ref: target} if target else None)
        if pid is not None:
            return pid
        target = target or parse_reference(ref)
        if target is None and ref.startswith("urn:"):
            self.report.skip(where, f"{field_name} {ref} is the fullUrl of no entry in the source", key,
                             kind="subject Patient not in the source")
        else:
            what = f"points at {target}" if target else "is not a reference to a resource"
            self.report.skip(where, f"{field_name} {ref!r} {what}, not a Patient", key,
                             kind="subject is not a Patient")
        return None


def _patient_of_unreadable(resource: Any, full_url: Any, fileno: int, index: int,
                           aliases: Mapping[str, str]) -> str | None:
    """The patient of an entry whose resource ``problem`` refused, when it can still be told: a Patient's own id,
    or a clinical resource's subject when that one is sound."""
    if not isinstance(resource, dict):
        return None
    rtype = resource.get("resourceType")
    if not isinstance(rtype, str) or not rtype:
        return None
    if rtype == "Patient":
        rid = resource.get("id")
        if rid is None:
            rid = _synthetic_id(full_url, rtype, fileno, index)
        return rid if isinstance(rid, str) and _ID.match(rid) else None
    if rtype in rules().r4_types and rtype not in rules().clinical:
        return None  # a type that belongs to no patient
    try:
        pid = patient_of(resource, aliases)
    except (TypeError, AttributeError):  # a reference of the wrong type: no patient to tell
        return None
    return pid if pid is not None and _ID.match(pid) else None


class _TooBig(Exception):
    """More of a Bundle file than ``max_bundle_bytes``."""


class _Capped:
    """A binary file that raises ``_TooBig`` once more than ``limit`` bytes were read from it (decompressed)."""

    def __init__(self, fh: IO[bytes], limit: int) -> None:
        self.fh, self.limit, self.n = fh, limit, 0

    def read(self, size: int = -1) -> bytes:
        data = self.fh.read(size if size >= 0 else self.limit + 1 - self.n)
        self.n += len(data)
        if self.n > self.limit:
            raise _TooBig(self.n)
        return data


def _first_line(e: Exception) -> str:
    """An error's message without the excerpt ijson adds below it."""
    text = str(e).strip()
    return text.splitlines()[0].strip() if text else type(e).__name__


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
    """Items grouped by patient id: in memory with one bucket, else in temporary NDJSON bucket files (by the
    surviving patient's id, so that merged patients share a bucket)."""

    def __init__(self, buckets: int, workdir: Path | None) -> None:
        self.n = buckets
        self.memory: dict[str, list[Item]] = {}
        self.dir: Path | None = None
        self.files: dict[int, IO[bytes]] = {}
        if buckets > 1:
            if workdir:
                workdir.mkdir(parents=True, exist_ok=True)
            self.dir = Path(tempfile.mkdtemp(prefix="fhir-adapter-bundle-", dir=workdir))

    def add(self, pid: str, item: dict[str, Any] | Unreadable, where: str, bucket_key: str) -> None:
        if self.dir is None:
            self.memory.setdefault(pid, []).append((item, where))
            return
        b = crc32(bucket_key.encode()) % self.n
        fh = self.files.get(b)
        if fh is None:
            fh = self.files[b] = open(self.dir / f"b{b:05d}.ndjson", "wb")  # noqa: SIM115 - closed in close()
        row = [pid, where, item] if isinstance(item, dict) else [pid, where, None, item.resource_type, item.reason]
        try:
            line = orjson.dumps(row)
        except TypeError:  # an integer beyond 64 bits
            line = json.dumps(row).encode()
        fh.write(line + b"\n")

    def __iter__(self) -> Iterator[dict[str, list[Item]]]:
        """One bucket of groups at a time (pid -> its items)."""
        if self.dir is None:
            yield self.memory
            return
        for fh in self.files.values():
            fh.close()
        for b in sorted(self.files):
            groups: dict[str, list[Item]] = {}
            with open(self.dir / f"b{b:05d}.ndjson", "rb") as fh:
                for line in fh:
                    row = _loads(line)
                    item = row[2] if row[2] is not None else Unreadable(row[3], row[1], row[4])
                    groups.setdefault(row[0], []).append((item, row[1]))
            yield groups

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
