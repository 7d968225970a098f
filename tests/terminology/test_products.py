"""RxNorm normalized names read as ingredients, strengths and dose form, and products read as exposures
(issue "Drug products → ingredients and strengths"). Arithmetic in the comments."""

from __future__ import annotations

from typing import Any

import pytest

from fhir_adapter.record.patient_record import PatientRecord
from fhir_adapter.terminology.catalog import Catalog
from fhir_adapter.terminology.dosage import Strength
from fhir_adapter.terminology.exposure import exposures_of, read_exposures
from fhir_adapter.terminology.products import ingredient_concept, parse_name, read_name

RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
LOCAL = "http://hospital.example.org/CodeSystem/formulary"
NDC = "http://hl7.org/fhir/sid/ndc"


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return Catalog.load()


def statement(medication: dict[str, Any], dosage: list[dict[str, Any]] | None = None, **extra: Any) -> dict:
    return {"resourceType": "MedicationStatement", "id": "ms1", "status": "active", **medication,
            "subject": {"reference": "Patient/p1"}, "effectivePeriod": {"start": "2026-03-01"},
            "dosage": dosage if dosage is not None else [], **extra}


def record(*resources: dict, shared: dict | None = None) -> PatientRecord:
    by_type: dict[str, list[dict]] = {}
    for r in resources:
        by_type.setdefault(r["resourceType"], []).append(r)
    return PatientRecord("p1", {"resourceType": "Patient", "id": "p1"}, by_type, shared=shared or {})


def units(n: float, unit: str, code: str = "BID") -> list[dict]:
    return [{"timing": {"code": {"coding": [{"code": code}]}}, "doseAndRate": [{"doseQuantity": {"value": n,
                                                                                                "unit": unit}}]}]


def local(display: str, code: str = "L1") -> dict:
    return {"medicationCodeableConcept": {"coding": [{"system": LOCAL, "code": code, "display": display}]}}


# --- the grammar ------------------------------------------------------------------------------------------------
def test_clinical_and_branded_drug_names() -> None:
    scd = parse_name("tofacitinib 5 MG Oral Tablet")
    assert scd is not None and scd.dose_form == "Oral Tablet" and scd.route == "oral" and scd.discrete
    (c,) = scd.components
    assert (c.substance, c.amount, c.unit, c.strength) == ("tofacitinib", 5, "MG", Strength(5.0))
    sbd = parse_name("tofacitinib 5 MG Oral Tablet [Xeljanz]")
    assert sbd is not None and sbd.brand == "Xeljanz" and sbd.components == scd.components


def test_quantity_prefix_concentration_and_micrograms() -> None:
    # 0.4 mL of adalimumab 100 mg/mL: a concentration, mg per mL (a volume dose converts, a syringe count not)
    syringe = parse_name("0.4 ML adalimumab 100 MG/ML Prefilled Syringe")
    assert syringe is not None and syringe.components[0].strength == Strength(100.0, "mL", 1.0)
    assert not syringe.discrete and syringe.route is None
    er = parse_name("24 HR tofacitinib 11 MG Extended Release Oral Tablet")
    assert er is not None and er.components[0].strength == Strength(11.0)
    # 500 MCG = 0.5 mg per tablet
    mcg = parse_name("dexamethasone 500 MCG Oral Tablet")
    assert mcg is not None and mcg.components[0].strength == Strength(0.5)


def test_a_mass_in_a_form_that_is_not_countable_gives_no_strength_per_unit() -> None:
    """"methylprednisolone 125 MG Injection": 125 mg per vial, but a dose in vials is not read (only tablets,
    capsules and suppositories are countable units); a mg dose still works."""
    name = parse_name("methylprednisolone 125 MG Injection")
    assert name is not None and name.components[0].strength is None and name.route is None


def test_multi_ingredient_name() -> None:
    name = parse_name("sulfamethoxazole 800 MG / trimethoprim 160 MG Oral Tablet")
    assert name is not None
    assert [(c.substance, c.strength) for c in name.components] == [
        ("sulfamethoxazole", Strength(800.0)), ("trimethoprim", Strength(160.0))]


def test_packs() -> None:
    medrol = parse_name("{21 (methylprednisolone 4 MG Oral Tablet) } Pack [Medrol]")
    assert medrol is not None and medrol.pack and medrol.brand == "Medrol"
    assert medrol.components[0].strength == Strength(4.0) and medrol.route == "oral"
    # two strengths in one pack: which tablet a dose means is not known, so no mg per tablet
    taper = parse_name("{7 (prednisone 5 MG Oral Tablet) / 14 (prednisone 10 MG Oral Tablet) } Pack")
    assert taper is not None and taper.components[0].strength is None and "several strengths" in (taper.note or "")


@pytest.mark.parametrize("text", [
    "Tofacitinib 5 mg tablets", "tofacitinib 5mg bid", "tofacitinib", "tofacitinib 5 MG", "Xeljanz",
    "tofacitinib 5 MG Oral Tablet, take one twice daily", "tofacitinib 5 mg Oral Tablet",
    "tofacitinib 5 MG oral tablet", "5 MG Oral Tablet", "{21 (methylprednisolone 4 MG Oral Tablet) Pack",
    "\u6258\u6cd5\u66ff\u5e03 5mg \u7247", "", "tofacitinib five MG Oral Tablet",
])
def test_what_is_not_an_rxnorm_name_is_not_read(text: str) -> None:
    assert parse_name(text) is None


# --- ingredient names -------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("substance", "concept"), [
    ("tofacitinib", "tofacitinib"), ("TOFACITINIB", "tofacitinib"), ("predniSONE", "prednisone"),
    ("methylprednisolone sodium succinate", "methylprednisolone"), ("methylPREDNISolone acetate", "methylprednisolone"),
    ("tofacitinib citrate", "tofacitinib"), ("ruxolitinib phosphate", "ruxolitinib"),
    ("hydroxychloroquine sulfate", "hydroxychloroquine"), ("ethambutol hydrochloride", "ethambutol"),
    ("triamcinolone acetonide", "triamcinolone"), ("prednisolone sodium phosphate", "prednisolone"),
    ("mycophenolate mofetil", "mycophenolate"), ("mycophenolic acid", "mycophenolate"),
    ("cyclosporine, modified", "cyclosporine"), ("BX Rating tacrolimus", "tacrolimus"),
    ("rituximab-abbs", "rituximab"), ("tocilizumab-aazg", "tocilizumab"), ("rifampin", "rifampicin"),
    ("immune globulin subcutaneous (human) - hipp", "immunoglobulin-sc"),
])
def test_ingredient_names_with_salts_and_qualifiers(catalog: Catalog, substance: str, concept: str) -> None:
    found = ingredient_concept(catalog, substance)
    assert found is not None and found.id == concept


@pytest.mark.parametrize("substance", ["omeprazole", "prednisone 5 mg", "sodium", "citrate", "sulfate",
                                       "JAK inhibitor", "old code", "immunoglobulin G, human"])
def test_names_that_are_not_one_catalog_ingredient(catalog: Catalog, substance: str) -> None:
    """"immunoglobulin G, human" is the ingredient of IV and SC products alike: it names neither."""
    assert ingredient_concept(catalog, substance) is None


def test_every_catalog_product_name_names_its_own_concept(catalog: Catalog) -> None:
    """A product code and its RxNorm name must agree: where the catalog's display parses and names catalog
    ingredients, the concept the code maps to is one of them (or the whole combination)."""
    checked = 0
    for concept in catalog.concepts("drug"):
        for code in concept.codes:
            read = read_name(catalog, code.display) if code.system == RXNORM else None
            if read is None or not read.ingredients:
                continue
            named = {c.id for c, _ in read.ingredients} | ({read.combination.id} if read.combination else set())
            assert concept.id in named, (concept.id, code.code, code.display, named)
            checked += 1
    assert checked > 500


# --- products read as exposures ---------------------------------------------------------------------------------
def test_prednisone_tablets_by_product_code(catalog: Catalog) -> None:
    # prednisone 5 MG Oral Tablet (RxNorm SCD 312617, code only), 2 tablets twice daily: 2 x 5 x 2 = 20 mg/day
    ms = statement({"medicationCodeableConcept": {"coding": [{"system": RXNORM, "code": "312617"}]}},
                   units(2, "tablet"))
    (e,) = exposures_of(ms, record(ms), catalog).items
    assert (e.concept.id, e.daily_mg, e.route, e.basis) == ("prednisone", 20, "oral", "")


def test_a_tablet_dose_of_a_concentration_gives_no_mg_with_the_reason(catalog: Catalog) -> None:
    # prednisone 5 MG/ML Oral Solution (SCD 205301) dosed as 2 tablets: the strength is per mL
    ms = statement({"medicationCodeableConcept": {"coding": [{"system": RXNORM, "code": "205301"}]}},
                   units(2, "tablet"))
    (e,) = exposures_of(ms, record(ms), catalog).items
    assert e.daily_mg is None and e.dose.reason == "dose in 'tablet' but the strength is per 1 mL"
    # 4 mL twice daily: 4 x 5 x 2 = 40 mg/day
    ms = statement({"medicationCodeableConcept": {"coding": [{"system": RXNORM, "code": "205301"}]}},
                   [{"timing": {"code": {"coding": [{"code": "BID"}]}},
                     "doseAndRate": [{"doseQuantity": {"value": 4, "unit": "mL", "code": "mL",
                                                       "system": "http://unitsofmeasure.org"}}]}])
    (e,) = exposures_of(ms, record(ms), catalog).items
    assert e.daily_mg == 40


def test_tmp_smx_by_name_gives_each_ingredient_its_mg(catalog: Catalog) -> None:
    # "sulfamethoxazole 800 MG / trimethoprim 160 MG Oral Tablet" under a local code, 1 tablet daily:
    # SMX 1 x 800 = 800 mg/day, TMP 1 x 160 = 160 mg/day; the combination (class tmp-smx, for I6) as well
    ms = statement(local("sulfamethoxazole 800 MG / trimethoprim 160 MG Oral Tablet"), units(1, "tablet", "QD"))
    by_id = {e.concept.id: e for e in exposures_of(ms, record(ms), catalog).items}
    assert by_id["sulfamethoxazole"].daily_mg == 800 and by_id["trimethoprim"].daily_mg == 160
    assert by_id["tmp-smx"].daily_mg is None and "tmp-smx" in by_id["tmp-smx"].classes
    assert all(e.basis.startswith("read from the product name") for e in by_id.values())


def test_tmp_smx_by_product_code_is_split_into_its_ingredients(catalog: Catalog) -> None:
    # RxNorm SCD 198335 (code only): the catalog's name gives 800 mg SMX and 160 mg TMP per tablet;
    # 1 tablet three times a week = 3/7 tablet a day: SMX 800 x 3 / 7 = 342.86 mg/day
    ms = statement({"medicationCodeableConcept": {"coding": [{"system": RXNORM, "code": "198335"}]}},
                   units(1, "tablet", "TIW"))
    by_id = {e.concept.id: e for e in exposures_of(ms, record(ms), catalog).items}
    assert set(by_id) == {"tmp-smx", "sulfamethoxazole", "trimethoprim"}
    assert by_id["sulfamethoxazole"].daily_mg == pytest.approx(800 * 3 / 7)
    assert by_id["trimethoprim"].dose.mg_per_week == pytest.approx(480)


def test_a_mg_dose_of_a_combination_is_not_given_to_one_ingredient(catalog: Catalog) -> None:
    ms = statement(local("sulfamethoxazole 800 MG / trimethoprim 160 MG Oral Tablet"),
                   [{"timing": {"code": {"coding": [{"code": "QD"}]}},
                     "doseAndRate": [{"doseQuantity": {"value": 960, "unit": "mg", "code": "mg",
                                                       "system": "http://unitsofmeasure.org"}}]}])
    for e in exposures_of(ms, record(ms), catalog).items:
        assert e.daily_mg is None


def test_a_pack_by_code_and_by_name(catalog: Catalog) -> None:
    # GPCK 762675 "{21 (methylprednisolone 4 MG Oral Tablet) } Pack", 6 tablets once daily = 24 mg/day
    for medication in ({"medicationCodeableConcept": {"coding": [{"system": RXNORM, "code": "762675"}]}},
                       local("{21 (methylprednisolone 4 MG Oral Tablet) } Pack [Medrol]")):
        ms = statement(medication, units(6, "tablet", "QD"))
        (e,) = exposures_of(ms, record(ms), catalog).items
        assert (e.concept.id, e.daily_mg, e.route) == ("methylprednisolone", 24, "oral")


def test_the_dose_form_gives_the_route_only_when_the_dosage_has_none(catalog: Catalog) -> None:
    cream = statement(local("hydrocortisone 10 MG/ML Topical Cream"), [{"text": "apply twice daily"}])
    (e,) = exposures_of(cream, record(cream), catalog).items
    assert e.concept.id == "hydrocortisone" and e.route == "topical"
    iv = [{"route": {"coding": [{"system": "http://snomed.info/sct", "code": "47625008"}]},
           "doseAndRate": [{"doseQuantity": {"value": 500, "unit": "mg"}}]}]
    pulse = statement(local("methylprednisolone sodium succinate 500 MG Injection"), iv)
    (e,) = exposures_of(pulse, record(pulse), catalog).items
    assert e.concept.id == "methylprednisolone" and e.route == "intravenous"


def test_a_name_that_is_not_an_rxnorm_name_stays_unread(catalog: Catalog) -> None:
    ms = statement(local("Tofacitinib 5 mg tablets"), units(1, "tablet"))
    found = read_exposures(record(ms), catalog)
    assert found.items == () and found.unresolved == (
        ("MedicationStatement/ms1", "medication 'Tofacitinib 5 mg tablets' not in the catalog"),)


def test_an_unknown_ingredient_in_an_rxnorm_name_is_not_a_match(catalog: Catalog) -> None:
    ms = statement(local("omeprazole 20 MG Delayed Release Oral Capsule"), units(1, "capsule"))
    assert read_exposures(record(ms), catalog).items == ()


def test_medication_ingredient_without_strength_takes_it_from_the_product_name(catalog: Catalog) -> None:
    # Medication coded locally with the display "tacrolimus 1 MG Oral Capsule", ingredient tacrolimus (RxNorm
    # IN 42316) without a strength: 1 mg per capsule from the name; 2 capsules twice daily = 4 mg/day
    medication = {"resourceType": "Medication", "id": "m1",
                  "code": {"coding": [{"system": LOCAL, "code": "TAC1", "display": "tacrolimus 1 MG Oral Capsule"}]},
                  "ingredient": [{"itemCodeableConcept": {"coding": [{"system": RXNORM, "code": "42316"}]}}]}
    ms = statement({"medicationReference": {"reference": "#m1"}}, units(2, "capsule"), contained=[medication])
    (e,) = exposures_of(ms, record(ms), catalog).items
    assert (e.concept.id, e.daily_mg) == ("tacrolimus", 4)


def test_medication_ingredient_strength_as_mg_per_ml(catalog: Catalog) -> None:
    # ingredient strength 20 mg / 1 mL (tocilizumab): a dose of 20 mL is 400 mg
    medication = {"resourceType": "Medication", "id": "m2", "code": {"text": "\u96c5\u7f8e\u7f57"},
                  "ingredient": [{"itemCodeableConcept": {"coding": [{"system": RXNORM, "code": "612865"}]},
                                  "strength": {"numerator": {"value": 20, "unit": "mg", "code": "mg",
                                                             "system": "http://unitsofmeasure.org"},
                                               "denominator": {"value": 1, "unit": "mL", "code": "mL",
                                                               "system": "http://unitsofmeasure.org"}}}]}
    ma = {"resourceType": "MedicationAdministration", "id": "ma1", "status": "completed",
          "medicationReference": {"reference": "Medication/m2"}, "subject": {"reference": "Patient/p1"},
          "effectiveDateTime": "2026-03-01",
          "dosage": {"dose": {"value": 20, "unit": "mL", "code": "mL", "system": "http://unitsofmeasure.org"}}}
    (e,) = exposures_of(ma, record(ma, shared={"Medication/m2": medication}), catalog).items
    assert (e.concept.id, e.daily_mg) == ("tocilizumab", 400)


def test_subcutaneous_immunoglobulin_products_are_not_ivig(catalog: Catalog) -> None:
    """Hizentra (SBD 1809069, immunoglobulin G 200 mg/mL, a subcutaneous product) is not IVIG (E13 flags it)."""
    (concept,) = catalog.classify({"coding": [{"system": RXNORM, "code": "1809069"}]})
    assert concept.id == "immunoglobulin-sc"


def test_the_response_baseline_from_a_tofacitinib_product(catalog: Catalog) -> None:
    """NCT04966884's baseline is the first tofacitinib exposure (criteria-tables.md T3), here coded only as the
    branded drug "tofacitinib 5 MG Oral Tablet [Xeljanz]" (SBD 1357547)."""
    from datetime import date

    from fhir_adapter.response.respond import first_exposure

    ms = statement({"medicationCodeableConcept": {"coding": [{"system": RXNORM, "code": "1357547"}]}},
                   units(1, "tablet"))
    anchor = first_exposure(record(ms), catalog, "tofacitinib")
    assert anchor.day == date(2026, 3, 1) and anchor.source == "MedicationStatement/ms1"
