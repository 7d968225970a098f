"""Units into a concept's canonical UCUM unit (clinical.md §5). Each case shows its arithmetic."""

from __future__ import annotations

import json

import pytest

from fhir_adapter.paths import data_dir
from fhir_adapter.terminology.concept import Concept
from fhir_adapter.terminology.units import (
    UCUM,
    Converted,
    parse_unit,
    quantity_of,
    to_canonical,
    unit_factor,
)

CK = Concept("creatine-kinase", "Creatine kinase", "quantity", unit="U/L")
HB = Concept("hemoglobin", "Hemoglobin", "quantity", unit="g/L", unit_factors={"mmol/L": 16.1})
BILI = Concept("bilirubin-total", "Total bilirubin", "quantity", unit="mg/dL", unit_factors={"umol/L": 0.0585})
FERRITIN = Concept("ferritin", "Ferritin", "quantity", unit="ng/mL", unit_factors={"pmol/L": 0.445})
LYMPH = Concept("lymphocytes", "Lymphocytes", "quantity", unit="10*9/L")
PAO2 = Concept("pao2", "PaO2", "quantity", unit="mm[Hg]")
WEIGHT = Concept("body-weight", "Body weight", "quantity", unit="kg")
VAS = Concept("phga-vas", "Physician global activity VAS", "score", unit="cm", scale=(0, 10))
MMT = Concept("mmt8-150", "MMT-8 (both sides)", "score", unit="{score}", scale=(0, 150))
HBV = Concept("hbv-dna-copies", "HBV DNA", "quantity", unit="{copies}/mL")
HBV_IU = Concept("hbv-dna-iu", "HBV DNA (IU)", "quantity", unit="[IU]/mL")
FIO2 = Concept("fio2", "FiO2", "quantity", unit="1")
EGFR = Concept("egfr", "eGFR", "quantity", unit="mL/min/{1.73_m2}")
CRCL = Concept("crcl", "Creatinine clearance", "quantity", unit="mL/min")


# --- every unit string hospitals send, normalized to UCUM ---------------------------------------------------

TEXT_TO_UCUM = [
    ("U/L", "U/L"),
    ("IU/L", "[IU]/L"),  # UCUM [IU] (arbitrary); read as U for enzymes, see test_iu_per_litre_is_u_for_enzymes
    ("\u00b5kat/L", "ukat/L"),  # micro sign U+00B5
    ("\u03bckat/L", "ukat/L"),  # Greek small mu U+03BC
    ("ukat/L", "ukat/L"),
    ("g/dl", "g/dL"),
    ("g/L", "g/L"),
    ("mmol/L", "mmol/L"),
    ("10^9/L", "10*9/L"),
    ("\u00d710^9/L", "10*9/L"),  # multiplication sign
    ("x10E3/uL", "10*3/uL"),
    ("10*3/uL", "10*3/uL"),
    ("10\u2079/L", "10*9/L"),  # superscript nine
    ("/uL", "/uL"),
    ("cells/uL", "/uL"),
    ("umol/L", "umol/L"),
    ("\u03bcmol/L", "umol/L"),
    ("\u00b5mol/L", "umol/L"),
    ("mg/dL", "mg/dL"),
    ("ng/mL", "ng/mL"),
    ("ug/L", "ug/L"),
    ("\u03bcg/L", "ug/L"),
    ("pmol/L", "pmol/L"),
    ("mmHg", "mm[Hg]"),
    ("mm Hg", "mm[Hg]"),
    ("kPa", "kPa"),
    ("mm", "mm"),
    ("cm", "cm"),
    ("%", "%"),
    ("kg", "kg"),
    ("lb", "[lb_av]"),
    ("lbs", "[lb_av]"),
    ("g", "g"),
    ("mL/min", "mL/min"),
    ("mL/min/1.73m2", "mL/min/{1.73_m2}"),
    ("ml/min/1.73m\u00b2", "mL/min/{1.73_m2}"),  # superscript two
    ("copies/mL", "{copies}/mL"),
    ("IU/mL", "[IU]/mL"),
    ("{copies}/mL", "{copies}/mL"),
    ("\u516c\u65a4", "kg"),  # gongjin
]


@pytest.mark.parametrize(("text", "ucum"), TEXT_TO_UCUM)
def test_hospital_unit_strings_normalize_to_ucum(text: str, ucum: str) -> None:
    assert parse_unit(None, text) == ucum


@pytest.mark.parametrize(
    "code", ["10*9/L", "ukat/L", "mm[Hg]", "[lb_av]", "{copies}/mL", "[IU]/mL", "%", "mL/min/{1.73_m2}"]
)
def test_ucum_codes_are_kept(code: str) -> None:
    assert parse_unit(code, None) == code


def test_micro_sign_greek_mu_and_u_are_the_same_unit() -> None:
    # 1 ukat/L = 60 U/L whichever "micro" the hospital typed
    values = [to_canonical(1.0, None, t, CK).value for t in ("\u00b5kat/L", "\u03bckat/L", "ukat/L", "UKAT/L")]
    assert values == [pytest.approx(60.0)] * 4


def test_ucum_code_wins_over_unit_text() -> None:
    # code ukat/L says 3.33 ukat/L = 199.8 U/L; the (wrong) text "U/L" is ignored
    c = quantity_of({"valueQuantity": {"value": 3.33, "unit": "U/L", "system": UCUM, "code": "ukat/L"}}, CK)
    assert c.value == pytest.approx(199.8)
    assert c.source_unit == "ukat/L"


def test_text_is_used_when_the_code_is_unknown_or_local() -> None:
    # local system code "GL" is not UCUM: the text "g/dl" is read. 9.0 g/dL x 10 = 90 g/L
    q = {"value": 9.0, "unit": "g/dl", "system": "http://hospital.example/units", "code": "GL"}
    assert quantity_of({"valueQuantity": q}, HB).value == pytest.approx(90.0)
    # a UCUM-system code nobody knows, with good text: the text is used
    assert to_canonical(9.0, "g%%", "g/dL", HB).value == pytest.approx(90.0)


# --- the conversions of clinical.md §5 ---------------------------------------------------------------------


def test_ck_ukat_to_u_per_litre() -> None:
    # 1 U = 1 umol/min = 1/60 ukat, so 1 ukat/L = 60 U/L; 3.33 ukat/L x 60 = 199.8 U/L (~200, the R1 threshold)
    c = to_canonical(3.33, "ukat/L", None, CK)
    assert c == Converted(pytest.approx(199.8), "U/L", 60.0, source_unit="ukat/L")
    assert c.problem is None


def test_iu_per_litre_is_u_for_enzymes() -> None:
    # an ALT/CK reported "IU/L" means the enzyme unit: 200 IU/L = 200 U/L
    assert to_canonical(200, None, "IU/L", CK).value == pytest.approx(200.0)
    # ...but HBV DNA in IU/L stays IU: 2000 IU/L / 1000 = 2 IU/mL
    assert to_canonical(2000, None, "IU/L", HBV_IU).value == pytest.approx(2.0)


def test_pao2_kpa_to_mmhg() -> None:
    # 1 kPa = 1000 Pa / 133.322387415 Pa per mmHg = 7.50062 mmHg; 8.0 kPa x 7.50062 = 60.005 mmHg
    c = to_canonical(8.0, "kPa", None, PAO2)
    assert c.value == pytest.approx(60.005, abs=1e-3)
    assert c.factor == pytest.approx(7.50062, abs=1e-5)


def test_hemoglobin_g_per_dl_to_g_per_litre() -> None:
    # 1 dL = 0.1 L, so 9.0 g/dL x 10 = 90 g/L (the E3d threshold)
    assert to_canonical(9.0, None, "g/dl", HB).value == pytest.approx(90.0)


def test_hemoglobin_mmol_via_the_concept_factor() -> None:
    # molar -> mass needs the analyte: Hb (monomer 16.1 kg/mol) 5.6 mmol/L x 16.1 = 90.16 g/L
    c = to_canonical(5.6, "mmol/L", None, HB)
    assert c.value == pytest.approx(90.16)
    assert c.factor == pytest.approx(16.1)
    # 5600 umol/L = 5.6 mmol/L (general UCUM) then x 16.1 = 90.16 g/L
    assert to_canonical(5600, None, "\u03bcmol/L", HB).value == pytest.approx(90.16)


def test_bilirubin_umol_via_the_concept_factor() -> None:
    # 34.2 umol/L x 0.0585 = 2.0007 mg/dL (= 34.2 / 17.1)
    assert to_canonical(34.2, None, "\u03bcmol/L", BILI).value == pytest.approx(2.0007)


def test_ferritin_ug_per_litre_and_pmol() -> None:
    # ng/mL = ug/L: 500 ug/L = 500 ng/mL; 1000 pmol/L x 0.445 = 445 ng/mL
    assert to_canonical(500, None, "ug/L", FERRITIN).value == pytest.approx(500.0)
    assert to_canonical(1000, "pmol/L", None, FERRITIN).value == pytest.approx(445.0)


@pytest.mark.parametrize(
    ("value", "text", "expected"),
    [
        (0.5, "10^9/L", 0.5),
        (0.5, "\u00d710^9/L", 0.5),
        (0.5, "x10E3/uL", 0.5),  # 1 x 10^3/uL = 10^3 x 10^6/L = 10^9/L
        (0.5, "10*3/uL", 0.5),
        (500, "/uL", 0.5),  # 500/uL x 10^6 uL/L = 5 x 10^8/L = 0.5 x 10^9/L
        (500, "cells/uL", 0.5),
        (500_000_000, "/L", 0.5),
    ],
)
def test_lymphocyte_counts(value: float, text: str, expected: float) -> None:
    assert to_canonical(value, None, text, LYMPH).value == pytest.approx(expected)


@pytest.mark.parametrize(
    ("value", "text", "expected"),
    [
        (100, "lb", 45.359237),  # 100 x 0.45359237 kg
        (100, "lbs", 45.359237),
        (60000, "g", 60.0),  # 60000 g / 1000
        (60, "kg", 60.0),
    ],
)
def test_body_weight(value: float, text: str, expected: float) -> None:
    assert to_canonical(value, None, text, WEIGHT).value == pytest.approx(expected)


def test_lb_av_code() -> None:
    # [lb_av] = 0.45359237 kg exactly; 132 lb = 59.874 kg
    assert to_canonical(132, "[lb_av]", "lb", WEIGHT).value == pytest.approx(59.87419284)


def test_vas_mm_to_cm_keeps_the_scale() -> None:
    # 45 mm / 10 = 4.5 cm on the 0-10 cm scale
    c = to_canonical(45, None, "mm", VAS)
    assert (c.value, c.unit, c.scale) == (pytest.approx(4.5), "cm", (0, 10))


def test_mmt_is_not_rescaled() -> None:
    # MMT-8 136 out of 150 stays 136, with its scale; never turned into x/80
    c = to_canonical(136, None, None, MMT)
    assert (c.value, c.scale, c.problem) == (136.0, (0, 150), None)
    assert to_canonical(136, "{score}", None, MMT).value == 136.0


def test_fraction_and_percent() -> None:
    # FiO2 21 % / 100 = 0.21
    assert to_canonical(21, "%", None, FIO2).value == pytest.approx(0.21)


def test_copies_and_iu_never_convert_into_each_other() -> None:
    # IU <-> copies depends on the assay (clinical.md §5): a problem, not a 1:1 conversion
    c = to_canonical(1000, None, "IU/mL", HBV)
    assert c.value is None and "unconvertible unit '[IU]/mL' for HBV DNA" in c.problem
    # copies per litre -> per mL: 1000 copies/L / 1000 = 1 copy/mL (the seed's E6 typo, clinical.md §5)
    assert to_canonical(1000, None, "copies/L", HBV).value == pytest.approx(1.0)


def test_egfr_is_not_creatinine_clearance() -> None:
    c = to_canonical(60, None, "mL/min/1.73m2", CRCL)
    assert c.value is None and "unconvertible" in c.problem
    assert to_canonical(60, None, "mL/min/1.73m2", EGFR).value == 60


# --- bad data gives problems, never exceptions -------------------------------------------------------------


def test_unknown_unit_is_a_problem() -> None:
    c = to_canonical(5, None, "xyz", CK)
    assert c.value is None
    assert c.problem == "unknown unit 'xyz' for Creatine kinase"


def test_incompatible_unit_is_a_problem() -> None:
    c = to_canonical(5, "mg/dL", None, LYMPH)
    assert c.value is None
    assert c.problem == "unconvertible unit 'mg/dL' for Lymphocytes (canonical '10*9/L')"
    c = to_canonical(5, "mmol/L", None, Concept("hb2", "Hemoglobin", "quantity", unit="g/L"))
    assert c.problem == "unconvertible unit 'mmol/L' for Hemoglobin (canonical 'g/L')"


def test_missing_unit_and_value() -> None:
    assert to_canonical(5, None, None, CK).problem == "no unit for Creatine kinase (expected 'U/L')"
    assert to_canonical(5, None, None, CK, default_unit="U/L").value == 5
    assert to_canonical(None, "U/L", None, CK).problem == "no numeric value for Creatine kinase"
    assert to_canonical("12", "U/L", None, CK).problem == "no numeric value for Creatine kinase"
    assert to_canonical(float("nan"), "U/L", None, CK).problem is not None
    assert quantity_of({"valueString": "high"}, CK).problem == "no valueQuantity for Creatine kinase"


def test_comparator_is_carried_through() -> None:
    q = {"value": 0.1, "comparator": "<", "unit": "\u03bckat/L"}
    c = quantity_of({"valueQuantity": q}, CK)
    assert (c.value, c.comparator) == (pytest.approx(6.0), "<")  # < 0.1 ukat/L x 60 = < 6 U/L


def test_ucum_fallback_for_codes_outside_the_table() -> None:
    # mg/(24.h) is valid UCUM, not in units.json; ucumvert gives 1 mg/(24.h) = 1 mg/d
    pytest.importorskip("ucumvert")
    dose = Concept("dose", "Dose", "quantity", unit="mg/d")
    assert to_canonical(5, "mg/(24.h)", None, dose).value == pytest.approx(5.0)
    # annotations differ -> refused even though ucumvert would equate them
    assert to_canonical(5, "{cells}/uL", None, HBV).value is None


# --- the table agrees with ucumvert --------------------------------------------------------------------------


def test_table_factors_agree_with_ucumvert() -> None:
    """Every pair of table units with the same dimension converts as ucumvert says (annotations aside)."""
    ucumvert = pytest.importorskip("ucumvert")
    registry = ucumvert.PintUcumRegistry()
    units = json.loads((data_dir("mappings") / "units.json").read_text(encoding="utf-8"))["units"]
    by_dimension: dict[str, list[str]] = {}
    for code, (dimension, _) in units.items():
        by_dimension.setdefault(dimension, []).append(code)
    checked = 0
    # "dlco": mmol/min/kPa -> mL/min/mm[Hg] uses the molar gas volume (22.414 L/mol), outside UCUM
    for dimension, codes in by_dimension.items():
        if dimension == "dlco":
            continue
        reference = codes[0]
        for code in codes[1:]:
            if "{" in code or "{" in reference:
                continue
            expected = float((1.0 * registry.from_ucum(code)).to(registry.from_ucum(reference)).magnitude)
            assert unit_factor(code, reference) == pytest.approx(expected, rel=1e-4), code
            checked += 1
    assert checked > 50


def test_conversion_is_a_cached_lookup(monkeypatch) -> None:
    """A repeated conversion is answered from the pair cache: the UCUM computation runs once per unit pair.
    (How fast that is lives in benchmarks/terminology.py, never in a test.)"""
    from fhir_adapter.terminology import units

    calls = []
    real = units._compute_factor
    monkeypatch.setattr(units, "_compute_factor", lambda s, t: calls.append((s, t)) or real(s, t))
    monkeypatch.setattr(units, "_pair_cache", {})
    first = to_canonical(3.33, "ukat/L", None, CK)
    for _ in range(50):
        assert to_canonical(3.33, "ukat/L", None, CK) == first
    assert len(calls) == len(set(calls)) >= 1  # each pair computed once, then looked up


def test_site_unit_strings_are_read_after_the_built_in_table() -> None:
    # A site writes "千单位/微升" for 10^3/µL: only its own file knows that.
    assert parse_unit(None, "千单位/微升") is None
    assert parse_unit(None, "千单位/微升", {"千单位/微升": "10*3/uL"}) == "10*3/uL"
    # the built-in table still wins for strings it knows
    assert parse_unit(None, "g/dl", {"g/dl": "mg/dL"}) == "g/dL"
