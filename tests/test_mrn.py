"""The medical record number in every result line (``mrn`` beside the FHIR id): which identifier is the MRN, and
that the short result of a patient out of the entry cohort, decided before the rest of the record is parsed,
carries it from NDJSON folders, Bundles and the FHIR server alike."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from fhir_adapter.cli.main import main
from fhir_adapter.client import FhirClient
from fhir_adapter.paths import sample_dir
from fhir_adapter.record.mrn import V2_0203, mrn_of

SITE = sample_dir().parent / "site-mappings.json"
SAMPLE_MRN = "http://hospital.example.cn/mrn"
MR = {"coding": [{"system": V2_0203, "code": "MR"}]}
OUT = "decoy-dm-mda5neg-noild"  # dermatomyositis, anti-MDA5 negative: out of NCT07377058's entry cohort (I2)
IN = "bnd-e13-ivig-old"  # a candidate


def ident(value: str, system: str = "urn:oid:1.2.3", **extra: Any) -> dict[str, Any]:
    return {"system": system, "value": value, **extra}


# -- which identifier is the MRN --------------------------------------------------------------------------------

def test_the_identifier_typed_mr_is_the_mrn() -> None:
    patient = {"identifier": [ident("123-45-6789", "http://hl7.org/fhir/sid/us-ssn"), ident("A100", type=MR)]}
    assert mrn_of(patient) == ("A100", None)


def test_the_site_system_wins_over_the_mr_type() -> None:
    """A site naming its MRN system: another facility's MR-typed number is not its own."""
    patient = {"identifier": [ident("OTHER-9", "http://elsewhere/mrn", type=MR), ident("H-1", SAMPLE_MRN)]}
    assert mrn_of(patient, SAMPLE_MRN) == ("H-1", None)
    assert mrn_of(patient) == ("OTHER-9", None)
    assert mrn_of({"identifier": [ident("OTHER-9", "http://elsewhere/mrn", type=MR)]}, SAMPLE_MRN) == (None, None)


def test_no_mrn_is_null_never_a_guess() -> None:
    assert mrn_of({"identifier": [ident("X1")]}) == (None, None)  # an identifier, but not typed MR
    assert mrn_of({}) == (None, None)
    assert mrn_of(None) == (None, None)
    assert mrn_of({"identifier": "A100"}) == (None, None)  # malformed
    assert mrn_of({"identifier": [ident("", type=MR), {"type": MR}, "x"]}) == (None, None)  # no value


def test_a_former_number_is_not_the_mrn_and_repeats_are_one() -> None:
    patient = {"identifier": [ident("OLD-1", type=MR, use="old"), ident("NEW-2", type=MR),
                              ident("NEW-2", "urn:oid:9.9", type=MR)]}
    assert mrn_of(patient) == ("NEW-2", None)


def test_disagreeing_mrns_give_null_and_a_note() -> None:
    mrn, note = mrn_of({"identifier": [ident("A1", SAMPLE_MRN), ident("B2", SAMPLE_MRN)]}, SAMPLE_MRN)
    assert mrn is None and note is not None and "A1" in note and "B2" in note


# -- result lines from every kind of source ---------------------------------------------------------------------

def _sample_resources(pids: set[str]) -> Iterator[dict[str, Any]]:
    """The sample's resources of these patients (and the shared Medications)."""
    refs = {f"Patient/{p}" for p in pids}
    for path in sorted(sample_dir().glob("*.ndjson")):
        for line in path.read_bytes().splitlines():
            r = orjson.loads(line)
            subject = (r.get("subject") or r.get("patient") or {}).get("reference")
            if r["resourceType"] == "Medication" or (r.get("id") in pids and r["resourceType"] == "Patient") \
                    or subject in refs:
                yield r


def _renamed(resources: list[dict[str, Any]], tag: str) -> list[dict[str, Any]]:
    """The resources with every id (and reference to it) prefixed by ``tag``, apart from other tests' on a server."""
    text = json.dumps([{k: v for k, v in r.items() if k != "meta"} for r in resources])  # not tagged as the sample
    for r in resources:
        text = text.replace(f'"{r["resourceType"]}/{r["id"]}"', f'"{r["resourceType"]}/{tag}-{r["id"]}"')
        text = text.replace(f'"id": "{r["id"]}"', f'"id": "{tag}-{r["id"]}"')
    return json.loads(text)


def _screen(*args: str, capsysbinary: pytest.CaptureFixture[bytes]) -> tuple[int, dict[str, dict[str, Any]], str]:
    logger = logging.getLogger("fhir_adapter")
    saved = logger.handlers[:], logger.level, logger.propagate
    try:
        status = main(["screen", "--study", "NCT07377058", "--as-of", "2026-06-30", *args])
    finally:
        logger.handlers[:], logger.level, logger.propagate = saved
    out, err = capsysbinary.readouterr()
    lines = [orjson.loads(x) for x in out.splitlines()]
    return status, {x["patient"].split("/")[-1]: x for x in lines}, err.decode()


def _check(lines: dict[str, dict[str, Any]], prefix: str = "") -> None:
    out, in_ = lines[f"{prefix}{OUT}"], lines[f"{prefix}{IN}"]
    assert out["cohort"] == "out" and list(out["criteria"]) == ["I2"]  # the short result
    assert out["mrn"] == f"SYN-{OUT}" and list(out)[:2] == ["patient", "mrn"]
    assert in_["status"] == "candidate" and in_["mrn"] == f"SYN-{IN}"


def test_short_results_carry_the_mrn_from_ndjson_and_bundles(tmp_path: Path,
                                                             capsysbinary: pytest.CaptureFixture[bytes]) -> None:
    resources = list(_sample_resources({OUT, IN}))
    folder = tmp_path / "ndjson"
    folder.mkdir()
    for rtype in {r["resourceType"] for r in resources}:
        (folder / f"{rtype}.ndjson").write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in resources
                                                          if r["resourceType"] == rtype))
    status, lines, err = _screen("--source", str(folder), "--site", str(SITE), "--workers", "2",
                                 capsysbinary=capsysbinary)
    assert status == 0, err
    assert "settled by the entry criteria (not parsed)" in err  # the short result was decided early
    _check(lines)
    bundle = tmp_path / "bundle.json"
    bundle.write_text(json.dumps({"resourceType": "Bundle", "type": "collection",
                                  "entry": [{"fullUrl": f"{r['resourceType']}/{r['id']}", "resource": r}
                                            for r in resources]}))
    status, lines, err = _screen("--source", str(bundle), "--site", str(SITE), capsysbinary=capsysbinary)
    assert status == 0, err
    _check(lines)
    # --mrn-system names another system: no identifier of it, so no MRN (not the sample's)
    status, lines, err = _screen("--source", str(folder), "--site", str(SITE), "--mrn-system", "urn:oid:1.2.3",
                                 capsysbinary=capsysbinary)
    assert status == 0 and {x["mrn"] for x in lines.values()} == {None}
    assert "no MRN: 2 patients" in err


@pytest.mark.server
def test_short_results_carry_the_mrn_from_the_server(fhir_base: str, tag: str,
                                                     capsysbinary: pytest.CaptureFixture[bytes]) -> None:
    resources = _renamed(list(_sample_resources({OUT, IN})), tag)
    with FhirClient(fhir_base) as client:
        for r in resources:
            client.update(r)
    ids = [f"{tag}-{OUT}", f"{tag}-{IN}"]
    status, lines, err = _screen("--source", fhir_base, "--site", str(SITE), "--patient", ids[0], "--patient", ids[1],
                                 capsysbinary=capsysbinary)
    assert status == 0, err
    _check(lines, f"{tag}-")
