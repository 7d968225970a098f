"""Group an interleaved Bulk Data NDJSON population by patient with flat memory, on every core.

Bulk ``$export`` files interleave the patients, so a patient's record is scattered over every file. Two
passes keep memory flat whatever the population size:

1. **Route** (parallel over byte ranges of the files): find each line's patient with a regular expression
   on the raw bytes, without parsing the JSON, and append the line to one of ``B`` bucket files by a hash
   of the patient id. Lines the expression cannot read safely (a ``contained`` resource, a reference with
   nested elements) are parsed instead. Types no criterion uses are counted and dropped here, unparsed, and so
   are, with a ``prefilter``, Observations older than every look-back that reads them (``prefilter.py``; in C
   over whole reads where ``_linescan.c`` was built).
2. **Assemble** (parallel over buckets): read one bucket (about ``bucket_bytes``), group its lines by
   patient, parse them with orjson and build each ``PatientRecord``; the caller's function runs in the
   worker and only its result travels back.

Every line keeps its origin (file and line number) so a message about it names both.
"""

from __future__ import annotations

import gc
import logging
import multiprocessing
import os
import re
import shutil
import tempfile
import time
import zlib
from collections.abc import Callable, Collection, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar
from zlib import crc32

import orjson

from fhir_adapter.errors import SourceError
from fhir_adapter.record.assemble import assemble_record, patient_of
from fhir_adapter.record.merged import Merges, links_of, resolve
from fhir_adapter.record.merged import groups as merged_groups
from fhir_adapter.record.patient_record import IncompleteRecord, PatientRecord, Unreadable
from fhir_adapter.record.references import local_id
from fhir_adapter.record.resource_types import rules
from fhir_adapter.sources.base import Early
from fhir_adapter.sources.check import problem
from fhir_adapter.sources.limits import max_line_bytes
from fhir_adapter.sources.prefilter import ObservationPrefilter
from fhir_adapter.sources.reading import (
    TOO_LONG,
    TOO_LONG_KIND,
    Unit,
    _buffers,
    _units,
    too_long_reason,
    too_long_size,
)
from fhir_adapter.sources.report import ReadReport

log = logging.getLogger("fhir_adapter.sources")
R = TypeVar("R")

_RESOURCE_TYPE = re.compile(rb'^\s*\{\s*"resourceType"\s*:\s*"([A-Za-z]+)"')
# "subject": {"reference": "Patient/123"} with no nested object before "reference"
_PATIENT_REF = re.compile(rb'"(subject|patient)"\s*:\s*\{[^{}]*?"reference"\s*:\s*"([^"\\]*)"')
_PATIENT_IN_REF = re.compile(rb"(?:^|/)Patient/([A-Za-z0-9\-.]{1,64})(?:/_history/[^/]*)?$")
# a Patient's own id when it comes right after its resourceType, as Bulk Data files write it
_PATIENT_ID = re.compile(rb'^\s*\{\s*"resourceType"\s*:\s*"Patient"\s*,\s*"id"\s*:\s*"([A-Za-z0-9\-.]{1,64})"')
_ID = re.compile(rb"^[A-Za-z0-9\-.]{1,64}$")
_UNIT, _ORIGIN = 5, 15  # a bucket line: pid, tab, unit (5 digits), line number (10 digits), the JSON


@dataclass
class RouteResult:
    """What one pass-1 unit found, returned to the main process."""

    unit: int
    lines: int = 0
    shared: dict[str, dict[str, Any]] = field(default_factory=dict)
    problems: list[tuple[int, str, str, str | None]] = field(default_factory=list)  # rel line, kind, reason, res
    quiet: dict[str, int] = field(default_factory=dict)  # kind -> count of quiet skips
    buckets: set[int] = field(default_factory=set)
    links: list[tuple[int, str, str]] = field(default_factory=list)  # rel line, replaced id, surviving id
    link_problems: list[tuple[int, str, str]] = field(default_factory=list)  # rel line, Patient id, why
    fault: tuple[int, str] | None = None  # the unit's file broke off after this many of its lines, and why
    lost: list[tuple[int, str]] = field(default_factory=list)  # rel line, why: Patient lines whose id is unreadable


def _every_line(buf: bytes | memoryview) -> tuple[list[tuple[int, bytes]], int]:
    """Each line of ``buf`` with its index, and their count (``ObservationPrefilter.kept`` with no prefilter)."""
    lines = bytes(buf).split(b"\n")
    return list(enumerate(lines)), len(lines)


class _Router:
    """Pass 1 for one unit: decides each line's patient and appends it to a bucket file."""

    def __init__(self, files: Sequence[Path], units: Sequence[Unit], workdir: Path, buckets: int,
                 patients: frozenset[bytes] | None, prefilter: ObservationPrefilter | None = None,
                 limit: int | None = None) -> None:
        self.files, self.units, self.workdir, self.n = files, units, workdir, buckets
        self.patients = patients
        self.prefilter = prefilter
        self.limit = limit or max_line_bytes()
        r = rules()
        # type -> (compact '"subject":{"reference":"', field name) of the Reference that names the patient
        self.ref_keys = {t.encode(): (b'"%s":{"reference":"' % f[0].encode(), f[0].encode())
                         for t, f in r.clinical.items()}
        self.shared = {t.encode() for t in r.shared}
        self.known = {t.encode() for t in r.r4_types}
        self.file_types = [file_type(f) for f in files]
        self.file_type: str | None = None  # of the unit being routed

    def route(self, index: int) -> RouteResult:
        """Route every line of unit ``index``; the common case (a compact, uncontained clinical resource
        with a ``Patient/id`` reference) is inlined here, everything else goes through ``_patient``."""
        unit = self.units[index]
        out = RouteResult(index)
        self.file_type = self.file_types[unit.file]
        pending: dict[int, list[bytes]] = {}
        sizes: dict[int, int] = {}
        n, wanted, ref_keys, slow = self.n, self.patients, self.ref_keys, self._patient
        kept = self.prefilter.kept if self.prefilter is not None else _every_line
        base = skipped = 0
        buffers = _buffers(self.files[unit.file], unit, self.limit)
        while True:
            try:
                buf = next(buffers, None)
            except (OSError, EOFError, zlib.error) as e:  # a gzip file cut short, a disk error
                out.fault = (base, " ".join(str(e).split()) or type(e).__name__)
                break
            if buf is None:
                break
            lines, count = kept(buf)
            skipped += count - len(lines)
            first = base + 1  # line number of the buffer's first line in this unit
            base += count
            for k, line in lines:
                rel = first + k
                pid = None
                if line.startswith(b'{"resourceType":"'):
                    key = ref_keys.get(line[17:line.find(b'"', 17, 64)])
                    if key is not None:
                        i = line.find(key[0])
                        # a "subject" after a "contained" list might be a contained resource's own
                        if i >= 0 and line.find(b'"contained"', 0, i) < 0:
                            start = i + len(key[0])
                            ref = line[start:line.find(b'"', start)]
                            if ref.startswith(b"Patient/") and 8 < len(ref) <= 72 and b"/" not in ref[8:] \
                                    and b"\\" not in ref:
                                pid = ref[8:]
                if pid is None:
                    if not line or line.isspace():
                        continue
                    pid = slow(line, rel, out)
                    if pid is None:
                        continue
                if wanted is not None and pid not in wanted:
                    continue
                b = crc32(pid) % n
                buf = pending.get(b)
                if buf is None:
                    buf = pending[b] = []
                    sizes[b] = 0
                buf.append(b"%s\t%05d%010d%s\n" % (pid, index, rel, line))
                sizes[b] += len(line)
                if sizes[b] > 1 << 18:
                    self._flush(index, b, buf, out)
                    sizes[b] = 0
        for b, buf in pending.items():
            if buf:
                self._flush(index, b, buf, out)
        out.lines = base
        if skipped:
            out.quiet[ObservationPrefilter.kind] = skipped
        return out

    def _flush(self, index: int, bucket: int, buf: list[bytes], out: RouteResult) -> None:
        with open(self.workdir / f"b{bucket:05d}.u{index:05d}", "ab") as f:
            f.write(b"".join(buf))
        buf.clear()
        out.buckets.add(bucket)

    def _patient(self, line: bytes, rel: int, out: RouteResult) -> bytes | None:
        """The patient id of a line (bytes), or None when the line was dropped (and recorded why).

        Fast path with ``bytes.find`` on the compact form servers write (``"subject":{"reference":"``);
        a regular expression for other spacing; a full parse when neither is safe. A line that cannot be read
        (not JSON, of the wrong shape, too long) still goes to its patient when the raw bytes name one, so that
        pass 2 records it on that patient's record (``PatientRecord.unreadable``).
        """
        if line.startswith(TOO_LONG):
            return self._too_long(line, rel, out)
        if line.startswith(b'{"resourceType":"'):
            j = line.find(b'"', 17, 64)
            rtype = line[17:j] if j > 0 else None
        else:
            m = _RESOURCE_TYPE.match(line)
            rtype = m.group(1) if m else None
        if rtype and b'"contained"' not in line:
            key = self.ref_keys.get(rtype)
            if key is not None:
                ref = self._reference(line, key)
                if ref is not None:
                    if ref.startswith(b"Patient/") and b"/" not in ref[8:] and 0 < len(ref) - 8 <= 64:
                        return ref[8:]
                    p = _PATIENT_IN_REF.search(ref)
                    if p:
                        return p.group(1)
            elif rtype not in self.known:  # not FHIR: to its patient, when it names one, as unreadable
                pid = self._raw_patient(line)
                if pid is None:
                    out.problems.append((rel, "unknown resourceType", f"unknown resourceType {rtype.decode()!r} "
                                         "(not a FHIR R4 resource type)", None))
                return pid
            elif rtype != b"Patient" and rtype not in self.shared:
                kind = f"{rtype.decode()} not used by any criterion"
                out.quiet[kind] = out.quiet.get(kind, 0) + 1
                return None
        return self._parse_and_route(line, rel, out)

    @staticmethod
    def _reference(line: bytes, key: tuple[bytes, bytes]) -> bytes | None:
        """The ``reference`` of the top-level Reference named in ``key``, when readable without parsing."""
        compact, name = key
        i = line.find(compact)
        if i >= 0:
            start = i + len(compact)
            end = line.find(b'"', start)
            ref = line[start:end]
            return None if b"\\" in ref else ref
        ref_m = _PATIENT_REF.search(line)
        if ref_m and ref_m.group(1) == name:
            return ref_m.group(2)
        return None

    def _parse_and_route(self, line: bytes, rel: int, out: RouteResult) -> bytes | None:
        """The slow path: parse the line to find its patient."""
        try:
            resource = orjson.loads(line)
        except orjson.JSONDecodeError as e:
            pid = self._raw_patient(line)
            if pid is None:
                self._drop(line, None, rel, "not JSON", f"not JSON ({e})", out)
            return pid
        bad = problem(resource)
        if bad:
            pid = self._patient_of_unreadable(resource, line)
            if pid is None:
                self._drop(line, resource, rel, bad[0], bad[1], out)
            return pid
        rtype = resource["resourceType"]
        ref = f"{rtype}/{resource.get('id', '?')}"
        if rtype in rules().shared:
            if isinstance(resource.get("id"), str):
                out.shared[ref] = resource
            return None
        if rtype != "Patient" and rtype not in rules().clinical:
            kind = f"{rtype} not used by any criterion"
            out.quiet[kind] = out.quiet.get(kind, 0) + 1
            return None
        pid = patient_of(resource)
        if pid is None or not _ID.match(pid.encode()):
            if rtype == "Patient":
                self._drop(line, resource, rel, "no id", "Patient without a valid id", out)
            else:
                fields = rules().clinical[rtype]
                out.problems.append((rel, "no patient reference",
                                     f"no {'/'.join(fields)} reference to a Patient", ref))
            return None
        if rtype == "Patient" and "link" in resource:
            edges, problems = links_of(resource)
            out.links.extend((rel, old, new) for old, new in edges)
            out.link_problems.extend((rel, pid, why) for why in problems)
        return pid.encode()

    def _too_long(self, line: bytes, rel: int, out: RouteResult) -> bytes | None:
        """A line over the size limit (``too_long``): to its patient when its first bytes name one."""
        head = line[line.index(b"\x00", len(TOO_LONG)) + 1:]
        pid = self._raw_patient(head)
        if pid is None:
            self._drop(head, None, rel, TOO_LONG_KIND, too_long_reason(too_long_size(line), self.limit), out)
        return pid

    def _drop(self, line: bytes, resource: Any, rel: int, kind: str, reason: str, out: RouteResult) -> None:
        """Count a line that goes to no patient. A Patient line among them is a patient the source holds but
        whose record cannot be had: the run is incomplete (``lost``)."""
        rtype = resource.get("resourceType") if type(resource) is dict else None
        out.problems.append((rel, kind, reason, local_id(resource) if type(rtype) is str else None))
        if rtype is None:
            m = _RESOURCE_TYPE.match(line)
            rtype = m.group(1).decode() if m else None
        if rtype == "Patient" or (type(rtype) is not str and self.file_type == "Patient"):
            out.lost.append((rel, reason))

    def _raw_patient(self, text: bytes) -> bytes | None:
        """The patient of a line that cannot be parsed, read from its raw bytes: a Patient's id right after its
        resourceType, or the one Patient every subject/patient reference in it names. None when unclear."""
        m = _RESOURCE_TYPE.match(text)
        rtype = m.group(1) if m else None
        if rtype == b"Patient":
            m = _PATIENT_ID.match(text)
            return m.group(1) if m else None
        if rtype is not None and rtype not in self.ref_keys and rtype in self.known:
            return None  # a type that belongs to no patient
        found = set()
        for ref in _PATIENT_REF.finditer(text):
            p = _PATIENT_IN_REF.search(ref.group(2))
            if p is None:
                return None
            found.add(p.group(1))
        return found.pop() if len(found) == 1 else None

    def _patient_of_unreadable(self, resource: Any, line: bytes) -> bytes | None:
        """The patient of a parsed resource that ``problem`` refused, when it can still be told: from its own
        reference when that one is sound, else from the raw line (as for a line that does not parse)."""
        rtype = resource.get("resourceType") if type(resource) is dict else None
        if type(rtype) is str and rtype in rules().r4_types:
            if rtype != "Patient" and rtype not in rules().clinical:
                return None  # a type that belongs to no patient
            pid = patient_of(resource)
            if pid is not None and _ID.match(pid.encode()):
                return pid.encode()
        return self._raw_patient(line) if type(resource) is dict else None


@dataclass
class Plan:
    """The state shared by both passes."""

    files: list[Path]
    units: list[Unit]
    workdir: Path
    buckets: int
    source: str
    limit: int = 0  # the longest line read (``limits.max_line_bytes``)
    line_base: list[int] = field(default_factory=list)  # per unit: lines in the same file before it
    shared: dict[str, dict[str, Any]] = field(default_factory=dict)
    merges: Merges = field(default_factory=Merges)  # Patients read as part of the one that replaced them
    everyone: list[Unreadable] = field(default_factory=list)  # what no patient's record may rest on (a cut file)
    early: Early | None = None  # a decision a few resource types may settle before the rest is parsed

    def __post_init__(self) -> None:
        self.file_types = [file_type(f) for f in self.files]
        self.limit = self.limit or max_line_bytes()

    def where(self, unit: int, rel: int) -> str:
        u = self.units[unit]
        base = self.line_base[unit] if self.line_base else 0
        return f"{self.files[u.file].name} line {base + rel}"

    def describe(self, line: object) -> str:
        """``file line N`` for a bucket line (its fixed-width origin, then the JSON); other values as they are."""
        if isinstance(line, bytes):
            return self.where(int(line[:_UNIT]), int(line[_UNIT:_ORIGIN]))
        return str(line)

    @staticmethod
    def line_type(rest: bytes) -> str | None:
        """The resource type a bucket line names first thing (``{"resourceType": "Condition", ...``, as Bulk Data
        writes it), read on the bytes; None when it does not start so (the line is then parsed to be sure)."""
        m = _RESOURCE_TYPE.match(rest[_ORIGIN:_ORIGIN + 64])
        return m.group(1).decode() if m else None

    def type_of(self, rest: bytes) -> str | None:
        """The resource type of a bucket line that cannot be read: its own resourceType when readable, else the
        type its Bulk Data file is named for (``Observation.ndjson``), else None."""
        body = rest[_ORIGIN:]
        if body.startswith(TOO_LONG):
            body = body[body.index(b"\x00", len(TOO_LONG)) + 1:]
        m = _RESOURCE_TYPE.match(body)
        if m and m.group(1).decode() in rules().r4_types:
            return m.group(1).decode()
        return self.file_types[self.units[int(rest[:_UNIT])].file]


def file_type(path: Path) -> str | None:
    """The resource type a Bulk Data file is named for (``Observation.ndjson``, ``Observation.003.ndjson.gz``,
    ``1.Observation.ndjson``), or None when its name names no single R4 type."""
    found = {part for part in re.split(r"[^A-Za-z]+", path.name) if part in rules().r4_types}
    return found.pop() if len(found) == 1 else None


# Worker state, inherited through fork: the plan, the caller's function and the router.
_PLAN: Plan | None = None
_FN: Callable[[PatientRecord], Any] | None = None
_ROUTER: _Router | None = None


def _route(index: int) -> RouteResult:
    assert _ROUTER is not None
    return _ROUTER.route(index)


def _assemble_bucket(bucket: int) -> tuple[list[Any], ReadReport]:
    """Pass 2 for one bucket: every patient's record, mapped by the caller's function."""
    assert _PLAN is not None and _FN is not None
    plan, fn = _PLAN, _FN
    report = ReadReport()
    groups: dict[bytes, list[bytes]] = {}
    for part in sorted(plan.workdir.glob(f"b{bucket:05d}.u*")):
        data = part.read_bytes()
        part.unlink()  # here, in parallel, rather than hundreds of files one by one at the end
        for line in data.split(b"\n"):
            if line:
                pid, _, rest = line.partition(b"\t")
                group = groups.get(pid)
                if group is None:
                    groups[pid] = [rest]
                else:
                    group.append(rest)
    # Parsed resources hold no reference cycles: the cyclic collector only costs time here.
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        return _assemble_groups(plan, fn, groups, report), report
    finally:
        if gc_was_enabled:
            gc.enable()


def _assemble_groups(plan: Plan, fn: Callable[[PatientRecord], Any], groups: dict[bytes, list[bytes]],
                     report: ReadReport) -> list[Any]:
    """Each patient's record from its bucket lines, mapped by ``fn``; a Patient merged into another is read with
    it (both are in this bucket: ``_relocate``), unless the survivor is not in the source."""
    results = []

    def one(pid: str, lines: list[bytes], replaced: Sequence[str] = ()) -> None:
        if plan.early is not None:
            decided = _decide_early(plan, pid, lines, replaced, report)
            if decided is not _UNDECIDED:
                results.append(decided)
                return
        items, unread = _parse_group(plan, lines, report)
        record = assemble_record(pid, items, report, shared=plan.shared, source=plan.source, describe=plan.describe,
                                 unreadable=[*unread, *plan.everyone], replaced=replaced)
        if record is not None:
            results.append(fn(record))

    todo, notes = merged_groups({k.decode() for k in groups}, plan.merges,
                                lambda pid: _has_patient(groups[pid.encode()], pid))
    for _pid, why in notes:
        report.note("Patient.link", why, kind="Patient.link not followed")
    for pid, olds in todo:
        lines = groups[pid.encode()]
        for old in olds:
            lines = lines + groups[old.encode()]
        one(pid, lines, olds)
    return results


_UNDECIDED = object()
EARLY_KIND = "resources of patients settled by the entry criteria (not parsed)"


def _decide_early(plan: Plan, pid: str, lines: list[bytes], replaced: Sequence[str], report: ReadReport) -> Any:
    """``plan.early.decide`` on the patient's Patient and ``early.types`` only (the other lines stay unparsed), or
    ``_UNDECIDED`` when those do not settle it. Its counts and messages reach ``report`` only when they do: else
    the whole record is read as usual, once."""
    assert plan.early is not None
    types = plan.early.types
    first: list[bytes] = []
    rest: list[bytes] = []
    for line in lines:
        rtype = plan.line_type(line)
        (first if rtype is None or rtype == "Patient" or rtype in types else rest).append(line)
    if not rest:  # nothing to save
        return _UNDECIDED
    trial = ReadReport(deferred=[])
    items, unread = _parse_group(plan, first, trial)
    record = assemble_record(pid, items, trial, shared=plan.shared, source=plan.source, describe=plan.describe,
                             unreadable=[*unread, *plan.everyone], replaced=replaced, loaded=types)
    if record is None:
        return _UNDECIDED
    try:
        decided = plan.early.decide(record)
    except IncompleteRecord as e:
        log.debug("Patient/%s: the early decision asked for %s: the whole record is read", pid, e)
        return _UNDECIDED
    if decided is None:
        return _UNDECIDED
    trial.replay_into(report)
    report.ignore(EARLY_KIND, len(rest))
    return decided


def _has_patient(lines: list[bytes], pid: str) -> bool:
    """Whether the bucket lines hold a Patient resource of this id, readable or not (one that cannot be read
    still makes its merged charts one patient, not read)."""
    for rest in lines:
        body = rest[_ORIGIN:]
        if b'"Patient"' not in body:
            continue
        m = _PATIENT_ID.match(body)
        if m and m.group(1).decode() == pid:
            return True
        try:
            resource = orjson.loads(body)
        except orjson.JSONDecodeError:
            continue
        if type(resource) is dict and resource.get("resourceType") == "Patient" and resource.get("id") == pid:
            return True
    return False


def _parse_group(plan: Plan, lines: list[bytes], report: ReadReport) -> tuple[list[tuple[dict[str, Any], bytes]],
                                                                              list[Unreadable]]:
    """The readable resources of one patient's bucket lines, and what could not be read (counted and named)."""
    items: list[tuple[dict[str, Any], bytes]] = []
    unread: list[Unreadable] = []
    loads, limit = orjson.loads, plan.limit
    for rest in lines:
        # rest = 5-digit unit, 10-digit line, then the JSON: the origin is decoded only for a message
        try:
            resource = loads(rest[_ORIGIN:])
        except orjson.JSONDecodeError as e:
            if rest.startswith(TOO_LONG, _ORIGIN):
                kind, reason = TOO_LONG_KIND, too_long_reason(too_long_size(rest[_ORIGIN:]), limit)
            else:
                kind, reason = "not JSON", f"not JSON ({e})"
            _unreadable(plan, rest, kind, reason, None, report, unread)
            continue
        if len(rest) - _ORIGIN > limit:
            _unreadable(plan, rest, TOO_LONG_KIND, too_long_reason(len(rest) - _ORIGIN, limit), None, report, unread)
            continue
        bad = problem(resource)
        if bad is not None:
            rtype = resource.get("resourceType") if type(resource) is dict else None
            _unreadable(plan, rest, bad[0], bad[1], rtype if type(rtype) is str and rtype in rules().r4_types else None,
                        report, unread)
            continue
        items.append((resource, rest))
    return items, unread


def _unreadable(plan: Plan, rest: bytes, kind: str, reason: str, rtype: str | None, report: ReadReport,
                unread: list[Unreadable]) -> None:
    """Count a line that cannot be read and keep it for its patient's record."""
    where = plan.describe(rest)
    report.skip(where, reason, kind=kind)
    unread.append(Unreadable(rtype or plan.type_of(rest), where, reason))


def _pool(workers: int) -> Any:
    return multiprocessing.get_context("fork").Pool(workers)


def map_grouped(files: Sequence[Path], fn: Callable[[PatientRecord], R], report: ReadReport, *,
                source: str = "", patients: Collection[str] | None = None, workers: int = 1,
                bucket_bytes: int = 48 << 20, workdir: Path | None = None,
                unit_bytes: int | None = None, prefilter: ObservationPrefilter | None = None,
                max_line_bytes: int | None = None, early: Early | None = None) -> Iterator[R]:
    """``fn(record)`` for every patient in ``files``, in a stable order (by bucket, then patient id).

    With ``workers > 1`` both passes run in that many forked processes and ``fn`` runs in them (so it must
    not rely on state changed after the call). Skips are counted into ``report``; messages are logged.
    With ``prefilter``, pass 1 drops the Observation lines it ``skips`` before anything parses them. Lines longer
    than ``max_line_bytes`` (default ``limits.max_line_bytes()``) are not read. A Patient replaced by another
    (``Patient.link``) is read as part of it. With ``early``, pass 2 first parses only the lines of
    ``early.types`` (and the Patient) and maps a patient they settle by ``early.decide`` without parsing the rest.
    """
    global _PLAN, _FN, _ROUTER
    files = list(files)
    total = sum(f.stat().st_size * (6 if f.name.endswith(".gz") else 1) for f in files)
    buckets = max(1, -(-total // bucket_bytes))
    own_dir = workdir is None
    work = Path(tempfile.mkdtemp(prefix="fhir-adapter-")) if own_dir else Path(workdir)
    work.mkdir(parents=True, exist_ok=True)
    wanted = frozenset(p.encode() for p in patients) if patients is not None else None
    units = _units(files, workers, unit_bytes)
    if len(units) >= 10**_UNIT:
        raise SourceError(f"{len(files):,} files: too many for one source (at most {10**_UNIT - 1:,} pieces)")
    plan = Plan(files, units, work, buckets, source, limit=max_line_bytes or 0, early=early)
    started = time.perf_counter()
    procs = min(workers, len(units))

    def route(wanted: frozenset[bytes] | None) -> list[RouteResult]:
        global _ROUTER
        _ROUTER = _Router(files, units, work, buckets, wanted, prefilter, plan.limit)
        if procs > 1:
            with _pool(procs) as pool:
                routed = list(pool.imap_unordered(_route, range(len(units))))
        else:
            routed = [_route(i) for i in range(len(units))]
        return sorted(routed, key=lambda r: r.unit)

    try:
        routed = route(wanted)
        plan.line_base = _line_bases(units, routed)
        plan.merges = resolve((old, new) for r in routed for _, old, new in r.links)
        if wanted is not None and plan.merges:
            partners = _partners(plan.merges, {p.decode() for p in wanted})
            if partners:  # a patient asked for was merged with others: read again with them
                for p in work.glob("b*.u*"):
                    p.unlink()
                routed = route(wanted | {p.encode() for p in partners})
        used: set[int] = set()
        for r in routed:
            plan.shared.update(r.shared)
            used |= r.buckets
            for rel, kind, reason, resource in r.problems:
                report.skip(plan.where(r.unit, rel), reason, resource, kind=kind)
            for kind, n in r.quiet.items():
                report.ignore(kind, n)
            for rel, pid, why in r.link_problems:
                report.note(plan.where(r.unit, rel), f"Patient/{pid}: {why}", kind="Patient.link not followed")
            for rel, why in r.lost:
                report.patient_not_read(None, plan.where(r.unit, rel), f"a Patient line that cannot be read ({why})",
                                        kind="Patient resource unreadable")
            if r.fault is not None:
                _cut(plan, r, report)
        for pid, why in sorted(plan.merges.problems.items()):
            report.note("Patient.link", f"Patient/{pid}: {why}", kind="Patient.link not followed")
        if plan.shared:
            report.count_read("Medication", len(plan.shared))
        if plan.merges:
            used |= _relocate(plan)
        routed_at = time.perf_counter()
        log.info("pass 1 (route): %s lines of %d files in %.2f s on %d workers; %d buckets",
                 f"{sum(r.lines for r in routed):,}", len(files), routed_at - started, max(1, procs), len(used))

        _PLAN, _FN = plan, fn
        order = sorted(used)
        if workers > 1 and len(order) > 1:
            with _pool(min(workers, len(order))) as pool:
                for results, part in pool.imap(_assemble_bucket, order):
                    report.merge(part)
                    yield from results
        else:
            for b in order:
                results, part = _assemble_bucket(b)
                report.merge(part)
                yield from results
        log.info("pass 2 (assemble and map): %d buckets in %.2f s", len(order), time.perf_counter() - routed_at)
    finally:
        _PLAN = _FN = _ROUTER = None
        if own_dir:
            shutil.rmtree(work, ignore_errors=True)
        else:
            for p in work.glob("b*.u*"):
                p.unlink(missing_ok=True)


def _cut(plan: Plan, r: RouteResult, report: ReadReport) -> None:
    """A file that broke off (a gzip file cut short): whose lines were lost cannot be known, so the run is
    incomplete, and no record may conclude that it holds no resource of the file's type."""
    assert r.fault is not None
    rel, why = r.fault
    name = plan.files[plan.units[r.unit].file].name
    where = f"{name} after line {plan.line_base[r.unit] + rel}"
    reason = f"the file breaks off ({why}); the rest of it is not read, and its patients are unknown"
    report.patient_not_read(None, where, reason, kind="file cut short")
    plan.everyone.append(Unreadable(plan.file_types[plan.units[r.unit].file], where, reason))


def _partners(merges: Merges, wanted: set[str]) -> set[str]:
    """The Patients merged with one of ``wanted`` (the survivor and everyone it replaced) not in ``wanted``."""
    out: set[str] = set()
    for survivor, olds in merges.members().items():
        group = {survivor, *olds}
        if group & wanted:
            out |= group - wanted
    return out


def _relocate(plan: Plan) -> set[int]:
    """Move the bucket lines of each replaced Patient to its survivor's bucket, so that pass 2 meets them together
    (pass 1 routed them before the links were known). Reads only the buckets of replaced Patients; returns the
    buckets lines went to."""
    n, work = plan.buckets, plan.workdir
    moves: dict[int, dict[bytes, int]] = {}  # bucket -> replaced id -> its survivor's bucket
    for old, new in plan.merges.into.items():
        src, dst = crc32(old.encode()) % n, crc32(new.encode()) % n
        if src != dst:
            moves.setdefault(src, {})[old.encode()] = dst
    to: set[int] = set()
    for src, olds in sorted(moves.items()):
        for part in sorted(work.glob(f"b{src:05d}.u*")):
            keep: list[bytes] = []
            moved: dict[int, list[bytes]] = {}
            for line in part.read_bytes().split(b"\n"):
                if line:
                    dst = olds.get(line[:line.find(b"\t")])
                    (keep if dst is None else moved.setdefault(dst, [])).append(line + b"\n")
            if not moved:
                continue
            part.write_bytes(b"".join(keep))
            for dst, lines in moved.items():
                with open(work / f"b{dst:05d}.um{src:05d}", "ab") as f:
                    f.write(b"".join(lines))
                to.add(dst)
    return to


def _line_bases(units: Sequence[Unit], routed: Sequence[RouteResult]) -> list[int]:
    """For each unit, how many lines of its file come before it (units of a file are consecutive)."""
    bases, last_file, running = [], None, 0
    for u, r in zip(units, routed, strict=True):
        if u.file != last_file:
            last_file, running = u.file, 0
        bases.append(running)
        running += r.lines
    return bases


def default_workers() -> int:
    """The number of cores this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)
