"""What the command line says of each ``--patient`` without a result of its own, and its exit status: merged into
another Patient (its result is that one's: 0), in the source but not readable (3), not in the source (1)."""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Iterator
from pathlib import Path

import orjson
import pytest

from fhir_adapter.cli.common import exit_status
from fhir_adapter.cli.main import main
from fhir_adapter.client import FhirClient, RetryPolicy
from fhir_adapter.client import client as client_module
from fhir_adapter.sources.report import NOT_READ_IDS, ReadReport
from tests.fault_proxy import FaultProxy, Rule
from tests.sources.test_ndjson_source import obs, patient, write
from tests.test_cli import run_cli

Cli = Callable[..., tuple[int, list[bytes], str]]


@pytest.fixture
def cli(monkeypatch: pytest.MonkeyPatch, capsysbinary: pytest.CaptureFixture[bytes]) -> Iterator[Cli]:
    """``cli(*args)``: the command run here, retry waits not slept; (exit status, stdout lines, stderr)."""
    monkeypatch.setattr(client_module, "RetryPolicy", functools.partial(RetryPolicy, sleep=lambda s: None))
    logger = logging.getLogger("fhir_adapter")
    saved = logger.handlers[:], logger.level, logger.propagate

    def run(*args: str) -> tuple[int, list[bytes], str]:
        try:
            status = main(list(args))
        finally:
            logger.handlers[:], logger.level, logger.propagate = saved
        out, err = capsysbinary.readouterr()
        return status, out.splitlines(), err.decode()

    yield run


def test_a_patient_merged_into_another_is_not_missing(tmp_path: Path) -> None:
    write(tmp_path / "Patient.ndjson", [
        {**patient("old"), "link": [{"other": {"reference": "Patient/new"}, "type": "replaced-by"}]},
        patient("new"), patient("other")])
    write(tmp_path / "Observation.ndjson", [obs("o1", "old"), obs("o2", "new")])
    for extra in ([], ["--workers", "2"]):
        done = run_cli("records", "--source", str(tmp_path), "--patient", "old", *extra)
        assert done.returncode == 0, done.stderr
        (line,) = map(orjson.loads, done.stdout.splitlines())
        assert line["patient"] == "Patient/new" and line["merged"] == ["Patient/old"]
        assert "patient 'old' was merged into Patient/new" in done.stderr
        assert "no record for patient" not in done.stderr
    done = run_cli("records", "--source", str(tmp_path), "--patient", "old", "--patient", "nosuch")
    assert done.returncode == 1 and "no record for patient 'nosuch' in the source" in done.stderr


@pytest.mark.server
@pytest.mark.usefixtures("one_search_per_type")  # the fault is aimed at a Condition search
def test_a_patient_the_server_could_not_read_is_said_so_and_the_run_exits_3(fhir_base: str, tag: str,
                                                                           cli: Cli) -> None:
    with FhirClient(fhir_base) as client:
        ids = [client.update({"resourceType": "Patient", "id": f"{tag}-{n}", "gender": "male"})["id"]
               for n in ("good", "flaky")]
    proxy = FaultProxy(fhir_base, rules=(Rule(f"/Condition?subject=Patient/{ids[1]}&", "503"),))
    with proxy.running():
        status, lines, err = cli("records", "--source", proxy.base, "--patient", ids[0], "--patient", ids[1])
    assert status == 3, err
    assert [orjson.loads(line)["patient"] for line in lines] == [f"Patient/{ids[0]}"]
    assert f"patient {ids[1]!r} is in the source but could not be read" in err
    assert "no record for patient" not in err and "incomplete: 1 patient not read" in err
    with proxy.running():  # asked for alone: nothing read, but the patient is in the source: still 3
        status, lines, err = cli("records", "--source", proxy.base, "--patient", ids[1])
    assert status == 3 and lines == [] and f"patient {ids[1]!r} is in the source but could not be read" in err


def test_exit_status_of_patients_asked_for(capsys: pytest.CaptureFixture[str]) -> None:
    report = ReadReport()
    report.patient_not_read("Patient/b", "GET /Condition?subject=Patient/b", "HTTP 500", kind="server error",
                            also=["b-old"])
    report.merged_into("a-old", "a")
    assert exit_status(report, ["a-old", "b"], {"a"}) == 3
    assert exit_status(report, ["b-old"], set()) == 3  # merged into a patient not read
    assert exit_status(report, ["a-old", "z"], {"a"}) == 1  # z is not in the source
    err = capsys.readouterr().err
    assert "patient 'a-old' was merged into Patient/a" in err and "patient 'b' is in the source but could not" in err
    assert "no record for patient 'z' in the source" in err
    cut = ReadReport()  # a file cut short: whose patients were lost is not known
    cut.patient_not_read(None, "Observation.ndjson.gz after line 9", "the file breaks off", kind="file cut short")
    assert exit_status(cut, ["a", "z"], {"a"}) == 3
    assert "no record for patient 'z' in what could be read" in capsys.readouterr().err
    assert exit_status(ReadReport(), None, set()) == 0


def test_the_ids_of_patients_not_read_are_bounded_and_merge() -> None:
    one, two = ReadReport(), ReadReport()
    for i in range(NOT_READ_IDS):
        one.patient_not_read(f"Patient/p{i}", "x", "y", kind="k")
    two.patient_not_read("Patient/last", "x", "y", kind="k")
    two.merged_into("o", "n")
    one.merge(two)
    assert len(one.not_read_ids) == NOT_READ_IDS and one.not_read_ids_full and "last" not in one.not_read_ids
    assert one.patients_not_read == NOT_READ_IDS + 1 and one.merged == {"o": "n"}
