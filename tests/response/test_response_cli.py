"""``fhir-adapter response``: JSON lines on standard output only, the summary on standard error."""

from __future__ import annotations

import subprocess
from datetime import date, timedelta
from pathlib import Path

import orjson
import pytest

from fhir_adapter.paths import sample_dir
from tests.test_cli import run_cli as cli

from .builders import Builder, core

SITE = str(sample_dir().parent / "site-mappings.json")


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return cli(*args, timeout=300)


def lines(done: subprocess.CompletedProcess[str]) -> list[dict]:
    return [orjson.loads(x) for x in done.stdout.splitlines()]


def test_one_patient_of_the_sample():
    done = run_cli("response", "--study", "NCT04966884", "--source", "sample", "--patient", "tofa-ukat-mm",
                   "--site", SITE, "--workers", "1")
    assert done.returncode == 0, done.stderr
    [r] = lines(done)
    # CK 15.0 -> 8.4 ukat/L and every VAS in mm: 15 + 2.5 + 10 + 5 + 7.5 + 7.5 = 47.5, moderate
    assert (r["patient"], r["tis"], r["category"], r["inactive_disease"]) == ("Patient/tofa-ukat-mm", 47.5,
                                                                             "moderate", False)
    assert r["measures"]["enzyme"]["baseline"]["reported"] == "15.0 ukat/L"
    assert r["measures"]["phga"]["baseline"]["value"] == 6
    assert {"tis", "tis_range", "category", "inactive_disease", "measures", "endpoints", "safety"} <= set(r)
    assert "TIS class: moderate 1" in done.stderr


def test_every_patient_on_the_study_drug():
    done = run_cli("response", "--study", "nct04966884", "--source", "sample", "--site", SITE)
    assert done.returncode == 0, done.stderr
    got = {r["patient"]: r for r in lines(done)}
    assert {p for p in got if p.startswith("Patient/tofa-")} == {
        f"Patient/{p}" for p in ("tofa-responder-major", "tofa-responder-moderate", "tofa-responder-minimal",
                                 "tofa-nonresponder", "tofa-worsening", "tofa-missing-haq-decidable",
                                 "tofa-missing-phga-undecidable", "tofa-inactive-12m", "tofa-near-inactive",
                                 "tofa-ukat-mm", "tofa-local-codes")}
    assert all(p.startswith("Patient/tofa-") or got[p]["tis"] is None for p in got)  # other tofacitinib users
    assert "not on tofacitinib" in done.stderr
    undecided = got["Patient/tofa-missing-phga-undecidable"]
    assert (undecided["tis"], undecided["tis_range"], undecided["category"]) == (None, [12.5, 32.5], None)


def test_given_baseline_and_follow_up_and_the_course():
    # month 6 instead of month 12 for tofa-responder-major: 62.5, major; the course stops at month 6
    done = run_cli("response", "--study", "NCT04966884", "--source", "sample", "--patient", "tofa-responder-major",
                   "--baseline", "2025-04-07", "--at", "2025-10-06", "--course")
    assert done.returncode == 0, done.stderr
    [r] = lines(done)
    assert r["baseline"] == {"date": "2025-04-07", "from": "given (--baseline)"}
    assert r["follow_up"] == {"date": "2025-10-06", "from": "given (--at)"}
    assert (r["tis"], r["category"]) == (62.5, "major")
    assert [v["tis"] for v in r["visits"]] == [2.5, 37.5, 62.5]


def promis_patient(folder: Path) -> None:
    """Tocilizumab from 2026-01-05; PaO2 / FiO2 and FVC every 2 weeks; the core set at baseline and week 8."""
    b = Builder("tcz-1").drug("612865", "2026-01-05")  # weeks 0, 2, 4, 6, 8 below
    for week, (pao2, fvc) in enumerate(((62, 62), (66, 63), (70, 65), (75, 66), (80, 68))):
        day = date(2026, 1, 5) + timedelta(weeks=2 * week)
        b.lab("pao2", day, pao2, "mm[Hg]").lab("fio2", day, 40, "%").lab("fvc-pct", day, fvc, "%")
    core(b, "2026-01-05", phga=6.0, ptga=6.0, mmt=120, mmt_max=150, haq=1.5, extra=5.0)
    core(b, "2026-03-02", phga=3.0, ptga=4.0, mmt=126, mmt_max=150, haq=1.0, extra=3.0)
    b.lab("ck", "2026-01-05", 400, "U/L", 174).lab("ck", "2026-03-02", 200, "U/L", 174)
    rec = b.record()
    (folder / "Patient.ndjson").write_bytes(orjson.dumps(rec.patient) + b"\n")
    for rtype, resources in rec.resources.items():
        (folder / f"{rtype}.ndjson").write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in resources))


def test_promis_alias_with_respiratory_course(tmp_path: Path):
    promis_patient(tmp_path)
    done = run_cli("response", "--study", "promis-mda5", "--source", str(tmp_path), "--baseline", "2026-01-05",
                   "--course")
    assert done.returncode == 0, done.stderr
    [r] = lines(done)
    assert r["study"] == "NCT07377058"
    assert r["follow_up"] == {"date": "2026-03-02", "from": "baseline + 8 weeks"}
    # PhGA 30 % -> 17.5, PtGA 20 % -> 5, MMT 6/150 = 4 % -> 10, HAQ 16.67 % -> 7.5, CK 50 % -> 7.5,
    # extra 20 % -> 12.5: 60, major
    assert (r["tis"], r["category"], r["inactive_disease"]) == (60.0, "major", None)
    assert [v["day"] for v in r["visits"]] == [14, 28, 42, 56]
    # P/F 62 / 0.40 = 155 at baseline -> 80 / 0.40 = 200 at week 8: +45, derived from PaO2 and FiO2
    pf = r["respiratory"]["pf-ratio"]
    assert (pf["baseline"]["value"], pf["follow_up"]["value"], pf["change"]) == (155, 200, 45)
    assert "derived" in pf["follow_up"]
    assert [v["respiratory"]["pao2"]["follow_up"]["value"] for v in r["visits"]] == [66, 70, 75, 80]


def test_promis_without_baseline_uses_the_first_tocilizumab_exposure_and_says_so(tmp_path: Path):
    promis_patient(tmp_path)
    [r] = lines(run_cli("response", "--study", "NCT07377058", "--source", str(tmp_path)))
    assert r["baseline"]["date"] == "2026-01-05" and "randomization" in r["baseline"]["from"]


def test_patient_without_an_anchor(tmp_path: Path):
    promis_patient(tmp_path)
    done = run_cli("response", "--study", "NCT04966884", "--source", str(tmp_path), "--patient", "tcz-1")
    [r] = lines(done)
    assert r["tis"] is None and "give --baseline" in r["problems"][0]


@pytest.mark.parametrize(("args", "code", "message"), [
    (("--study", "NCT00000000"), 1, "unknown study"),
    (("--study", "NCT04966884", "--at", "2026-13-01"), 2, "not a date"),
])
def test_errors(args, code, message):
    done = run_cli("response", "--source", "sample", *args)
    assert done.returncode == code
    assert message in done.stderr and done.stdout == ""


def test_fhir_server_source(fhir_base: str):
    """The same result read from a real FHIR server as from the NDJSON files."""
    from fhir_adapter.client import FhirClient
    from fhir_adapter.sample.load import load_sample

    load_sample(FhirClient(fhir_base, strict=True), batch_size=1000)
    done = run_cli("response", "--study", "NCT04966884", "--source", fhir_base, "--patient", "tofa-local-codes",
                   "--site", SITE)
    assert done.returncode == 0, done.stderr
    [r] = lines(done)
    # local codes only: 15 + 2.5 + 10 + 0 + 7.5 (aldolase) + 0 = 35, minimal
    assert (r["tis"], r["category"], r["measures"]["enzyme"]["concept"]) == (35.0, "minimal", "aldolase")


def test_table_format_on_the_sample_uses_its_site_file():
    """--format table: one readable row per patient; the sample's local codes map without --site.

    tofa-ukat-mm by hand: PhGA 60->44 mm = 6->4.4 cm, 16% -> 15; PtGA 7->6 cm, 10% -> 2.5; MMT 64->70/80, 7.5%
    -> 10; HAQ 1.25->1, 8.3% -> 5; CK 15.0 ukat/L = 900 U/L -> 504 U/L, 44% -> 7.5; extramuscular 5->4.4, 6% ->
    7.5; total 47.5, moderate.
    """
    done = run_cli("response", "--study", "NCT04966884", "--source", "sample", "--format", "table")
    assert done.returncode == 0, done.stderr
    rows = {line.split()[0]: line.split() for line in done.stdout.splitlines()[1:]}
    assert rows["tofa-ukat-mm"][2:7] == ["47.5", "moderate", "no", "ck", "15/2.5/10/5/7.5/7.5"]
    assert rows["tofa-local-codes"][3] == "minimal"  # local codes only: decided through the sample's site file
    assert rows["tofa-missing-haq-decidable"][2:4] == ["67.5-77.5", "major"]
    assert "using the sample's site mappings" in done.stderr
