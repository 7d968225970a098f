"""End to end on the real server: screen from the server with --write-back, change one source Observation,
screen again, and exactly the affected results get a new version (issue 6, tests)."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import orjson
import pytest

from fhir_adapter.client import FhirClient
from fhir_adapter.paths import sample_dir
from fhir_adapter.record.assemble import patient_of
from fhir_adapter.terminology.catalog import Catalog
from fhir_adapter.writeback.build import OBSERVATION_SYSTEM, SUBJECT_SYSTEM

pytestmark = pytest.mark.server
CHANGED, UNCHANGED = "mda5-ild-01", "mda5-cadm-no-ild"  # both candidates on 2026-06-30
SITE = sample_dir().parent / "site-mappings.json"


def load(client: FhirClient, patients: set[str]) -> None:
    """PUT the two patients' resources (and the shared Medications) from the sample into the server."""
    entries = []
    for f in sorted(sample_dir().glob("*.ndjson")):
        for line in f.read_bytes().splitlines():
            r = orjson.loads(line)
            if r["resourceType"] == "Medication" or patient_of(r) in patients:
                entries.append({"resource": r, "request": {"method": "PUT", "url": f"{r['resourceType']}/{r['id']}"}})
    client.transaction({"resourceType": "Bundle", "type": "transaction", "entry": entries})


def screen(fhir_base: str) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [sys.executable, "-m", "fhir_adapter.cli.main", "screen", "--study", "NCT07377058", "--source", fhir_base,
         "--as-of", "2026-06-30", "--patient", CHANGED, "--patient", UNCHANGED, "--site", str(SITE),
         "--write-back"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return done


def written(client: FhirClient, pid: str) -> dict[str, dict[str, Any]]:
    """The adapter's ResearchSubject and screening Observation of a patient, found by their identifiers."""
    subject = list(client.search("ResearchSubject", {"identifier": f"{SUBJECT_SYSTEM}|NCT07377058/{pid}"}))
    obs = list(client.search("Observation", {"identifier": f"{OBSERVATION_SYSTEM}|NCT07377058/{pid}/screening"}))
    assert len(subject) == 1 and len(obs) == 1, (pid, subject, obs)
    return {"subject": subject[0], "screening": obs[0]}


def latest_wbc(client: FhirClient, pid: str) -> dict[str, Any]:
    catalog = Catalog.load(SITE)
    wbc = [o for o in client.search("Observation", {"subject": f"Patient/{pid}"})
           if any(c.id == "wbc" for c in catalog.classify(o.get("code"))) and "valueQuantity" in o]
    return max(wbc, key=lambda o: o.get("effectiveDateTime", ""))


def test_a_changed_source_observation_updates_exactly_the_affected_results(fhir_base: str) -> None:
    with FhirClient(fhir_base) as client:
        load(client, {CHANGED, UNCHANGED})
        screen(fhir_base)
        before = {pid: written(client, pid) for pid in (CHANGED, UNCHANGED)}
        assert before[CHANGED]["subject"]["status"] == "candidate"

        again = screen(fhir_base)  # nothing changed: nothing written
        assert "wrote 0 resources" in again.stderr
        assert {pid: written(client, pid) for pid in (CHANGED, UNCHANGED)} == before

        # E3a (protocol: "white blood cell count <3.0 x 10^9/L"): the latest WBC becomes 2.5 (10*9/L and
        # 10*3/uL are the same number)
        obs = latest_wbc(client, CHANGED)
        obs["valueQuantity"] = {**obs["valueQuantity"], "value": 2.5}
        client.update(obs)
        screen(fhir_base)
        after = {pid: written(client, pid) for pid in (CHANGED, UNCHANGED)}

    changed, kept = after[CHANGED], after[UNCHANGED]
    assert changed["subject"]["status"] == "ineligible"
    for kind in ("subject", "screening"):
        assert int(changed[kind]["meta"]["versionId"]) == int(before[CHANGED][kind]["meta"]["versionId"]) + 1
        assert kept[kind]["meta"]["versionId"] == before[UNCHANGED][kind]["meta"]["versionId"]  # untouched
    e3 = next(c for c in changed["screening"]["component"]
              if any(x.get("code") == "E3" for x in c["code"].get("coding", [])))  # one component per criterion
    assert any(x.get("code") == "met" for x in e3["valueCodeableConcept"]["coding"])
    assert "E3a WBC 2.5" in e3["valueCodeableConcept"]["text"]
    e3a = next(c for c in changed["screening"]["component"]
               if any(x.get("code") == "E3a" for x in c["code"].get("coding", [])))  # and one per part
    assert any(x.get("code") == "met" for x in e3a["valueCodeableConcept"]["coding"])
    assert "WBC 2.5" in e3a["valueCodeableConcept"]["text"]
    assert f"Observation/{obs['id']}" in {d["reference"] for d in changed["screening"]["derivedFrom"]}
