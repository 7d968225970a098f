"""The pass-1 prefilter drops an Observation line only when it is sure no criterion reads it."""

from __future__ import annotations

import os
import random
from datetime import date
from typing import Any

import orjson
import pytest

from fhir_adapter.sources import prefilter
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


@pytest.mark.parametrize("coding", [{"system": LOINC, "code": 6690}, {"system": [LOINC], "code": "6690-2"},
                                    "6690-2", {"system": LOINC, "code": {"v": "6690-2"}}],
                         ids=["number-code", "list-system", "string", "object-code"])
def test_keeps_a_coding_of_the_wrong_shape_without_asking(coding: object) -> None:
    """The catalog is asked only about codings of a Coding's shape (the run used to stop on a numeric code);
    the line is kept for pass 2 to name."""
    asked: list[object] = []
    pf = ObservationPrefilter(lambda c: asked.append(c) or "9999-12-31", "2026-06-02")
    line = obs().replace(b'"coding":[{"system":"http://loinc.org","code":"6690-2","display":"Leukocytes"}]',
                         b'"coding":[' + orjson.dumps(coding) + b"]")
    assert not pf.skips(line) and asked == []


def test_keeps_a_line_when_the_caller_cannot_decide() -> None:
    def fails(codings: list[Any]) -> str | None:
        raise KeyError("no such concept")

    assert not ObservationPrefilter(fails, "2026-06-02").skips(obs())


def test_only_observation_lines_are_asked() -> None:
    assert obs().startswith(PREFIX)
    assert not b'{"resourceType":"ObservationDefinition","id":"x"}'.startswith(PREFIX)


# The compiled scanner (_linescan.c) and the Python loop decide whole buffers; skips() is the definition.

TOKENS = [b'"effectiveDateTime":"', b'"code":{"coding":[', b'}]', b'"contained"', b'"component"', b"\n", b"-",
          b"2025-01-10", b"2026-06-02", b'"', b"{", PREFIX, b""]


def by_skips(pf: ObservationPrefilter, buf: bytes) -> list[tuple[int, bytes]]:
    return [(i, line) for i, line in enumerate(buf.split(b"\n")) if not (line.startswith(PREFIX) and pf.skips(line))]


def tricky_lines() -> list[bytes]:
    line = obs()
    return [
        obs(when="2026-06-01"), obs(when="2026-06-02"), obs(code="29463-7", when="2026-05-01"),
        obs(code="107563-9", when="2019-01-01"), obs(code="59408-5", when="2025-01-01"), obs(when=None),
        obs(when="2025-03"), obs(when="2025"), obs(contained=[{"resourceType": "Observation", "id": "c"}]),
        obs(before_code={"component": [{"code": {"coding": [{"system": LOINC, "code": "6690-2"}]}}]}),
        obs(component=[{"code": {"coding": [{"system": LOINC, "code": "6690-2"}]}}]),  # after the code: skipped
        obs(display='odd "}]" display'), b"", b"   ", b'{"resourceType":"Condition","id":"c1"}',
        line[:line.index(b'"effectiveDateTime"') + 26],  # the line ends inside the date
        line[:line.index(b"}]")],  # no end to the coding list
        PREFIX,
    ]


def test_a_buffer_keeps_the_lines_skips_keeps(pf: ObservationPrefilter) -> None:
    """Cold cache (the scanner hands new coding lists to Python) and warm cache give the same lines."""
    buf = b"\n".join(tricky_lines())
    expected = by_skips(ObservationPrefilter(first_read, max(FIRST.values())), buf)
    assert 0 < len(expected) < len(tricky_lines())
    assert pf.kept(buf) == (expected, len(tricky_lines()))  # cold
    assert pf.kept(buf) == (expected, len(tricky_lines()))  # warm
    assert pf.kept_by_python(buf) == (expected, len(tricky_lines()))


def test_random_edits_of_lines_are_decided_alike(pf: ObservationPrefilter) -> None:
    """Lines cut short or with markers inserted anywhere: the compiled scanner agrees with skips() line by line."""
    rng = random.Random(20261207)
    base = tricky_lines()
    for _ in range(3000):
        line = rng.choice(base)
        for _ in range(rng.randint(1, 3)):
            at = rng.randint(0, len(line))
            line = line[:at] + rng.choice(TOKENS) + line[at + rng.choice([0, 0, 1, 5]):]
        buf = b"\n".join([line, rng.choice(base), line])
        assert pf.kept(buf) == (by_skips(pf, buf), buf.count(b"\n") + 1), buf


def test_the_sample_population_is_decided_alike() -> None:
    from fhir_adapter.paths import sample_dir
    from fhir_adapter.studies.definition import load_study
    from fhir_adapter.studies.lookback import prefilter as study_prefilter
    from fhir_adapter.terminology.catalog import Catalog

    made = study_prefilter(load_study("NCT07377058"), Catalog.load(), date(2026, 6, 30))
    assert made is not None
    pf = made[0]
    buf = (sample_dir() / "Observation.ndjson").read_bytes().rstrip(b"\n")
    kept, count = pf.kept(buf)
    assert kept == by_skips(pf, buf) and 0 < len(kept) < count


def test_only_cached_decisions_skip_in_the_compiled_scanner() -> None:
    scan = prefilter._scan
    if scan is None:
        pytest.skip("compiled scanner not built (FHIR_ADAPTER_PURE_PYTHON set or no compiler)")
    old = obs(when="2025-01-10")
    codings = old[old.index(b'"code":{"coding":[') + 18:old.index(b"}]") + 1]
    assert scan(old, PREFIX, b"2026-06-02", {}) == ([(0, old, True)], 1)  # undecided: Python decides
    assert scan(old, PREFIX, b"2026-06-02", {codings: b"2026-06-02"}) == ([], 1)
    assert scan(old, PREFIX, b"2026-06-02", {codings: None}) == ([(0, old, False)], 1)
    assert scan(old, PREFIX, b"2025-01-10", {codings: b"2026-06-02"}) == ([(0, old, False)], 1)  # not before latest
    with pytest.raises(TypeError):
        scan(old, PREFIX, b"2026-06-02", {codings: "2026-06-02"})


def test_the_compiled_scanner_is_built() -> None:
    """make install compiles it; without it pass 1 is about 4x slower (the results are the same)."""
    if os.environ.get("FHIR_ADAPTER_PURE_PYTHON"):
        pytest.skip("FHIR_ADAPTER_PURE_PYTHON is set")
    assert prefilter._scan is not None, "fhir_adapter/sources/_linescan.c was not compiled: pip install -e . again"
