#!/usr/bin/env python3
"""Write the built-in synthetic sample population (Bulk Data NDJSON) to ``fhir_adapter/sample/data``.

Every patient is invented. The population is driven by two tables: ``PROMIS`` (pre-screening scenarios for
NCT07377058, each a "candidate" template plus the one change that should decide the criterion it exercises)
and ``TOFA`` (NCT04966884 patients followed 12 months on tofacitinib, with the six IMACS core set measures).
The expected outcome of every scenario is written to ``scenarios.json``; the generator checks its own
arithmetic (TIS points, Cockcroft-Gault, prednisone mg/kg/day) against the hand-entered expectations.

Deterministic: no clock, no randomness except a seeded shuffle that interleaves patients in each file, so
running it twice gives byte-identical files.

    .venv/bin/python tools/make_sample.py [--out DIR]

What it builds lives in ``tools/sample/``: ``codes.py`` (code systems and the concepts' standard and local codes),
``record.py`` (one patient's resources), ``promis.py`` (the PROMIS-MDA5 scenarios), ``tofacitinib.py`` (the
tofacitinib follow-up patients and their TIS); this file interleaves them and writes the files.
"""

from __future__ import annotations

import argparse
import random
from datetime import date
from pathlib import Path
from typing import Any

import orjson

from sample.codes import (
    AS_OF,
    CONDS,
    DRUGS,
    DUR,
    HTEST,
    LOCAL_ASSESS,
    LOCAL_DRUG,
    LOCAL_DX,
    LOCAL_LAB,
    LOCAL_PROC,
    MEASURE_CODES,
    MEASURES,
    OBS,
    OUT,
    SAMPLE_TAG,
    SEED,
    SHARED_MEDICATIONS,
    TYPES,
)
from sample.promis import PROMIS, build_promis
from sample.tofacitinib import ENZ_ULN, TOFA, VISIT_DAYS, VISIT_MONTHS, build_tofa, secondary, tis_expectation


# ---------------------------------------------------------------------------------------------------------
# Output
# ---------------------------------------------------------------------------------------------------------
def local_codes() -> list[dict[str, str]]:
    rows = []
    for key, (loinc, disp, lcode, ldisp, _) in sorted(OBS.items()):
        rows.append({"system": LOCAL_LAB, "code": lcode, "display": ldisp,
                     "concept": f"LOINC {loinc} {disp}" if loinc else key})
    for _key, (code, disp, lcode, ldisp, _) in MEASURE_CODES.items():
        rows.append({"system": LOCAL_ASSESS, "code": lcode, "display": ldisp, "concept": f"{MEASURES}|{code} {disp}"})
    for key, (codings, text) in DRUGS.items():
        for system, code, disp in codings:
            if system == LOCAL_DRUG:
                rows.append({"system": system, "code": code, "display": disp, "concept": f"{key}: {text}"})
    for key, (systems, _text) in CONDS.items():
        for system, code, disp in systems.get("local", []):
            if system == LOCAL_DX:
                rows.append({"system": system, "code": code, "display": disp,
                             "concept": f"{key}: China national clinical ICD-10 extension of WHO {code[:5]}"})
    rows.append({"system": LOCAL_PROC, "code": "RAD-HRCT-CHEST", "display": "胸部高分辨率CT",
                 "concept": "HRCT chest (DiagnosticReport)"})
    rows.append({"system": LOCAL_PROC, "code": "PFT-FULL", "display": "肺功能全套(通气+弥散)",
                 "concept": "pulmonary function test (Procedure)"})
    unique: dict[tuple[str, str], dict[str, str]] = {}
    for row in rows:
        unique.setdefault((row["system"], row["code"]), row)
    return list(unique.values())


def generate() -> tuple[dict[str, list[dict[str, Any]]], dict[str, Any]]:
    """All resources per type (patients interleaved) and the scenarios document."""
    per_patient: list[dict[str, list[dict[str, Any]]]] = []
    scenarios: list[dict[str, Any]] = []
    for p in PROMIS:
        per_patient.append(build_promis(p))
        scenarios.append({"id": p.pid, "story": p.story, "study": "NCT07377058", "exercises": p.exercises,
                          "expected": p.expected, **({"notes": p.notes} if p.notes else {})})
    baselines: dict[str, str] = {}
    for i, t in enumerate(TOFA):
        baseline = date(2025, 4, 7) + DUR(days=7 * i)
        baselines[t.pid] = baseline.isoformat()
        per_patient.append(build_tofa(t, baseline))
        tis = tis_expectation(t)
        scenarios.append({
            "id": t.pid, "story": t.story, "study": "NCT04966884",
            "exercises": ["T1", "T3", "T4", "R1", "R2", "R3", "R4", "R5", "R6"] + (["R7"] if t.events else []),
            "expected": {
                "T1": "met", "T3": "met", "baseline": baseline.isoformat(),
                "month12": (baseline + DUR(days=365)).isoformat(),
                "T4_mg_per_kg_day": round(t.pred_mg / t.weight, 3), "T4": "met",
                "tis": tis, "inactive_month12": t.inactive12,
                "safety_events": t.events,
                "secondary_baseline_month12": secondary(t),
                "NCT07377058": {"E14.2": "met", "status": "ineligible"}},
            **({"notes": t.notes} if t.notes else {})})
        assert 0.8 <= t.pred_mg / t.weight <= 1.0, t.pid
        assert baseline + DUR(days=365) <= AS_OF
    files: dict[str, list[dict[str, Any]]] = {t: [] for t in TYPES}
    files["Medication"].extend({**m, "meta": {"tag": [HTEST, SAMPLE_TAG]}}
                               for m in SHARED_MEDICATIONS)
    rng = random.Random(SEED)
    for rtype in TYPES:
        items = [res for out in per_patient for res in out[rtype]]
        rng.shuffle(items)
        files[rtype].extend(items)
    doc = {
        "description": "Expected outcomes of the built-in synthetic sample (see README.md). Derived by hand from "
                       "the protocol text and /work/shared/reference; the generator re-checks the arithmetic.",
        "as_of": AS_OF.isoformat(),
        "randomization_assumed": AS_OF.isoformat(),
        "screening_lab_lookback_days": 28,
        "outcome_values": {"met": "criterion satisfied (for an exclusion: the patient is excluded by it)",
                           "not-met": "criterion not satisfied (for an exclusion: not triggered)",
                           "unknown": "the data cannot decide it (missing, ambiguous, or needs a human)"},
        "status_values": {"candidate": "no criterion fails and every data-decidable criterion is decided; only "
                                       "human items (I6, I8, E18, review flags) remain",
                          "potential-candidate": "nothing fails but a data-decidable criterion is unknown",
                          "ineligible": "an inclusion is not-met or an exclusion is met, or the patient has "
                                        "died (Patient.deceasedDateTime)"},
        "human_only": {"I6": "future TMP-SMX obligation", "I8": "informed consent",
                       "E18": "investigator judgement: no data can trigger it"},
        "tofacitinib": {"baseline_dates": baselines, "visit_months": VISIT_MONTHS, "visit_days": VISIT_DAYS,
                        "enzyme_uln_U_per_L": ENZ_ULN, "ck_uln_ukat_per_L": round(174 / 60, 2),
                        "tis_rules": "clinical.md 1.2/1.4: VAS (b-f)/10x100; HAQ (b-f)/3x100; MMT (f-b)/max x100; "
                                     "enzyme (b-f)/b x100 for the enzyme most abnormal (x ULN) at baseline; bins "
                                     "x<=5 -> first, upper edge inclusive (MMT x<=2)",
                        "inactive_values": {"yes": "CK <= 200 U/L, physician VAS = 0 and MYOACT = 0 at month 12",
                                            "no": "at least one of the three fails",
                                            "unknown": "no component fails and one is missing"}},
        "local_codes": local_codes(),
        "patients": scenarios,
    }
    return files, doc


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=OUT)
    a = ap.parse_args(argv)
    a.out.mkdir(parents=True, exist_ok=True)
    files, doc = generate()
    total = 0
    for rtype, items in files.items():
        path = a.out / f"{rtype}.ndjson"
        if not items:
            path.unlink(missing_ok=True)
            continue
        path.write_bytes(b"".join(orjson.dumps(res) + b"\n" for res in items))
        total += len(items)
        print(f"{path.name:<34}{len(items):>6}")
    (a.out / "scenarios.json").write_bytes(orjson.dumps(doc, option=orjson.OPT_INDENT_2) + b"\n")
    print(f"{len(doc['patients'])} patients, {total} resources -> {a.out}")


if __name__ == "__main__":
    main()
