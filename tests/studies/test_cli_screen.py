"""``fhir-adapter screen``: output shape, stdout/stderr separation, the alias, the table, exit codes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from fhir_adapter.cli.main import main


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def test_jsonl_one_line_per_patient_results_only_on_stdout(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(["screen", "--study", "NCT07377058", "--source", "sample", "--as-of", "2026-06-30",
                          "--patient", "mda5-ild-01", "--patient", "excl-e3a-wbc", "--workers", "1"], capsys)
    assert code == 0
    lines = [orjson.loads(line) for line in out.splitlines()]
    assert {d["patient"] for d in lines} == {"Patient/mda5-ild-01", "Patient/excl-e3a-wbc"}
    for d in lines:
        assert d["study"] == "NCT07377058" and d["as_of"] == "2026-06-30"
        assert d["status"] in ("candidate", "potential-candidate", "ineligible")
        for cid in ("I1", "I8", "E3", "E3a", "E14", "E14.1", "E18"):
            assert set(d["criteria"][cid]) >= {"result", "reason", "evidence"}
    wbc = next(d for d in lines if d["patient"] == "Patient/excl-e3a-wbc")
    assert wbc["status"] == "ineligible" and wbc["criteria"]["E3a"]["result"] == "met"
    assert any(e.startswith("Observation/") for e in wbc["criteria"]["E3a"]["evidence"])
    assert "2 patient records" in err and "NCT07377058 as of 2026-06-30" in err


def test_alias_and_table(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _err = run(["screen", "--study", "promis-mda5", "--source", "sample", "--as-of", "2026-06-30",
                          "--patient", "excl-e14-2-jaki", "--format", "table", "--workers", "1"], capsys)
    assert code == 0
    rows = out.splitlines()
    assert rows[0].startswith("patient") and len(rows) == 2
    assert "excl-e14-2-jaki" in rows[1] and "ineligible" in rows[1] and "E14" in rows[1]
    assert "{" not in out


def test_randomization_and_settings(capsys: pytest.CaptureFixture[str]) -> None:
    """I4: with R one week after S, a 3-week prednisone course reaches 4 weeks (Inclusion 4)."""
    code, out, _ = run(["screen", "--study", "NCT07377058", "--source", "sample", "--as-of", "2026-06-30",
                        "--randomization", "2026-07-07", "--patient", "incl-i4-pred-3wk", "--workers", "1",
                        "--setting", "absent_records=unknown"], capsys)
    d = orjson.loads(out)
    assert code == 0 and d["randomization"] == "2026-07-07" and d["criteria"]["I4"]["result"] == "met"


def test_usage_errors(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["screen", "--study", "no-such-study", "--source", "sample", "--as-of", "2026-06-30"], capsys)[0] == 1
    with pytest.raises(SystemExit):
        main(["screen", "--study", "NCT07377058", "--source", "sample", "--as-of", "30/06/2026"])
    code, _, err = run(["screen", "--study", "NCT07377058", "--source", "sample", "--as-of", "2026-06-30",
                        "--setting", "nope=1"], capsys)
    assert code == 1 and "unknown study setting" in err


def test_screen_file_path_imports_no_http_client_or_web_framework(tmp_path: Path) -> None:
    """Screening an NDJSON folder imports no HTTP client, web framework or FHIR models."""
    (tmp_path / "Patient.ndjson").write_text('{"resourceType":"Patient","id":"a","birthDate":"1990-01-01"}\n')
    code = (f"import sys; from fhir_adapter.cli.main import main; main(['screen', '--study', 'NCT07377058', "
            f"'--source', {str(tmp_path)!r}, '--as-of', '2026-06-30']); "
            "bad = [m for m in ('requests', 'fastapi', 'fhir.resources', 'sqlalchemy', 'uvicorn') "
            "if m in sys.modules]; "
            "sys.exit(3 if bad else 0)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    line = orjson.loads(done.stdout)
    assert line["patient"] == "Patient/a" and line["criteria"]["E3a"]["result"] == "unknown"
