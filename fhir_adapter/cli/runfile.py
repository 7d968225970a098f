"""``-o/--output FILE`` and ``--resume``: result files that say whether their run finished, and runs that go on.

A run writes its lines to ``FILE.partial`` (whole lines: buffered, then written with one call per batch, at
least once a second), with the run's options in ``FILE.partial.json`` written before the first line. At the end
``FILE.partial`` is renamed to ``FILE`` and ``FILE.manifest.json`` is written last: no manifest, no finished run.
A run that ends incomplete (exit status 3: patients that could not be read) is still renamed and gets a manifest
that says so (``"complete": false`` and its exit status); one stopped by Ctrl-C, an error or a kill keeps
``FILE.partial`` and gets no manifest.

``--resume`` continues from ``FILE.partial``: the patients whose line is there are not screened again (a last
line cut short by a kill is dropped), and it refuses (exit 2) when the options, the study or site file, or the
input files differ from the ones the interrupted run started with.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterable
from datetime import UTC, date, datetime
from pathlib import Path
from types import TracebackType
from typing import Any

import orjson

from fhir_adapter import __version__

#: options that do not change the lines a run writes (and secrets, which never go in a file)
NOT_COMPARED = frozenset({"run", "command", "output", "resume", "quiet", "verbose", "workers", "token",
                          "smart_client_id", "smart_key", "smart_alg", "smart_token_url", "smart_scope"})
#: what a resumed run must share with the interrupted one
COMPARED = ("command", "options", "study_files", "site_file", "inputs")
FLUSH_BYTES = 1 << 16
FLUSH_SECONDS = 1.0


def add_output_arguments(parser: argparse.ArgumentParser) -> None:
    """``-o/--output FILE`` and ``--resume``."""
    o = parser.add_argument_group("output file")
    o.add_argument("-o", "--output", type=Path, metavar="FILE",
                   help="write the lines to FILE (through FILE.partial, renamed at the end) and then "
                        "FILE.manifest.json: what was run on what, counts, exit status. No manifest: the run did "
                        "not finish")
    o.add_argument("--resume", action="store_true",
                   help="with -o: continue an interrupted run from FILE.partial, screening only the patients not "
                        "in it yet (the options must be the same)")


def usage_error(message: str) -> None:
    """Stop with exit status 2 (a usage error), saying why."""
    print(f"fhir-adapter: error: {message}", file=sys.stderr)
    raise SystemExit(2)


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def _plain(value: Any) -> Any:
    """An option's value as JSON: paths and dates as text, tuples as lists."""
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def options_of(args: argparse.Namespace) -> dict[str, Any]:
    """The options that decide what a run writes (``NOT_COMPARED`` left out), as JSON."""
    return {k: _plain(v) for k, v in sorted(vars(args).items()) if k not in NOT_COMPARED and not callable(v)}


def inputs_of(source: Any, spec: str) -> dict[str, Any]:
    """The server URL, or each input file with its size and sha256."""
    if spec.startswith(("http://", "https://")):
        return {"server": spec}
    files = getattr(source, "files", None) or []
    return {"source": spec, "files": [{"path": str(f), "bytes": f.stat().st_size, "sha256": sha256_file(f)}
                                      for f in files]}


def _file_entry(path: Any) -> dict[str, Any] | None:
    """A file the run read (its path and sha256), or None."""
    if not path:
        return None
    p = Path(path)
    return {"path": str(p), "sha256": sha256_file(p)} if p.is_file() else {"name": str(path)}


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


class LineWriter:
    """Whole lines to a file: kept in memory and written in batches (each batch one ``os.write`` of whole lines),
    at least every ``FLUSH_SECONDS``, so that a killed run leaves whole lines only, bar at most a cut last one."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.buf: list[bytes] = []
        self.size = 0
        self.last = time.monotonic()

    def write(self, data: bytes) -> None:
        self.buf.append(data)
        self.size += len(data)
        if self.size >= FLUSH_BYTES or time.monotonic() - self.last >= FLUSH_SECONDS:
            self.flush()

    def flush(self) -> None:
        if self.buf:
            data = memoryview(b"".join(self.buf))
            self.buf.clear()
            self.size = 0
            while data:
                data = data[os.write(self.fd, data):]
        self.last = time.monotonic()


class RunOutput:
    """One ``-o FILE`` run: ``begin`` (sidecar; on ``--resume`` the patients done and their lines), the lines
    through ``out``, then ``finish`` (rename, manifest). Used as a context manager around the run's loop: an
    exception (Ctrl-C, an error) writes out the whole lines held and keeps ``FILE.partial``."""

    def __init__(self, args: argparse.Namespace, command: str) -> None:
        self.args, self.command = args, command
        self.path = Path(args.output)
        self.partial = self.path.with_name(self.path.name + ".partial")
        self.sidecar = self.path.with_name(self.path.name + ".partial.json")
        self.manifest = self.path.with_name(self.path.name + ".manifest.json")
        self.resume = bool(args.resume)
        self.done: set[str] = set()
        self.previous: list[dict[str, Any]] = []
        self.out: LineWriter | None = None
        self.fd = -1
        self.info: dict[str, Any] = {}

    @classmethod
    def from_args(cls, args: argparse.Namespace, command: str, *, resumable: bool = True) -> RunOutput | None:
        """The run's output file, or None without ``-o``. Checks the options that go with it (exit 2)."""
        if not getattr(args, "output", None):
            if getattr(args, "resume", False):
                usage_error("--resume needs -o FILE (the output file of the run to continue)")
            return None
        run = cls(args, command)
        if run.resume:
            if not resumable:
                usage_error("--resume needs JSON lines of every patient (--format jsonl, no --dry-run, no --only): "
                            "the patients already done are read from them")
            if not run.partial.exists() and run.path.exists() and run.sidecar.exists() and not run.manifest.exists():
                os.replace(run.path, run.partial)  # killed between the rename and the manifest: not finished
            if not run.partial.exists():
                usage_error(f"--resume: no {run.partial.name} to continue (an earlier run finished, or none was "
                            f"started with -o {run.path})")
            if not run.sidecar.exists():
                usage_error(f"--resume: {run.sidecar.name} is missing: the options of the interrupted run are not "
                            "known; start again without --resume")
        elif run.partial.exists():
            usage_error(f"{run.partial} exists: an earlier run did not finish; --resume continues it, or remove it "
                        "to start again")
        return run

    def begin(self, source: Any, study_files: Iterable[Any] = ()) -> LineWriter:
        """Write the sidecar (or, resuming, check it and read the patients done); the writer of the lines."""
        args = self.args
        options = options_of(args)
        info = {"command": self.command, "as_of": options.get("as_of"), "options": options,
                "study_files": [_file_entry(f) for f in study_files],
                "site_file": _file_entry(_site(args)), "inputs": inputs_of(source, args.source),
                "adapter_version": __version__, "started": _now()}
        if self.resume:
            before = json.loads(self.sidecar.read_text())
            differ = [k for k in COMPARED if before.get(k) != info[k]]
            if differ:
                detail = "; ".join(_difference(k, before.get(k), info[k]) for k in differ)
                usage_error(f"--resume: this run differs from the interrupted one ({detail}); run it with the same "
                            f"options and inputs, or remove {self.partial.name} to start again")
            info["started"] = before["started"]
            info["resumed"] = [*before.get("resumed", []), _now()]
            self._read_partial()
            self.fd = os.open(self.partial, os.O_WRONLY | os.O_APPEND)
        else:
            self.fd = os.open(self.partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        _write_json(self.sidecar, info)
        self.info = info
        self.out = LineWriter(self.fd)
        return self.out

    def _read_partial(self) -> None:
        """The lines of the interrupted run: their patients are done. A last line without its end (the run was
        killed while writing it) is cut off the file."""
        data = self.partial.read_bytes()
        end = data.rfind(b"\n") + 1
        if end < len(data):
            os.truncate(self.partial, end)
        for n, line in enumerate(data[:end].splitlines(), start=1):
            if not line.strip():
                continue
            try:
                obj = orjson.loads(line)
                pid = obj["patient"]
            except (orjson.JSONDecodeError, KeyError, TypeError):
                usage_error(f"--resume: {self.partial.name} line {n} is not a result line; start again without "
                            "--resume")
            self.done.add(str(pid).removeprefix("Patient/"))
            self.previous.append(obj)

    def skip_done(self, fn: Callable[[Any], Any], done: Any = None) -> Callable[[Any], Any]:
        """``fn`` for the patients not done yet; ``done`` (default None) for those already in the file."""
        if not self.done:
            return fn
        ids = frozenset(self.done)

        def wrapped(record: Any) -> Any:
            return done if record.patient_id in ids else fn(record)

        return wrapped

    def __enter__(self) -> RunOutput:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        if kind is None or self.fd < 0:
            return
        try:  # the whole lines held are results: keep them for --resume
            if self.out is not None:
                self.out.flush()
        finally:
            os.close(self.fd)
            self.fd = -1
        if kind is not SystemExit:
            print(f"fhir-adapter: {self.partial} kept ({'interrupted' if kind is KeyboardInterrupt else 'stopped'}): "
                  f"the same command with --resume continues it", file=sys.stderr)

    def finish(self, status: int, counts: dict[str, Any], report: Any = None) -> None:
        """Rename ``FILE.partial`` to ``FILE``, then write the manifest (last). Ctrl-C is ignored for these few
        milliseconds, so it cannot leave ``FILE`` without its manifest; a kill there can, and ``--resume`` then takes
        ``FILE`` back as the partial file (``from_args``)."""
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN) if _main_thread() else None
        try:
            self._finish(status, counts, report)
        finally:
            if previous is not None:
                signal.signal(signal.SIGINT, previous)

    def _finish(self, status: int, counts: dict[str, Any], report: Any) -> None:
        assert self.out is not None
        self.out.flush()
        os.fsync(self.fd)
        os.close(self.fd)
        self.fd = -1
        if self.manifest.exists():  # an earlier run's: it must not stand beside this run's file
            self.manifest.unlink()
        os.replace(self.partial, self.path)
        _fsync_dir(self.path.parent)
        lines = sum(1 for _ in _lines(self.path))
        manifest = {**self.info, "output": str(self.path), "finished": _now(), "exit_status": status,
                    "complete": status != 3 and not (report is not None and report.patients_not_read),
                    "lines": lines, "output_sha256": sha256_file(self.path), "counts": counts}
        if report is not None:
            manifest["source_report"] = report.as_dict()
            if self.info.get("resumed"):
                manifest["source_report_note"] = "of the last resumed part: each part reads the source again"
        _write_json(self.manifest, manifest)
        self.sidecar.unlink(missing_ok=True)


def _main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


def _lines(path: Path) -> Iterable[bytes]:
    with path.open("rb") as f:
        for line in f:
            if line.strip():
                yield line


def _site(args: argparse.Namespace) -> Any:
    if getattr(args, "site", None):
        return args.site
    if getattr(args, "source", None) == "sample":
        from fhir_adapter.paths import sample_dir

        return sample_dir().parent / "site-mappings.json"
    return None


def _difference(key: str, before: Any, now: Any) -> str:
    if key == "options" and isinstance(before, dict) and isinstance(now, dict):
        names = sorted(k for k in before.keys() | now.keys() if before.get(k) != now.get(k))
        return "options " + ", ".join(f"--{k.replace('_', '-')} {before.get(k)!r} -> {now.get(k)!r}" for k in names)
    return {"study_files": "the study file changed", "site_file": "the site file changed",
            "inputs": "the input files changed", "command": f"command {before!r} -> {now!r}"}.get(key, key)


def _write_json(path: Path, data: dict[str, Any]) -> None:
    """Write a JSON file whole: to a temporary name, synced, then renamed over ``path``."""
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("wb") as f:
        f.write(orjson.dumps(data, option=orjson.OPT_INDENT_2) + b"\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
