"""Sponsor export (mission: "sponsors who receive exported (de-identified) FHIR bundles"): no hospital id, no
real date and no source text leaves; pseudonyms and offsets are stable under one key; intervals stay true."""

from __future__ import annotations

import json
import re
from datetime import date, timedelta

import pytest

from fhir_adapter.errors import ConfigError
from fhir_adapter.export.bundles import kind_of, sponsor_bundle
from fhir_adapter.export.deidentify import FREE_TEXT_REMOVED, DeidentificationError, Pseudonymizer
from fhir_adapter.writeback import build

KEY = b"0123456789abcdef0123456789abcdef"
DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


def _screening(pid: str = "h-123", reason: str = "age 42 at screening (≥ 18)") -> dict:
    return {"patient": f"Patient/{pid}", "study": "NCT07377058", "as_of": "2026-06-30", "status": "ineligible",
            "reason": "fails E14", "criteria": {
                "I1": {"result": "met", "reason": reason, "evidence": [f"Patient/{pid}"]},
                "E14": {"result": "met", "reason": "rituximab last on 2026-03-02 (within 6 months)",
                        "evidence": ["MedicationStatement/ms-77"]},
                "E14.1": {"result": "met", "reason": "rituximab last on 2026-03-02",
                          "evidence": ["MedicationStatement/ms-77"]}}}


def _resources(bundle: dict) -> list[dict]:
    return [e["resource"] for e in bundle["entry"]]


def test_no_hospital_id_real_date_or_reason_leaves(sample_results) -> None:
    p = Pseudonymizer(KEY)
    for result in sample_results:
        pid = result["patient"].removeprefix("Patient/")
        text = json.dumps(sponsor_bundle(result, p))
        assert pid not in text
        for ref in {e for c in (result.get("criteria") or {}).values() for e in c.get("evidence") or ()}:
            assert ref.split("/", 1)[1] not in text, ref
        shift = timedelta(days=p.shift(pid))
        built = json.dumps((build.screening_resources if kind_of(result) == "screening"
                            else build.response_observations)(result))
        wanted = {(date.fromisoformat(d) + shift).isoformat() for d in DATE.findall(built)}
        assert set(DATE.findall(text)) <= wanted, pid  # every date is a real one moved by the patient's offset
        if kind_of(result) == "screening":
            obs = _resources(json.loads(text))[1]
            assert {c["valueCodeableConcept"]["text"] for c in obs["component"]} == {FREE_TEXT_REMOVED}


def test_pseudonyms_and_offsets_are_stable_under_one_key_and_differ_under_another() -> None:
    a, b = Pseudonymizer(KEY), Pseudonymizer(KEY[::-1])
    assert sponsor_bundle(_screening(), a) == sponsor_bundle(_screening(), Pseudonymizer(KEY))
    assert a.pseudonym("Patient", "h-123") != b.pseudonym("Patient", "h-123")
    assert a.pseudonym("Patient", "h-123") != a.pseudonym("Observation", "h-123")
    shifts = {a.shift(f"p{i}") for i in range(2000)}
    assert 0 not in shifts and min(shifts) == -182 and max(shifts) == 182  # 1..182 days either way
    assert {Pseudonymizer(KEY, max_shift_days=3).shift(f"p{i}") for i in range(200)} == {-3, -2, -1, 1, 2, 3}


def test_dates_move_together_so_intervals_stay_true() -> None:
    """E14.1 "rituximab within 6 months": 2026-03-02 to the screening date 2026-06-30 is 120 days before and
    after the shift."""
    p = Pseudonymizer(KEY, free_text="keep")
    days = p.shift("h-123")
    bundle = sponsor_bundle(_screening(), p)
    _, obs, provenance = _resources(bundle)
    screened = date.fromisoformat(obs["effectiveDateTime"])
    assert screened == date(2026, 6, 30) + timedelta(days=days)
    e14 = next(c for c in obs["component"] if c["code"]["coding"][0]["code"] == "E14.1")
    last = date.fromisoformat(DATE.search(e14["valueCodeableConcept"]["text"])[0])
    assert (screened - last).days == 120
    assert provenance["recorded"].startswith(screened.isoformat())  # no export clock time beside shifted dates
    assert "timestamp" not in bundle


def test_keep_dates_keeps_them() -> None:
    obs = _resources(sponsor_bundle(_screening(), Pseudonymizer(KEY, dates="keep")))[1]
    assert obs["effectiveDateTime"] == "2026-06-30"


def test_references_identifiers_and_meta() -> None:
    p = Pseudonymizer(KEY)
    pseudo = p.pseudonym("Patient", "h-123")
    bundle = sponsor_bundle(_screening(), p)
    subject, obs, provenance = _resources(bundle)
    assert subject["individual"] == {"reference": f"Patient/{pseudo}"}
    assert subject["identifier"][0]["value"] == f"NCT07377058/{pseudo}"
    assert obs["identifier"][0]["value"] == f"NCT07377058/{pseudo}/screening"
    assert obs["focus"][0]["identifier"]["value"] == f"NCT07377058/{pseudo}"
    assert {"reference": f"MedicationStatement/{p.pseudonym('MedicationStatement', 'ms-77')}"} in obs["derivedFrom"]
    assert subject["study"]["identifier"] == {"system": "https://clinicaltrials.gov", "value": "NCT07377058"}
    for resource in (subject, obs, provenance):
        assert resource["meta"]["security"][0]["code"] == "PSEUDED"
        assert "id" not in resource and "text" not in resource
    assert obs["method"]["text"].startswith("fhir-adapter")  # the adapter's own label stays
    assert [t["reference"] for t in provenance["target"]] == [e["fullUrl"] for e in bundle["entry"][:2]]
    assert {e["what"].get("reference") for e in provenance["entity"]} >= {
        f"Patient/{pseudo}", f"MedicationStatement/{p.pseudonym('MedicationStatement', 'ms-77')}"}


def test_references_in_kept_text_are_pseudonymised_but_type_names_are_not() -> None:
    p = Pseudonymizer(KEY, free_text="keep").patient("h-123")
    out = p.free_text("see Observation/lab-9 among MedicationAdministration/MedicationStatement records")
    assert "lab-9" not in out and f"Observation/{p.p.pseudonym('Observation', 'lab-9')}" in out
    assert "MedicationAdministration/MedicationStatement" in out


def test_ages_of_90_and_over_are_grouped_in_kept_text() -> None:
    """45 CFR 164.514(b)(2)(i)(C): ages over 89 are aggregated into one category of 90 or older."""
    obs = _resources(sponsor_bundle(_screening(reason="age 93 at screening (must be < 65)"),
                                    Pseudonymizer(KEY, free_text="keep")))[1]
    i1 = next(c for c in obs["component"] if c["code"]["coding"][0]["code"] == "I1")
    assert i1["valueCodeableConcept"]["text"] == "age 90 or over at screening (must be < 65)"
    p = Pseudonymizer(KEY, free_text="keep").patient("x")
    assert p.free_text("age 89 at screening") == "age 89 at screening"


def test_a_reference_that_is_not_type_id_stops_it() -> None:
    p = Pseudonymizer(KEY)
    assert p.reference("http://h.example/fhir/Observation/o-1/_history/3") == p.reference("Observation/o-1")
    assert p.reference("urn:uuid:0b6e4b1e-0000-4000-8000-000000000000").startswith("urn:uuid:")
    with pytest.raises(DeidentificationError, match="not Type/id"):
        p.reference("Observation/lab_9 (MRN 555)")


def test_an_identifier_the_export_does_not_know_stops_it() -> None:
    rewriter = Pseudonymizer(KEY).patient("h-123")
    with pytest.raises(DeidentificationError, match=r"ResearchSubject\.identifier.*urn:oid:1\.2\.3"):
        rewriter.resource({"resourceType": "ResearchSubject", "identifier": [{"system": "urn:oid:1.2.3",
                                                                               "value": "MRN-555"}]})
    with pytest.raises(DeidentificationError, match="not patient h-123's"):
        rewriter.resource({"resourceType": "ResearchSubject", "identifier": [
            {"system": build.SUBJECT_SYSTEM, "value": "NCT07377058/someone-else"}]})


@pytest.mark.parametrize("kwargs, message", [
    ({"key": b"short"}, "at least 32"),
    ({"key": KEY, "dates": "year"}, "dates"),
    ({"key": KEY, "free_text": "maybe"}, "free_text"),
    ({"key": KEY, "max_shift_days": 0}, "max_shift_days"),
])
def test_bad_settings_are_config_errors(kwargs, message) -> None:
    with pytest.raises(ConfigError, match=message):
        Pseudonymizer(**kwargs)


def test_lines_that_are_not_results_are_refused() -> None:
    with pytest.raises(DeidentificationError, match="not a result line"):
        sponsor_bundle({"resourceType": "Patient"}, Pseudonymizer(KEY))
    with pytest.raises(DeidentificationError, match="neither a screening result"):
        sponsor_bundle({"patient": "Patient/x", "study": "NCT04966884"}, Pseudonymizer(KEY))


def test_bundles_are_valid_r4_collections(sample_results) -> None:
    from fhir.resources.R4B.bundle import Bundle

    p = Pseudonymizer(KEY)
    for result in sample_results[::10]:
        bundle = sponsor_bundle(result, p)
        assert bundle["type"] == "collection"
        Bundle.model_validate(bundle)


def test_short_results_of_patients_out_of_the_entry_cohort_export(sample_results) -> None:
    """A result line out of the entry cohort (``"cohort": "out"``, only the entry criterion that ruled the patient
    out) exports as any other: an ineligible ResearchSubject and a screening Observation with that one component,
    its reason removed, a valid R4 collection."""
    from fhir.resources.R4B.bundle import Bundle

    short = [r for r in sample_results if r.get("cohort") == "out"]
    assert short and all(list(r["criteria"]) == ["I2"] for r in short)
    for result in short:
        bundle = sponsor_bundle(result, Pseudonymizer(KEY))
        Bundle.model_validate(bundle)
        subject, obs, _provenance = _resources(bundle)
        assert subject["status"] == "ineligible" and obs["valueCodeableConcept"]["text"] == FREE_TEXT_REMOVED
        assert [(c["code"]["coding"][0]["code"], c["valueCodeableConcept"]["coding"][0]["code"])
                for c in obs["component"]] == [("I2", "not-met")]
