"""Merged patients on a FHIR server: a Patient that ``link``s to another as ``replaced-by`` is screened once, under the
surviving Patient, with the resources of both, exactly as one chart holding everything; asked for by the replaced
id, the result is the survivor's and the command says so (exit 0)."""

from __future__ import annotations

import logging
from typing import Any

import orjson
import pytest

from fhir_adapter.cli.main import main
from fhir_adapter.client import FhirClient
from fhir_adapter.client.capabilities import Capabilities
from fhir_adapter.paths import sample_dir
from fhir_adapter.sources.server import ServerSource
from tests.sources.test_server_source import Recording

pytestmark = [pytest.mark.server, pytest.mark.usefixtures("one_search_per_type")]
SCREEN = ("screen", "--study", "NCT07377058", "--as-of", "2026-06-30")
SPLIT = "mda5-cadm-no-ild"  # the sample patient whose chart is split in two on the server
MOVED = ("Observation", "MedicationStatement")  # the types that move to the replaced chart


def link(other: str, kind: str = "replaced-by") -> list[dict[str, Any]]:
    return [{"other": {"reference": f"Patient/{other}"}, "type": kind}]


def chart(tag: str) -> tuple[str, list[dict[str, Any]]]:
    """The sample patient ``SPLIT`` under a new id (and its resources under new ids, without the sample's tag: other
    tests count the sample on the shared server by it), with the Medications."""
    new = f"{tag}-{SPLIT}"
    out = []
    for f in sorted(sample_dir().glob("*.ndjson")):
        for line in f.read_bytes().splitlines():
            if f.name == "Medication.ndjson":
                out.append(orjson.loads(line))
            elif SPLIT.encode() in line:  # every resource of the patient has an id that starts with its id
                resource = orjson.loads(line.replace(SPLIT.encode(), new.encode()))
                resource.pop("meta", None)
                out.append(resource)
    return new, out


def put(client: FhirClient, resources: list[dict[str, Any]]) -> None:
    client.batch({"resourceType": "Bundle", "type": "batch", "entry": [
        {"resource": r, "request": {"method": "PUT", "url": f"{r['resourceType']}/{r['id']}"}} for r in resources]})


def screen(capsysbinary: pytest.CaptureFixture[bytes], base: str, *patients: str) -> tuple[int, list[bytes], str]:
    """The screen command run here: (exit status, its lines, standard error). The package logger is left as it was
    (the command gives it a handler on this test's standard error)."""
    logger = logging.getLogger("fhir_adapter")
    saved = logger.handlers[:], logger.level, logger.propagate
    try:
        status = main([*SCREEN, "--source", base, *(a for p in patients for a in ("--patient", p))])
    finally:
        logger.handlers[:], logger.level, logger.propagate = saved
    out, err = capsysbinary.readouterr()
    return status, out.splitlines(), err.decode()


@pytest.fixture
def split_chart(fhir_base: str, tag: str, capsysbinary: pytest.CaptureFixture[bytes]) -> dict[str, Any]:
    """The chart whole on the server, its line, then its Observations and MedicationStatements moved to a second
    Patient (``old``) that is not (yet) linked."""
    new, resources = chart(tag)
    old = f"{tag}-old-chart"
    with FhirClient(fhir_base) as client:
        put(client, resources)
        status, whole, err = screen(capsysbinary, fhir_base, new)
        assert status == 0, err
        (patient,) = [r for r in resources if r["resourceType"] == "Patient"]
        moved = [r for r in resources if r["resourceType"] in MOVED]
        assert len(moved) >= 10
        put(client, [{**patient, "id": old}, *({**r, "subject": {"reference": f"Patient/{old}"}} for r in moved)])
    return {"new": new, "old": old, "patient": patient, "whole": whole, "moved": len(moved)}


def test_a_merged_patient_is_screened_once_under_the_survivor_as_one_chart(
        fhir_base: str, split_chart: dict[str, Any], capsysbinary: pytest.CaptureFixture[bytes]) -> None:
    new, old, whole = split_chart["new"], split_chart["old"], split_chart["whole"]
    status, apart, _ = screen(capsysbinary, fhir_base, new, old)
    assert status == 0 and len(apart) == 2 and apart[0] != whole[0]  # the moved resources matter
    with FhirClient(fhir_base) as client:
        client.update({**split_chart["patient"], "id": old, "link": link(new)})
    for asked in ([new], [old], [old, new], [new, old]):
        status, lines, err = screen(capsysbinary, fhir_base, *asked)
        assert status == 0, (asked, err)
        assert lines == whole, asked  # one line, under the survivor, as from the chart whole
        if old in asked:
            assert f"patient '{old}' was merged into Patient/{new}" in err
            assert "no record for patient" not in err


def test_the_survivor_may_state_the_merge_alone_and_chains_are_followed(
        fhir_base: str, split_chart: dict[str, Any], tag: str, capsysbinary: pytest.CaptureFixture[bytes]) -> None:
    new, old = split_chart["new"], split_chart["old"]
    middle = f"{tag}-middle-chart"
    with FhirClient(fhir_base) as client:
        client.update({**split_chart["patient"], "id": middle})  # states nothing itself
        client.update({**split_chart["patient"], "id": old, "link": link(middle)})  # old -> middle
        client.update({**split_chart["patient"], "id": new, "link": link(middle, "replaces")})  # middle -> new
    with ServerSource(fhir_base) as source:
        records = list(source.records([old]))
    assert [r.patient_id for r in records] == [new]
    assert records[0].merged == [f"Patient/{middle}", f"Patient/{old}"]
    assert len(records[0].of("Observation")) + len(records[0].of("MedicationStatement")) == split_chart["moved"]
    assert source.report.merged == {old: new, middle: new}
    for asked in ([middle], [old]):
        status, lines, err = screen(capsysbinary, fhir_base, *asked)
        assert status == 0 and lines == split_chart["whole"], err
    # a server without Patient?link: the links of every Patient, listed once (middle -> new is stated by new only)
    session = Recording()
    client = FhirClient(fhir_base, session=session)
    caps = client.capabilities
    params = {**caps.search_params, "Patient": caps.search_params["Patient"] - {"link"}}
    client._capabilities = Capabilities(caps.fhir_version, params, caps.operations)
    source = ServerSource(fhir_base, client=client)
    got = list(source.records([old, middle, new]))
    assert [(r.patient_id, r.merged) for r in got] == [(new, [f"Patient/{middle}", f"Patient/{old}"])]
    assert not any("link=" in u for _, u in session.calls)
    assert sum("_elements=id,link" in u for _, u in session.calls) >= 1


def test_a_population_run_lists_the_links_first_and_passes_over_replaced_patients(
        fhir_base: str, split_chart: dict[str, Any], tag: str, caplog: pytest.LogCaptureFixture) -> None:
    new, old = split_chart["new"], split_chart["old"]
    gone = f"{tag}-gone"
    with FhirClient(fhir_base) as client:
        client.update({**split_chart["patient"], "id": old, "link": link(new)})
        # replaced by a Patient that is not on the server: read on its own
        lone = client.update({"resourceType": "Patient", "id": f"{tag}-lone", "link": link(gone)})
    session = Recording()
    with ServerSource(fhir_base, client=FhirClient(fhir_base, session=session)) as source, \
            caplog.at_level(logging.WARNING, logger="fhir_adapter.sources"):
        records = {r.patient_id: r for r in source.records()}
    assert old not in records and records[new].merged == [f"Patient/{old}"]
    assert len(records[new].of("Observation")) + len(records[new].of("MedicationStatement")) == split_chart["moved"]
    assert lone["id"] in records and records[lone["id"]].merged == []
    assert source.report.noted["Patient merged into the Patient that replaced it"] >= 1
    assert f"Patient/{lone['id']} is replaced by Patient/{gone}, which is not on the server" in caplog.text
    assert not any(f"/Patient/{old}" in u for _, u in session.calls)  # its Patient is not read: only searched
    assert not any("link=Patient/" in u for _, u in session.calls)  # the links pass made searches by link needless
    urls = [u for _, u in session.calls]
    links_pass = [i for i, u in enumerate(urls) if "/Patient?_elements=id,link&_count=1000" in u]
    run = [i for i, u in enumerate(urls) if "/Patient?_count=" in u]
    assert links_pass and run and max(links_pass) < min(run)  # every link is known before the first patient is read
