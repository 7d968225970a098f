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
import gzip
import logging
import multiprocessing
import os
import re
import shutil
import tempfile
import time
from collections.abc import Callable, Collection, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar
from zlib import crc32

import orjson

from fhir_adapter.errors import SourceError
from fhir_adapter.record.assemble import assemble_record, patient_of
from fhir_adapter.record.patient_record import PatientRecord
from fhir_adapter.record.resource_types import rules
from fhir_adapter.sources.check import problem
from fhir_adapter.sources.prefilter import ObservationPrefilter
from fhir_adapter.sources.report import ReadReport

log = logging.getLogger("fhir_adapter.sources")
R = TypeVar("R")

_RESOURCE_TYPE = re.compile(rb'^\s*\{\s*"resourceType"\s*:\s*"([A-Za-z]+)"')
# "subject": {"reference": "Patient/123"} with no nested object before "reference"
_PATIENT_REF = re.compile(rb'"(subject|patient)"\s*:\s*\{[^{}]*?"reference"\s*:\s*"([^"\\]*)"')
_PATIENT_IN_REF = re.compile(rb"(?:^|/)Patient/([A-Za-z0-9\-.]{1,64})(?:/_history/[^/]*)?$")
_ID = re.compile(rb"^[A-Za-z0-9\-.]{1,64}$")
_CHUNK = 1 << 20  # 1 MB reads: 2,000-patient screen 796 -> 1,018 patients/s and half the memory of 8 MB reads
_UNIT, _ORIGIN = 5, 15  # a bucket line: pid, tab, unit (5 digits), line number (10 digits), the JSON


@dataclass(frozen=True, slots=True)
class Unit:
    """A piece of pass 1: a byte range of a plain file, or a whole gzip file (``end`` None)."""

    file: int
    start: int
    end: int | None


@dataclass
class RouteResult:
    """What one pass-1 unit found, returned to the main process."""

    unit: int
    lines: int = 0
    shared: dict[str, dict[str, Any]] = field(default_factory=dict)
    problems: list[tuple[int, str, str, str | None]] = field(default_factory=list)  # rel line, kind, reason, res
    quiet: dict[str, int] = field(default_factory=dict)  # kind -> count of quiet skips
    buckets: set[int] = field(default_factory=set)


def _units(files: Sequence[Path], workers: int, unit_bytes: int | None = None) -> list[Unit]:
    """Split plain files into about ``2 * workers`` byte ranges in all (or ranges of ``unit_bytes``);
    gzip files stay whole."""
    plain = sum(f.stat().st_size for f in files if not f.name.endswith(".gz"))
    target = unit_bytes or max(1 << 20, plain // max(1, 2 * workers) + 1)
    units = []
    for i, f in enumerate(files):
        if f.name.endswith(".gz"):
            units.append(Unit(i, 0, None))
            continue
        size = f.stat().st_size
        start = 0
        while start < size or (start == 0 and size == 0):
            end = min(size, start + target)
            units.append(Unit(i, start, end))
            start = end
            if size == 0:
                break
    return units


def _lines(path: Path, unit: Unit) -> Iterator[bytes]:
    """The lines of ``unit``: those that start inside its byte range (a line crossing the end is read whole)."""
    for buf in _buffers(path, unit):
        yield from bytes(buf).split(b"\n")


def _buffers(path: Path, unit: Unit) -> Iterator[bytes | memoryview]:
    """The lines of ``unit`` about ``_CHUNK`` bytes at a time: each buffer holds whole lines joined by
    newlines (``bytes(buf).split(b"\\n")`` gives them; no per-line object until someone asks).

    A plain file is read into one reused buffer and handed out as a view of it, valid until the next one is
    asked for (the scanner copies the lines it keeps): a read costs one copy from the page cache, not three.
    """
    if unit.end is None:
        with gzip.open(path, "rb") as f:
            tail = b""
            while chunk := f.read(_CHUNK):
                j = chunk.rfind(b"\n")
                if j < 0:
                    tail += chunk
                    continue
                yield tail + chunk[:j]
                tail = chunk[j + 1:]
            if tail:
                yield tail
        return
    with open(path, "rb") as f:
        pos = unit.start
        f.seek(pos)
        if pos:
            f.seek(pos - 1)
            if f.read(1) != b"\n":  # we start inside a line: the previous unit reads it
                skipped = f.readline()
                pos += len(skipped)
        buf = bytearray(2 * _CHUNK)
        view = memoryview(buf)
        held = 0  # bytes at the front of buf: the start of a line the last read cut
        while pos < unit.end:
            want = min(_CHUNK, unit.end - pos)
            if held + want > len(buf):  # a line longer than the buffer: a bigger one (views of the old may live)
                grown = bytearray(held + want)
                grown[:held] = view[:held]
                buf, view = grown, memoryview(grown)
            n = f.readinto(view[held:held + want])
            if not n:
                break
            pos += n
            end = held + n
            j = buf.rfind(b"\n", held, end)
            if j < 0:
                held = end
                continue
            yield view[:j]
            held = end - j - 1
            buf[:held] = bytes(view[j + 1:end])  # a copy: the two ranges may overlap
        if held:  # finish the line that crosses the end of the range
            yield (bytes(view[:held]) + f.readline()).rstrip(b"\n")


def _every_line(buf: bytes | memoryview) -> tuple[list[tuple[int, bytes]], int]:
    """Each line of ``buf`` with its index, and their count (``ObservationPrefilter.kept`` with no prefilter)."""
    lines = bytes(buf).split(b"\n")
    return list(enumerate(lines)), len(lines)


class _Router:
    """Pass 1 for one unit: decides each line's patient and appends it to a bucket file."""

    def __init__(self, files: Sequence[Path], units: Sequence[Unit], workdir: Path, buckets: int,
                 patients: frozenset[bytes] | None, prefilter: ObservationPrefilter | None = None) -> None:
        self.files, self.units, self.workdir, self.n = files, units, workdir, buckets
        self.patients = patients
        self.prefilter = prefilter
        r = rules()
        # type -> (compact '"subject":{"reference":"', field name) of the Reference that names the patient
        self.ref_keys = {t.encode(): (b'"%s":{"reference":"' % f[0].encode(), f[0].encode())
                         for t, f in r.clinical.items()}
        self.shared = {t.encode() for t in r.shared}
        self.known = {t.encode() for t in r.r4_types}

    def route(self, index: int) -> RouteResult:
        """Route every line of unit ``index``; the common case (a compact, uncontained clinical resource
        with a ``Patient/id`` reference) is inlined here, everything else goes through ``_patient``."""
        unit = self.units[index]
        out = RouteResult(index)
        pending: dict[int, list[bytes]] = {}
        sizes: dict[int, int] = {}
        n, wanted, ref_keys, slow = self.n, self.patients, self.ref_keys, self._patient
        kept = self.prefilter.kept if self.prefilter is not None else _every_line
        base = skipped = 0
        for buf in _buffers(self.files[unit.file], unit):
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
        a regular expression for other spacing; a full parse when neither is safe.
        """
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
            elif rtype not in self.known:
                out.problems.append((rel, "unknown resourceType",
                                     f"unknown resourceType {rtype.decode()!r} (not a FHIR R4 resource type)", None))
                return None
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
            out.problems.append((rel, "not JSON", f"not JSON ({e})", None))
            return None
        bad = problem(resource)
        if bad:
            out.problems.append((rel, bad[0], bad[1], None))
            return None
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
                out.problems.append((rel, "no id", "Patient without a valid id", ref))
            else:
                fields = rules().clinical[rtype]
                out.problems.append((rel, "no patient reference",
                                     f"no {'/'.join(fields)} reference to a Patient", ref))
            return None
        return pid.encode()


@dataclass
class Plan:
    """The state shared by both passes."""

    files: list[Path]
    units: list[Unit]
    workdir: Path
    buckets: int
    source: str
    line_base: list[int] = field(default_factory=list)  # per unit: lines in the same file before it
    shared: dict[str, dict[str, Any]] = field(default_factory=dict)

    def where(self, unit: int, rel: int) -> str:
        u = self.units[unit]
        base = self.line_base[unit] if self.line_base else 0
        return f"{self.files[u.file].name} line {base + rel}"


    def describe(self, line: object) -> str:
        """``file line N`` for a bucket line (its fixed-width origin, then the JSON); other values as they are."""
        if isinstance(line, bytes):
            return self.where(int(line[:_UNIT]), int(line[_UNIT:_ORIGIN]))
        return str(line)


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
    loads, known = orjson.loads, rules().r4_types
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
        return _assemble_groups(plan, fn, groups, report, loads, known), report
    finally:
        if gc_was_enabled:
            gc.enable()


def _assemble_groups(plan: Plan, fn: Callable[[PatientRecord], Any], groups: dict[bytes, list[bytes]],
                     report: ReadReport, loads: Callable[[bytes], Any], known: frozenset[str]) -> list[Any]:
    results = []
    describe = plan.describe
    for pid in sorted(groups):
        items = []
        for rest in groups[pid]:
            # rest = 5-digit unit, 10-digit line, then the JSON: the origin is decoded only for a message
            try:
                resource = loads(rest[_ORIGIN:])
            except orjson.JSONDecodeError as e:
                report.skip(describe(rest), f"not JSON ({e})", kind="not JSON")
                continue
            if type(resource) is not dict or resource.get("resourceType") not in known:
                bad = problem(resource) or ("not a FHIR resource", "not a FHIR resource")
                report.skip(describe(rest), bad[1], kind=bad[0])
                continue
            items.append((resource, rest))
        record = assemble_record(pid.decode(), items, report, shared=plan.shared, source=plan.source,
                                 describe=describe)
        if record is not None:
            results.append(fn(record))
    return results


def _pool(workers: int) -> Any:
    return multiprocessing.get_context("fork").Pool(workers)


def map_grouped(files: Sequence[Path], fn: Callable[[PatientRecord], R], report: ReadReport, *,
                source: str = "", patients: Collection[str] | None = None, workers: int = 1,
                bucket_bytes: int = 48 << 20, workdir: Path | None = None,
                unit_bytes: int | None = None, prefilter: ObservationPrefilter | None = None) -> Iterator[R]:
    """``fn(record)`` for every patient in ``files``, in a stable order (by bucket, then patient id).

    With ``workers > 1`` both passes run in that many forked processes and ``fn`` runs in them (so it must
    not rely on state changed after the call). Skips are counted into ``report``; messages are logged.
    With ``prefilter``, pass 1 drops the Observation lines it ``skips`` before anything parses them.
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
    plan = Plan(files, units, work, buckets, source)
    started = time.perf_counter()
    try:
        _ROUTER = _Router(files, units, work, buckets, wanted, prefilter)
        procs = min(workers, len(units))
        if procs > 1:
            with _pool(procs) as pool:
                routed = list(pool.imap_unordered(_route, range(len(units))))
        else:
            routed = [_route(i) for i in range(len(units))]
        routed.sort(key=lambda r: r.unit)
        plan.line_base = _line_bases(units, routed)
        used: set[int] = set()
        for r in routed:
            plan.shared.update(r.shared)
            used |= r.buckets
            for rel, kind, reason, resource in r.problems:
                report.skip(plan.where(r.unit, rel), reason, resource, kind=kind)
            for kind, n in r.quiet.items():
                report.ignore(kind, n)
        if plan.shared:
            report.count_read("Medication", len(plan.shared))
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
