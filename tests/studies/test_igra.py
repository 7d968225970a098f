"""E5b: an IGRA is read from the lab's interpretation or from all its components by the manufacturer's rule
(QuantiFERON-TB Gold Plus package insert), never from one number. Worked by hand:

- Nil 0.10, TB1-Nil 0.50 (>= 0.35 and >= 25% of Nil = 0.025), Mitogen-Nil 5.0: positive.
- Nil 0.10, TB1-Nil 0.10, TB2-Nil 0.05 (both < 0.35), Mitogen-Nil 5.0 (>= 0.5): negative.
- Nil 2.00, TB1-Nil 0.40 (>= 0.35 but < 25% of Nil = 0.50), TB2-Nil 0.10, Mitogen-Nil 3.0: negative.
- Nil 9.0 (> 8.0): indeterminate, whatever the rest.
- Nil 0.10, TB1-Nil 0.10, TB2-Nil 0.05, Mitogen-Nil 0.30 (< 0.5): indeterminate.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.studies.helpers import LOINC, UCUM, Rec, result

V3 = "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation"
NIL, TB1, TB2, MITOGEN, PANEL = "71776-9", "64084-7", "88517-8", "71774-4", "71775-1"
WHEN = "2026-06-20T08:30:00+08:00"


def _q(value: float, comparator: str | None = None) -> dict[str, Any]:
    q: dict[str, Any] = {"value": value, "unit": "IU/mL", "system": UCUM, "code": "[IU]/mL"}
    return q | ({"comparator": comparator} if comparator else {})


def _separate(rec: Rec, values: dict[str, float | tuple[str, float]], when: str = WHEN,
              times: dict[str, str] | None = None) -> Rec:
    """Each component its own Observation, drawn at ``when`` (or its own time from ``times``)."""
    for code, v in values.items():
        comparator, value = v if isinstance(v, tuple) else (None, v)
        rec.add("Observation", {"status": "final", "code": {"coding": [{"system": LOINC, "code": code}]},
                                "effectiveDateTime": (times or {}).get(code, when),
                                "valueQuantity": _q(value, comparator)})
    return rec


def _base() -> Rec:
    return Rec().lab("29463-7", 58, "kg")


POSITIVE = {NIL: 0.10, TB1: 0.50, TB2: 0.20, MITOGEN: 5.0}
NEGATIVE = {NIL: 0.10, TB1: 0.10, TB2: 0.05, MITOGEN: 5.0}


def test_components_positive_by_the_manufacturer_rule() -> None:
    out = _separate(_base(), POSITIVE).screen()
    c = out["criteria"]["E5b"]
    assert c["result"] == "met"
    assert "TB1 minus Nil 0.5 IU/mL >= 0.35 and >= 25% of Nil" in c["reason"]
    assert len([e for e in c["evidence"] if e.startswith("Observation/")]) >= 4  # every component is evidence


@pytest.mark.parametrize("values", [NEGATIVE, {NIL: 2.0, TB1: 0.40, TB2: 0.10, MITOGEN: 3.0},
                                    {NIL: 0.10, TB1: ("<", 0.1), TB2: 0.05, MITOGEN: (">", 10.0)}])
def test_components_negative_by_the_manufacturer_rule(values: dict[str, Any]) -> None:
    out = _separate(_base(), values).screen()
    assert result(out, "E5b") == "not-met"
    assert "negative" in out["criteria"]["E5b"]["reason"]


@pytest.mark.parametrize(("values", "why"), [({NIL: 9.0, TB1: 0.1, TB2: 0.1, MITOGEN: 5.0}, "Nil 9 IU/mL > 8"),
                                             ({NIL: 0.1, TB1: 0.1, TB2: 0.05, MITOGEN: 0.3}, "Mitogen minus Nil")])
def test_components_indeterminate(values: dict[str, float], why: str) -> None:
    out = _separate(_base(), values).screen()
    assert result(out, "E5b") == "unknown" and why in out["criteria"]["E5b"]["reason"]


def test_components_inside_one_panel_observation() -> None:
    """The components as Observation.component of the QuantiFERON panel read the same way."""
    comps = [{"code": {"coding": [{"system": LOINC, "code": code}]}, "valueQuantity": _q(v)}
             for code, v in POSITIVE.items()]
    rec = _base().add("Observation", {"status": "final", "code": {"coding": [{"system": LOINC, "code": PANEL}]},
                                      "effectiveDateTime": WHEN, "component": comps})
    assert result(rec.screen(), "E5b") == "met"


def test_one_number_alone_is_never_read() -> None:
    """A lone IGRA number (here the TB antigen tube 46217-6, flagged H) cannot say positive or negative."""
    rec = _base().add("Observation", {"status": "final", "code": {"coding": [{"system": LOINC, "code": "46217-6"}]},
                                      "effectiveDateTime": WHEN, "valueQuantity": _q(0.8),
                                      "interpretation": [{"coding": [{"system": V3, "code": "H"}]}]})
    out = rec.screen()
    assert result(out, "E5b") == "unknown"
    assert "component" in out["criteria"]["E5b"]["reason"]


def test_missing_component_is_unknown() -> None:
    """TB antigens negative but no Mitogen: the result cannot be told from an indeterminate one."""
    values = {k: v for k, v in NEGATIVE.items() if k != MITOGEN}
    out = _separate(_base(), values).screen()
    assert result(out, "E5b") == "unknown" and "Mitogen" in out["criteria"]["E5b"]["reason"]


def test_components_of_different_draws_are_never_combined() -> None:
    """Nil from one draw and TB antigens from another day are not one test."""
    out = _separate(_base(), POSITIVE, times={NIL: "2026-05-02T08:30:00+08:00"}).screen()
    assert result(out, "E5b") == "unknown" and "Nil" in out["criteria"]["E5b"]["reason"]


def test_lab_interpretation_still_decides() -> None:
    """The lab's overall interpretation (71773-6) is read as before."""
    assert result(_base().qual("71773-6", True).screen(), "E5b") == "met"
    assert result(_base().qual("71773-6", False).screen(), "E5b") == "not-met"


def test_a_number_under_the_interpretation_code_is_not_read_against_a_range() -> None:
    """An IGRA result sent as one number (here under 71773-6, 0.8 IU/mL, range up to 0.35) is not read as
    positive from its range: only the lab's explicit POS/NEG/IND, or all components, read an IGRA."""
    body = {"status": "final", "code": {"coding": [{"system": LOINC, "code": "71773-6"}]}, "effectiveDateTime": WHEN,
            "valueQuantity": _q(0.8), "referenceRange": [{"high": {"value": 0.35}}]}
    assert result(_base().add("Observation", dict(body)).screen(), "E5b") == "unknown"
    body["interpretation"] = [{"coding": [{"system": V3, "code": "POS"}]}]
    assert result(_base().add("Observation", body).screen(), "E5b") == "met"
