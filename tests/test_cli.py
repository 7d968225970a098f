"""The command line: results on standard output, messages and the summary on standard error."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import orjson

from tests.sources.test_ndjson_source import obs, patient, write


def run_cli(*args: str, stdin: str | None = None, env: dict[str, str] | None = None,
            timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """``fhir-adapter ARGS`` in a new process; ``env`` replaces the environment when given."""
    return subprocess.run([sys.executable, "-m", "fhir_adapter.cli.main", *args], capture_output=True, text=True,
                          input=stdin, env=env, timeout=timeout)


def test_records_prints_one_json_line_per_patient(tmp_path: Path) -> None:
    write(tmp_path / "Patient.ndjson", [patient("a"), patient("b")])
    write(tmp_path / "Observation.ndjson", [obs("o1", "a"), b"garbage", obs("o2", "b"), obs("o3", "b")])
    done = run_cli("records", "--source", str(tmp_path), "--workers", "2")
    assert done.returncode == 0, done.stderr
    lines = [orjson.loads(x) for x in done.stdout.splitlines()]
    assert sorted(lines, key=lambda x: x["patient"]) == [{"patient": "Patient/a", "resources": {"Observation": 1}},
                                                         {"patient": "Patient/b", "resources": {"Observation": 2}}]
    assert "Observation.ndjson line 2" in done.stderr and "not JSON" in done.stderr
    assert "2 patient records" in done.stderr


def test_missing_source_is_a_clear_error(tmp_path: Path) -> None:
    done = run_cli("records", "--source", str(tmp_path / "nope"))
    assert done.returncode == 1
    assert "no such file or folder" in done.stderr
    assert done.stdout == ""


def test_file_path_imports_no_http_client_or_web_framework(tmp_path: Path) -> None:
    write(tmp_path / "Patient.ndjson", [patient("a")])
    code = (f"import sys; from fhir_adapter.cli.main import main; main(['records', '--source', {str(tmp_path)!r}]); "
            "bad = [m for m in ('requests', 'fastapi', 'fhir.resources', 'jsonschema') if m in sys.modules]; "
            "sys.exit(3 if bad else 0)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr


def test_a_requested_patient_not_in_the_source_is_an_error(tmp_path: Path) -> None:
    """Exit status 0 means every patient got a result (issue 4 item 7): a missing --patient is named, exit 1."""
    write(tmp_path / "Patient.ndjson", [patient("a")])
    for command in (["records"], ["screen", "--study", "NCT07377058", "--as-of", "2026-06-30"],
                    ["response", "--study", "NCT04966884"]):
        done = run_cli(*command, "--source", str(tmp_path), "--patient", "a", "--patient", "nosuch")
        assert done.returncode == 1, (command, done.stderr)
        assert "no record for patient 'nosuch' in the source" in done.stderr
        assert len(done.stdout.splitlines()) == 1 and "Patient/a" in done.stdout  # the one that exists


def test_exit_status_tells_a_scheduler_whether_the_run_is_complete(capsys) -> None:
    from fhir_adapter.cli.common import exit_status
    from fhir_adapter.sources.report import ReadReport

    complete = ReadReport()
    complete.skip("Observation.ndjson line 2", "not JSON", kind="not JSON")  # a skipped resource: still complete
    assert exit_status(complete, None, {"a", "b"}) == 0
    incomplete = ReadReport()
    incomplete.patient_not_read("Patient/c", "GET /Condition?subject=Patient/c", "HTTP 500", kind="server error")
    assert exit_status(incomplete, None, {"a", "b"}) == 3
    assert "incomplete: 1 patient not read (2 got a result)" in capsys.readouterr().err
    assert exit_status(incomplete, None, set()) == 1  # nothing could be read
    assert exit_status(complete, ["a", "z"], {"a"}) == 1  # a patient asked for is not in the source
    assert any("INCOMPLETE: 1 patient" in line for line in incomplete.summary_lines())


def test_help_documents_every_exit_status() -> None:
    done = run_cli("screen", "--help")
    assert done.returncode == 0
    for status in ("0 ", "1 ", "2 ", "3 ", "130"):
        assert f"\n  {status}" in done.stdout, status
