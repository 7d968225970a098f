"""Size limits of file sources: a line too long, a gzip file that inflates without end, a gzip file cut short."""

from __future__ import annotations

import gzip
import os
import subprocess
import sys
import tracemalloc
from pathlib import Path

import orjson
import pytest

from fhir_adapter.errors import ConfigError
from fhir_adapter.sources.limits import max_line_bytes, parse_size
from fhir_adapter.sources.ndjson import NdjsonSource
from fhir_adapter.sources.reading import TOO_LONG, file_lines, too_long_size
from tests.sources.test_ndjson_source import obs, patient, write

MB = 1 << 20


def bomb(path: Path, pid: str, inflated: int, after: list[bytes]) -> Path:
    """A small gzip file whose first line (an Observation of ``pid``) inflates to ``inflated`` bytes, then ``after``
    (a plain file of that line when ``path`` does not end in .gz). Written a megabyte at a time: the test never
    holds it whole."""
    with (gzip.open(path, "wb", compresslevel=1) if path.name.endswith(".gz") else open(path, "wb")) as f:
        f.write(b'{"resourceType":"Observation","id":"big","subject":{"reference":"Patient/%s"},"valueString":"'
                % pid.encode())
        block = b"x" * MB
        for _ in range(inflated // MB):
            f.write(block)
        f.write(b'"}\n' + b"".join(line + b"\n" for line in after))
    return path


@pytest.mark.parametrize("name", ["Observation.ndjson.gz", "Observation.ndjson"])
def test_a_line_too_long_is_read_past_in_bounded_memory(tmp_path: Path, name: str) -> None:
    """64 MB of one line (from a gzip file of well under a megabyte, or a plain file): memory stays near the limit,
    not the line, and the lines after it are read."""
    f = bomb(tmp_path / name, "p1", 64 * MB, [orjson.dumps(obs("o2", "p2"))])
    assert f.stat().st_size < MB or not name.endswith(".gz")
    tracemalloc.start()
    try:
        lines = list(file_lines(f, 4 * MB))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 16 * MB, peak
    assert len(lines) == 2 and lines[0].startswith(TOO_LONG) and too_long_size(lines[0]) > 64 * MB
    assert b"Patient/p1" in lines[0] and orjson.loads(lines[1])["id"] == "o2"


def peak_rss(args: list[str], env: dict[str, str]) -> tuple[int, str, str, int]:
    """Exit status, standard output and error, and peak resident memory (bytes) of ``fhir-adapter ARGS``."""
    proc = subprocess.Popen([sys.executable, "-m", "fhir_adapter.cli.main", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=env)
    out = proc.stdout.read()  # type: ignore[union-attr]
    err = proc.stderr.read()  # type: ignore[union-attr]
    _, status, usage = os.wait4(proc.pid, 0)
    return os.waitstatus_to_exitcode(status), out.decode(), err.decode(), usage.ru_maxrss * 1024


def test_a_gzip_bomb_in_a_population_names_the_line_and_reads_the_rest(tmp_path: Path) -> None:
    calm, boom = tmp_path / "calm", tmp_path / "boom"
    for d in (calm, boom):
        d.mkdir()
        write(d / "Patient.ndjson", [patient("p1"), patient("p2")])
    write(calm / "Observation.ndjson", [obs("o2", "p2")])
    bomb(boom / "Observation.ndjson.gz", "p1", 96 * MB, [orjson.dumps(obs("o2", "p2"))])
    env = {**os.environ, "FHIR_ADAPTER_MAX_LINE_BYTES": "4M"}
    args = ["records", "--workers", "1", "--source"]
    status, _, err, base = peak_rss([*args, str(calm)], env)
    assert status == 0, err
    status, out, err, peak = peak_rss([*args, str(boom)], env)
    assert status == 0, err  # every patient got a record
    records = {r["patient"]: r for r in map(orjson.loads, out.splitlines())}
    assert records["Patient/p2"]["resources"] == {"Observation": 1}
    (named,) = records["Patient/p1"]["unreadable"]
    assert named.startswith("Observation.ndjson.gz line 1: a line of 100,663,3")
    assert "over the limit of 4,194,304 (FHIR_ADAPTER_MAX_LINE_BYTES)" in named
    assert peak - base < 32 * MB, (peak, base)  # the 96 MB line never was in memory


def test_a_gzip_file_cut_short_makes_the_run_incomplete(tmp_path: Path) -> None:
    """What follows the break is lost and whose it was cannot be known: exit status 3, and no record may conclude
    that it holds no Observation."""
    write(tmp_path / "Patient.ndjson", [patient("p1"), patient("p2")])
    whole = gzip.compress(b"".join(orjson.dumps(obs(f"o{i}", f"p{1 + i % 2}", value=i)) + b"\n"
                                   for i in range(2000)))
    (tmp_path / "Observation.ndjson.gz").write_bytes(whole[: len(whole) // 2])
    source = NdjsonSource(tmp_path, workers=1)
    records = {r.patient_id: r for r in source.records()}
    assert sorted(records) == ["p1", "p2"]
    read = sum(len(r.of("Observation")) for r in records.values())
    assert 0 < read < 2000
    for r in records.values():
        (cut,) = r.unreadable
        assert cut.resource_type == "Observation" and cut.where == f"Observation.ndjson.gz after line {read}"
        assert r.unread(("Observation",)) and not r.unread(("Condition",))
    assert source.report.not_read == {"file cut short": 1}
    assert [w for _, w in NdjsonSource(tmp_path).resources({"Observation"})][-1] == f"Observation.ndjson.gz line {read}"


def test_lines_over_the_limit_are_named_whatever_their_size(tmp_path: Path) -> None:
    """A line just over the limit (shorter than a read) is refused like a huge one, with its patient's record."""
    write(tmp_path / "Patient.ndjson", [patient("p1")])
    write(tmp_path / "Observation.ndjson", [obs("o1", "p1", note=[{"text": "y" * 5000}]), obs("o2", "p1")])
    source = NdjsonSource(tmp_path, workers=1, max_line_bytes=4000)
    (record,) = source.records()
    assert [o["id"] for o in record.of("Observation")] == ["o2"]
    (u,) = record.unreadable
    assert u.where == "Observation.ndjson line 1" and "over the limit of 4,000" in u.reason
    assert [r["id"] for r, _ in NdjsonSource(tmp_path, max_line_bytes=4000).resources({"Observation"})] == ["o2"]


def test_the_limit_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FHIR_ADAPTER_MAX_LINE_BYTES", raising=False)
    assert max_line_bytes() == 64 * MB
    monkeypatch.setenv("FHIR_ADAPTER_MAX_LINE_BYTES", "2M")
    assert max_line_bytes() == 2 * MB
    assert parse_size("1024", "X") == 1024 and parse_size("3 GiB", "X") == 3 << 30
    for bad in ("", "-1", "0", "lots", "1T"):
        with pytest.raises(ConfigError, match="X="):
            parse_size(bad, "X")
