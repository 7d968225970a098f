"""Read an Observation's result into a small typed value, and tell whether a bounded value decides a threshold.

Qualitative results arrive as value codes (SNOMED 10828004 positive), interpretation codes (v3 POS/NEG/IND),
or text ("阳性", "+++", "弱阳性"); quantities may carry a comparator ("<0.5" as valueString, or
``valueQuantity.comparator``). The tables are data: ``mappings/qualitative.json``.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from typing import Any, Literal

ResultKind = Literal["positive", "negative", "indeterminate", "quantity", "unmapped", "absent"]
Comparator = Literal["<", "<=", ">", ">=", "ad"]  # FHIR QuantityComparator; "ad": sufficient to achieve

UCUM = "http://unitsofmeasure.org"
_QUALITATIVE = ("positive", "negative", "indeterminate")
_COMPARATORS = {"<": "<", "<=": "<=", ">": ">", ">=": ">=", "≤": "<=", "≥": ">=", "=<": "<=", "=>": ">=", "ad": "ad"}
_NUMBER = re.compile(r"^\s*(<=|>=|=<|=>|<|>|≤|≥)?\s*([-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?)\s*(.*?)\s*$")


@dataclass(frozen=True, slots=True)
class Result:
    """An Observation's value, read.

    ``kind``: positive / negative / indeterminate (a qualitative result, from the value or, lacking one, the
    interpretation), quantity (``value`` with an optional ``comparator``: "<0.5" is value 0.5, comparator "<"),
    unmapped (a value the tables do not know; ``text`` holds it), absent (no value at all).
    ``interpretation``: the normalized interpretation (positive, negative, indeterminate, high, low, normal,
    abnormal, critical-high ...), whatever the value. ``grade``: a graded positive's strength (+ 1 ... ++++ 4,
    weakly positive 0).
    """

    kind: ResultKind
    value: float | None = None
    comparator: Comparator | None = None
    unit: str | None = None  # the unit text as sent
    unit_code: str | None = None  # the UCUM code, when the quantity says its system is UCUM
    text: str | None = None
    interpretation: str | None = None
    grade: int | None = None

    @property
    def is_qualitative(self) -> bool:
        return self.kind in _QUALITATIVE


@dataclass(frozen=True, slots=True)
class _Tables:
    codes: Mapping[tuple[str, str], str]
    flags: Mapping[tuple[str, str], str]
    texts: Mapping[str, str]
    graded: Mapping[str, int]


def normalize_text(text: str) -> str:
    """NFKC (full-width plus and brackets become ASCII), case-folded, trimmed, inner spaces collapsed."""
    return " ".join(unicodedata.normalize("NFKC", text).casefold().split())


@cache
def tables() -> _Tables:
    """The tables of ``mappings/qualitative.json``, validated (cached)."""
    from fhir_adapter.paths import data_dir
    from fhir_adapter.terminology.schema import display_path, read_json, validate

    path = data_dir("mappings") / "qualitative.json"
    doc = read_json(path)
    validate(doc, "qualitative.schema.json", display_path(path))
    codes = {(c["system"], c["code"]): c["result"] for c in doc["codes"]}
    flags = {(doc["flags"]["system"], k): v for k, v in doc["flags"]["codes"].items()}
    texts = {normalize_text(t): kind for kind in _QUALITATIVE for t in doc["texts"][kind]}
    graded = {normalize_text(k): v for k, v in doc["graded"].items() if not k.startswith("$")}
    return _Tables(codes, flags, texts, graded)


def read_text(text: str | None) -> tuple[str | None, int | None]:
    """("positive", grade) for "阳性", "+++", "弱阳性"...; (None, None) when the text is not a known result."""
    if not text:
        return None, None
    t = tables()
    norm = normalize_text(text)
    if norm in t.graded:
        return "positive", t.graded[norm]
    if norm in t.texts:
        return t.texts[norm], None
    # "阳性(++)", "negative (-)": every recognised part must agree
    parts = [p for p in re.split(r"[()\[\],;/ ]+", norm) if p]
    found: set[str] = set()
    grade = None
    for p in parts:
        if p in t.graded:
            found.add("positive")
            grade = t.graded[p]
        elif p in t.texts:
            found.add(t.texts[p])
    if len(found) == 1:
        return found.pop(), grade
    return None, None


def _coding_result(cc: Mapping[str, Any] | None) -> str | None:
    if not isinstance(cc, Mapping):
        return None
    codes = tables().codes
    found = {codes[(c.get("system"), c.get("code"))] for c in cc.get("coding") or () if isinstance(c, Mapping)
             and (c.get("system"), c.get("code")) in codes}
    return found.pop() if len(found) == 1 else None


def read_interpretation(observation: Mapping[str, Any]) -> str | None:
    """The normalized meaning of ``Observation.interpretation`` (first that maps), or None."""
    t = tables()
    for cc in observation.get("interpretation") or ():
        if not isinstance(cc, Mapping):
            continue
        for c in cc.get("coding") or ():
            if not isinstance(c, Mapping):
                continue
            key = (c.get("system"), c.get("code"))
            if key in t.codes:
                return t.codes[key]
            if key in t.flags:
                return t.flags[key]
        kind, _ = read_text(cc.get("text"))
        if kind:
            return kind
    return None


def parse_number(text: str) -> tuple[float, Comparator | None, str | None] | None:
    """(0.5, "<", "U/mL") for "<0.5 U/mL"; None when the text is not a (bounded) number."""
    m = _NUMBER.match(unicodedata.normalize("NFKC", text))
    if not m:
        return None
    comparator = _COMPARATORS[m.group(1)] if m.group(1) else None
    return float(m.group(2)), comparator, (m.group(3) or None)  # type: ignore[return-value]


def read_result(observation: Mapping[str, Any]) -> Result:
    """Read ``Observation.value[x]`` (and ``interpretation``) into a ``Result``. Pure; never raises on bad data."""
    interp = read_interpretation(observation)
    vq = observation.get("valueQuantity")
    if isinstance(vq, Mapping) and isinstance(vq.get("value"), int | float) and not isinstance(vq.get("value"), bool):
        comparator = _COMPARATORS.get(vq.get("comparator") or "")
        code = vq.get("code") if vq.get("system") == UCUM else None
        return Result("quantity", float(vq["value"]), comparator, vq.get("unit"), code, None, interp)  # type: ignore[arg-type]
    for key in ("valueInteger", "valueDecimal"):
        v = observation.get(key)
        if isinstance(v, int | float) and not isinstance(v, bool):
            return Result("quantity", float(v), interpretation=interp)
    vcc = observation.get("valueCodeableConcept")
    if isinstance(vcc, Mapping):
        kind = _coding_result(vcc)
        grade = None
        text = vcc.get("text") or next((c.get("display") for c in vcc.get("coding") or () if isinstance(c, Mapping)
                                        and c.get("display")), None)
        if kind is None:
            kind, grade = read_text(text)
        elif text:
            _, grade = read_text(text)
        return Result(kind or "unmapped", text=text, interpretation=interp, grade=grade)  # type: ignore[arg-type]
    vs = observation.get("valueString")
    if isinstance(vs, str):
        kind, grade = read_text(vs)
        if kind:
            return Result(kind, text=vs, interpretation=interp, grade=grade)  # type: ignore[arg-type]
        number = parse_number(vs)
        if number:
            value, comparator, unit = number
            return Result("quantity", value, comparator, unit, None, vs, interp)
        return Result("unmapped", text=vs, interpretation=interp)
    vb = observation.get("valueBoolean")
    if isinstance(vb, bool):
        return Result("positive" if vb else "negative", interpretation=interp)
    if interp in _QUALITATIVE:
        return Result(interp, interpretation=interp)  # type: ignore[arg-type]
    return Result("absent", interpretation=interp)


def verdict(result: Result) -> str | None:
    """positive / negative / indeterminate from the value, else from a qualitative interpretation; else None."""
    if result.kind in _QUALITATIVE:
        return result.kind
    if result.interpretation in _QUALITATIVE:
        return result.interpretation
    return None


def decides(value: float, comparator: str | None, threshold_op: str, threshold: float) -> bool | None:
    """Whether a value known only as ``comparator value`` satisfies ``x threshold_op threshold``.

    True or False when every value the bound allows gives the same answer, None when it does not:
    "<0.5" decides "< 1.0" (True) and "> 1.0" (False); ">10" does not decide "> 100" (None).
    An exact value (comparator None or "=") always decides.
    """
    if comparator not in (None, "", "="):
        comparator = _COMPARATORS.get(comparator)  # type: ignore[arg-type]
        if comparator in (None, "ad"):  # an unknown bound decides nothing
            return None
    else:
        comparator = None
    op = _COMPARATORS.get(threshold_op, threshold_op)
    if comparator is None:
        return {"<": value < threshold, "<=": value <= threshold, ">": value > threshold,
                ">=": value >= threshold, "=": value == threshold, "==": value == threshold}.get(op)
    v, t = value, threshold
    if comparator in ("<", "<="):  # x below v (strictly for "<")
        strict = comparator == "<"
        if op == "<":
            return True if (v <= t if strict else v < t) else None
        if op == "<=":
            return True if v <= t else None
        if op == ">":
            return False if v <= t else None
        if op == ">=":
            return False if (v <= t if strict else v < t) else None
        return None
    strict = comparator == ">"  # x above v (strictly for ">")
    if op == ">":
        return True if (v >= t if strict else v > t) else None
    if op == ">=":
        return True if v >= t else None
    if op == "<":
        return False if v >= t else None
    if op == "<=":
        return False if (v >= t if strict else v > t) else None
    return None
