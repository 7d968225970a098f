"""Derived values: a lymphocyte (or neutrophil) count reported only as a percentage of the white count gives the
absolute count = WBC x % / 100 when both come from the same specimen (same Specimen reference, or, when neither
names one, the same effective time to the minute); never across specimens or days; never when a direct count
is in the window. Worked by hand: 10% of WBC 4.0 x10^9/L = 0.4 x10^9/L (< 0.5: E3c applies)."""

from __future__ import annotations

from typing import Any

from tests.studies.helpers import LOINC, UCUM, Rec, result

WHEN = "2026-06-27T08:30:00+08:00"


def _obs(rec: Rec, code: str, value: float, unit: str | None, when: str = WHEN, specimen: str | None = None,
         ucum: bool = True) -> Rec:
    q: dict[str, Any] = {"value": value}
    if unit:
        q |= {"unit": unit} | ({"system": UCUM, "code": unit} if ucum else {})
    body: dict[str, Any] = {"status": "final", "code": {"coding": [{"system": LOINC, "code": code}]},
                            "effectiveDateTime": when, "valueQuantity": q}
    if specimen:
        body["specimen"] = {"reference": f"Specimen/{specimen}"}
    return rec.add("Observation", body)


def _cbc(pct: float = 10, wbc: float = 4.0, **kw: Any) -> Rec:
    rec = Rec().lab("29463-7", 58, "kg")
    wbc_kw = {k[4:]: v for k, v in kw.items() if k.startswith("wbc_")}
    pct_kw = {k[4:]: v for k, v in kw.items() if k.startswith("pct_")}
    rec = _obs(rec, "26464-8", wbc, "10*9/L", **({"specimen": "s1"} | wbc_kw))
    return _obs(rec, "736-9", pct, "%", **({"specimen": "s1"} | pct_kw))


def test_lymphocyte_percent_of_the_same_specimen_is_derived() -> None:
    out = _cbc().screen()
    c = out["criteria"]["E3c"]
    assert c["result"] == "met"
    assert "derived: 10% of WBC 4 \u00d710^9/L (Observation/obs3, Observation/obs2) = 0.4 \u00d710^9/L" in c["reason"]
    assert set(c["evidence"]) == {"Observation/obs2", "Observation/obs3"}


def test_derived_count_above_the_threshold() -> None:
    assert result(_cbc(pct=30, wbc=4.0).screen(), "E3c") == "not-met"  # 1.2 x10^9/L


def test_same_minute_without_specimens_is_one_draw() -> None:
    rec = _cbc(wbc_specimen=None, pct_specimen=None)
    assert result(rec.screen(), "E3c") == "met"


def test_never_across_specimens_or_times() -> None:
    assert result(_cbc(pct_specimen="s2").screen(), "E3c") == "unknown"
    other_time = _cbc(wbc_specimen=None, pct_specimen=None, pct_when="2026-06-27T09:30:00+08:00")
    assert result(other_time.screen(), "E3c") == "unknown"
    other_day = _cbc(wbc_specimen=None, pct_specimen=None, pct_when="2026-06-26T08:30:00+08:00")
    assert result(other_day.screen(), "E3c") == "unknown"


def test_a_direct_count_in_the_window_wins() -> None:
    """A measured lymphocyte count in the window is read; nothing is derived."""
    rec = _cbc().lab("26474-7", 0.9, "10*9/L", offset=-10)
    out = rec.screen()
    assert result(out, "E3c") == "not-met" and "derived" not in out["criteria"]["E3c"]["reason"]


def test_unit_arithmetic_must_be_exact() -> None:
    """A 'percentage' whose unit is not % (here a count unit) is not a percentage: nothing derived."""
    assert result(_cbc(pct=0.4).screen(), "E3c") == "met"  # sanity: 0.4% of 4.0 = 0.016
    rec = Rec().lab("29463-7", 58, "kg")
    rec = _obs(_obs(rec, "26464-8", 4.0, "10*9/L", specimen="s1"), "736-9", 10, "10*9/L", specimen="s1")
    assert result(rec.screen(), "E3c") == "unknown"


def test_wbc_in_another_unit_is_converted_first() -> None:
    """WBC 4000 /uL = 4.0 x10^9/L; 10% = 0.4 x10^9/L."""
    rec = Rec().lab("29463-7", 58, "kg")
    rec = _obs(_obs(rec, "26464-8", 4000, "/uL", specimen="s1"), "736-9", 10, "%", specimen="s1")
    assert result(rec.screen(), "E3c") == "met"


def test_neutrophil_percent_feeds_e3b() -> None:
    """E3b: 20% neutrophils of WBC 4.0 = 0.8 x10^9/L (< 1.0)."""
    rec = Rec().lab("29463-7", 58, "kg")
    rec = _obs(_obs(rec, "26464-8", 4.0, "10*9/L", specimen="s1"), "770-8", 20, "%", specimen="s1")
    out = rec.screen()
    assert result(out, "E3b") == "met" and "derived: 20% of WBC" in out["criteria"]["E3b"]["reason"]


def test_every_derive_rule_in_the_catalog_is_exact() -> None:
    """Each 'derive' rule names a percentage concept in % and a total whose unit converts exactly into the
    derived concept's unit (the arithmetic total x % / 100 needs nothing else)."""
    from fhir_adapter.terminology.catalog import Catalog
    from fhir_adapter.terminology.units import factor_to_canonical

    catalog = Catalog.load()
    rules = [(c, c.derive) for c in catalog.concepts() if c.derive]
    assert {c.id for c, _ in rules} >= {"lymphocytes", "neutrophils"}
    for concept, (pct, total) in rules:
        assert catalog.concept(pct).unit == "%"
        assert factor_to_canonical(catalog.concept(total).unit, concept) == 1.0
