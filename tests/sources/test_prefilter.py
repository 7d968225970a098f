"""The pass-1 prefilter drops an Observation line only when it is sure no criterion reads it."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from fhir_adapter.sources.prefilter import PREFIX, ObservationPrefilter

LOINC = "http://loinc.org"
FIRST = {"6690-2": "2026-06-02", "29463-7": "2026-04-01"}  # WBC: 28 days before S; weight: 90 days


def first_read(codings: list[dict[str, Any]]) -> str | None:
    """A stand-in for the catalog: WBC and weight have look-backs, anti-MDA5 (107563-9) is read at any date,
    other codes map to nothing."""
    dates = []
    for c in codings:
        if c.get("code") == "107563-9":
            return None
        if c.get("code") in FIRST:
            dates.append(FIRST[c["code"]])
    return min(dates) if dates else "9999-12-31"


@pytest.fixture
def pf() -> ObservationPrefilter:
    return ObservationPrefilter(first_read, max(FIRST.values()))


def obs(code: str = "6690-2", when: str | None = "2025-01-10T08:00:00Z", display: str = "Leukocytes",
        **extra: Any) -> bytes:
    body: dict[str, Any] = {"resourceType": "Observation", "id": "o1", "status": "final"}
    body |= extra.pop("before_code", {})
    body["code"] = {"coding": [{"system": LOINC, "code": code, "display": display}]}
    body["subject"] = {"reference": "Patient/p1"}
    if when is not None:
        body["effectiveDateTime"] = when
    body |= extra
    body["valueQuantity"] = {"value": 5.1, "unit": "10*9/L"}
    return orjson.dumps(body)


def test_drops_a_lab_older_than_its_look_back(pf: ObservationPrefilter) -> None:
    assert pf.skips(obs(when="2026-06-01T23:59:00+08:00"))  # the day before the WBC horizon 2026-06-02


def test_keeps_a_lab_on_its_horizon_or_later(pf: ObservationPrefilter) -> None:
    assert not pf.skips(obs(when="2026-06-02T00:00:00Z"))
    assert not pf.skips(obs(when="2026-06-02"))
    assert not pf.skips(obs(when="2027-01-01"))


def test_each_concept_has_its_own_horizon(pf: ObservationPrefilter) -> None:
    """Weight is read 90 days back: a weight from 2026-05-01 is kept where a WBC of that day is dropped."""
    assert not pf.skips(obs(code="29463-7", when="2026-05-01"))
    assert pf.skips(obs(code="6690-2", when="2026-05-01"))
    assert pf.skips(obs(code="29463-7", when="2026-03-31"))


def test_a_coding_list_is_read_whole_even_with_brackets_in_a_display(pf: ObservationPrefilter) -> None:
    """LOINC displays carry brackets ("Leukocytes [#/volume] in Blood"); the whole list still decides."""
    assert pf.skips(obs(display="Leukocytes [#/volume] in Blood"))
    two = {"coding": [{"system": "urn:oid:1.2.3", "code": "CBC-WBC", "display": "WBC [x]"},
                      {"system": LOINC, "code": "107563-9"}]}
    line = obs().replace(b'"code":{"coding":[{"system":"http://loinc.org","code":"6690-2","display":"Leukocytes"}]}',
                         b'"code":' + orjson.dumps(two))
    assert b"107563-9" in line and not pf.skips(line)  # the second coding maps to a concept read at any date


def test_keeps_what_is_read_at_any_date(pf: ObservationPrefilter) -> None:
    assert not pf.skips(obs(code="107563-9", when="2019-01-01"))


def test_drops_an_old_line_that_maps_to_no_concept(pf: ObservationPrefilter) -> None:
    assert pf.skips(obs(code="59408-5", when="2025-01-01"))
    assert not pf.skips(obs(code="59408-5", when="2026-06-10"))  # recent lines are kept unread


@pytest.mark.parametrize("line", [
    obs(when=None),                                                      # no effectiveDateTime
    obs(when="2025-03"),                                                 # partial dates are kept
    obs(when="2025"),
    obs(contained=[{"resourceType": "Observation", "id": "c"}]),        # contained resources
    obs(before_code={"component": [{"code": {"coding": [{"system": LOINC, "code": "6690-2"}]}}]}),
    obs(display='odd "}]" display'),                                     # a "}]" inside a string
    obs().replace(b'"code":{"coding":[', b'"code":{"text":"WBC","coding":['),  # not the compact form
    obs().replace(b'"code":{"coding":[', b'"code" : {"coding":['),
], ids=["no-date", "year-month", "year", "contained", "component-first", "brackets-in-string", "text-first",
        "spaced"])
def test_keeps_what_it_cannot_read_with_certainty(pf: ObservationPrefilter, line: bytes) -> None:
    assert not pf.skips(line)


def test_only_observation_lines_are_asked() -> None:
    assert obs().startswith(PREFIX)
    assert not b'{"resourceType":"ObservationDefinition","id":"x"}'.startswith(PREFIX)
