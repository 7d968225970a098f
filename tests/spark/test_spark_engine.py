"""The Spark engine gives the command line's result lines, line for line and in its order, and its read report:
on the sample, on bad input (lines that cannot be read, merged Patients, a shared Medication, references the JVM
cannot read) and on a generated population."""

from __future__ import annotations

import json
import logging
import re
import subprocess
import sys
from collections.abc import Callable
from datetime import date
from pathlib import Path

import orjson
import pytest

from fhir_adapter.cli.main import main
from fhir_adapter.paths import sample_dir
from fhir_adapter.sources.report import ReadReport
from fhir_adapter.spark import response_dataframe, screen_dataframe
from tests.sources.test_ndjson_source import condition, obs, patient, write

GENERATOR = Path(__file__).resolve().parents[3] / "shared" / "bench" / "gen_population.py"
PROMIS, TOFACITINIB = "NCT07377058", "NCT04966884"
Run = Callable[..., tuple[int, list[bytes], list[str]]]
PROGRESS = re.compile(r"fhir-adapter: [\w -]+: [\d,]+ \w+, [\d,.]+/s, [\d:]+ elapsed")  # timings differ run to run


@pytest.fixture
def cli(spark: object, capsysbinary: pytest.CaptureFixture[bytes], monkeypatch: pytest.MonkeyPatch) -> Run:
    """``cli(*args)``: the command run here (the Spark engine uses the tests' session): status, stdout lines, the
    ``fhir-adapter:`` lines of stderr, without the progress lines (they depend on how long each engine takes)."""
    logger = logging.getLogger("fhir_adapter")
    monkeypatch.setenv("FHIR_ADAPTER_PROGRESS_SECONDS", "1e9")

    def run(*args: str) -> tuple[int, list[bytes], list[str]]:
        saved = logger.handlers[:], logger.level, logger.propagate
        try:
            status = main(list(args))
        finally:
            logger.handlers[:], logger.level, logger.propagate = saved
        out, err = capsysbinary.readouterr()
        return status, out.splitlines(), [x for x in err.decode().splitlines()
                                          if x.startswith("fhir-adapter:") and not PROGRESS.match(x)]

    return run


def both(cli: Run, *args: str) -> tuple[tuple[int, list[bytes], list[str]], tuple[int, list[bytes], list[str]]]:
    return cli(*args), cli(*args, "--engine", "spark")


def test_sample_screen_is_the_command_lines(cli: Run) -> None:
    local, spark = both(cli, "screen", "--study", PROMIS, "--source", "sample", "--as-of", "2026-06-30")
    assert len(local[1]) == 108
    assert spark == local


def test_sample_response_is_the_command_lines(cli: Run) -> None:
    local, spark = both(cli, "response", "--study", TOFACITINIB, "--source", "sample")
    assert local[1]
    assert spark == local


def test_screen_dataframe_holds_the_command_lines_results(spark: object, cli: Run) -> None:
    status, lines, _ = cli("screen", "--study", PROMIS, "--source", "sample", "--as-of", "2026-06-30", "--all-criteria")
    assert status == 0
    report = ReadReport()
    df = screen_dataframe(spark, str(sample_dir()), PROMIS, date(2026, 6, 30), all_criteria=True,
                          site=sample_dir().parent / "site-mappings.json", report=report)
    assert df.columns == ["patient", "mrn", "status", "result"]
    rows = {r["patient"]: r for r in df.collect()}
    expected = {orjson.loads(x)["patient"].removeprefix("Patient/"): x for x in lines}
    assert sorted(rows) == sorted(expected)
    for pid, line in expected.items():
        got = rows[pid]
        assert got["result"].encode() == line
        assert got["status"] == orjson.loads(line)["status"]
        assert got["mrn"] == orjson.loads(line).get("mrn")
    assert report.as_dict() and any("look-back" in line for line in report.summary_lines())  # the prefilter's count


def test_response_dataframe_scores_the_same_patients(spark: object, cli: Run) -> None:
    _, lines, _ = cli("response", "--study", TOFACITINIB, "--source", "sample")
    df = response_dataframe(spark, str(sample_dir()), TOFACITINIB, site=sample_dir().parent / "site-mappings.json")
    scored = {r["patient"]: r["result"].encode() for r in df.collect() if r["result"] is not None}
    assert scored == {orjson.loads(x)["patient"].removeprefix("Patient/"): x for x in lines}


def bad_folder(d: Path) -> Path:
    """Lines that cannot be read, for a patient and for none; a Patient merged into another; a shared Medication;
    a reference the JVM does not read (an absolute URL); a blank line; a type no criterion uses; a gzip file."""
    d.mkdir()
    write(d / "Patient.ndjson", [
        patient("p1"), patient("p2"),
        {**patient("old"), "link": [{"other": {"reference": "Patient/new"}, "type": "replaced-by"}]},
        patient("new"),
        b'{"resourceType":"Patient","id":"broken","birthDate":',  # a Patient that cannot be read
        b"",
        {"resourceType": "Patient", "id": "p3", "gender": "male", "birthDate": "1971-02-03"},
    ])
    write(d / "Condition.ndjson", [condition("c1", "p1"), condition("c2", "old"), condition("c3", "new"),
                                   condition("c4", "p2", verification="refuted")])
    with_url = obs("o3", "p2")
    with_url["subject"] = {"reference": "http://example.org/fhir/Patient/p2"}
    write(d / "Observation.ndjson", [
        obs("o1", "p1"), b"not json at all", obs("o2", "old"), with_url,
        b'{"resourceType":"Observation","id":"o4","subject":{"reference":"Patient/p1"},"status":',
        {"resourceType": "Observation", "id": "o5", "status": "final"},  # no patient
        {"resourceType": "Frobnication", "id": "x"},
        obs("o6", "p3", effectiveDateTime="1990-01-01"),  # before every look-back: skipped unparsed
    ])
    write(d / "Medication.ndjson", [{"resourceType": "Medication", "id": "m1", "code": {"coding": [
        {"system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": "1357536"}]}}])
    write(d / "Location.ndjson", [{"resourceType": "Location", "id": "l1"}])
    import gzip

    (d / "MedicationStatement.ndjson.gz").write_bytes(gzip.compress(b"".join(orjson.dumps(x) + b"\n" for x in [
        {"resourceType": "MedicationStatement", "id": "ms1", "status": "active",
         "medicationReference": {"reference": "Medication/m1"}, "subject": {"reference": "Patient/p1"},
         "effectivePeriod": {"start": "2026-01-01"}}]) + b"{broken\n"))
    return d


def test_bad_lines_are_counted_and_named_as_on_the_command_line(cli: Run, tmp_path: Path) -> None:
    src = str(bad_folder(tmp_path / "bad"))
    local, spark = both(cli, "screen", "--study", PROMIS, "--source", src, "--as-of", "2026-06-30")
    assert local[0] == 3  # the broken Patient: incomplete
    err = "\n".join(local[2])
    assert "not JSON" in err and "Observation.ndjson line 2" in err and "Frobnication" in err
    assert "1 patient" in err or "INCOMPLETE" in err
    assert "Observation dated before every look-back that reads it (skipped unparsed) 4" in err
    assert drop_warnings(spark) == drop_warnings(local)
    local, spark = both(cli, "screen", "--study", PROMIS, "--source", src, "--as-of", "2026-06-30", "--patient", "old")
    assert local[0] == 0 and len(local[1]) == 1
    assert drop_warnings(spark) == drop_warnings(local)


def drop_warnings(run: tuple[int, list[bytes], list[str]]) -> tuple[int, list[bytes], list[str]]:
    """The run without the warnings logged as each line is met: Spark's workers log theirs in their own process
    (the counts and examples of the summary are compared)."""
    return run[0], run[1], [x for x in run[2] if not x.startswith("fhir-adapter: WARNING:")]


@pytest.fixture(scope="module")
def population(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """300 generated patients, gzip files."""
    if not GENERATOR.exists():
        pytest.skip("../shared/bench/gen_population.py is not beside the project")
    out = tmp_path_factory.mktemp("population") / "n300"
    subprocess.run([sys.executable, str(GENERATOR), "300", "--out", str(out), "--gzip"], check=True,
                   stdout=subprocess.DEVNULL)
    return out


@pytest.mark.parametrize("extra", [[], ["--all-criteria"]])
def test_generated_population_is_the_command_lines(cli: Run, population: Path, extra: list[str]) -> None:
    as_of = json.loads((population / "population.json").read_text())["ref_date"]
    local, spark = both(cli, "screen", "--study", PROMIS, "--source", str(population), "--as-of", as_of, *extra)
    assert local[0] == 0 and len(local[1]) == 300
    assert spark == local
