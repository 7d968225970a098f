"""Read an Observation's result into a small typed value, and tell whether a bounded value decides a threshold.

Qualitative results arrive as value codes (SNOMED 10828004 positive), interpretation codes (v3 POS/NEG/IND),
or text ("阳性", "+++", "弱阳性"); quantities may carry a comparator ("<0.5" as valueString, or
``valueQuantity.comparator``). The tables are data: ``mappings/qualitative.json``.

A quantity of a qualitative concept (an anti-MDA5 level, an HBsAg index, an anti-HCV S/CO) is read against the
result's own cut-off (``referenceRange``) or the lab's interpretation, comparators included; without either it is
not read (``read_verdict``: the lab's cut-off is needed, never a guess). A test read from several numbers (an
IGRA: Nil, TB antigen minus Nil, Mitogen minus Nil) is read only from all of them by the manufacturer's rule
(``read_components``, rules in the same file).
"""

from __future__ import annotations

import math
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
class Verdict:
    """positive / negative / indeterminate, or None when the result cannot say; ``how`` tells how it was read
    ("85 U/mL above the lab's cut-off 32 (referenceRange.high)"; empty for a plain coded result) and ``needs``
    what would let it be read (None when nothing would)."""

    verdict: str | None
    how: str = ""
    needs: str | None = None


@dataclass(frozen=True, slots=True)
class ComponentRule:
    """A test read from several numbers by its manufacturer's rule (``mappings/qualitative.json``
    ``component_rules``): roles (nil, tb1, tb2, mitogen) to catalog concept ids, raw tube concepts (read minus
    Nil), the thresholds and where they come from."""

    id: str
    display: str
    unit: str
    roles: Mapping[str, tuple[str, ...]]
    raw_roles: Mapping[str, tuple[str, ...]]
    tubes: tuple[str, ...]
    nil_max: float
    tb_min: float
    tb_min_fraction_of_nil: float
    mitogen_min: float
    source: str

    def concept_ids(self) -> tuple[str, ...]:
        return tuple(c for ids in (*self.roles.values(), *self.raw_roles.values()) for c in ids)


@dataclass(frozen=True, slots=True)
class _Tables:
    codes: Mapping[tuple[str, str], str]
    flags: Mapping[tuple[str, str], str]
    texts: Mapping[str, str]
    graded: Mapping[str, int]
    flag_verdicts: Mapping[str, str]
    rules: Mapping[str, ComponentRule]


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
    flag_verdicts = {k: v for k, v in doc["flag_verdicts"].items() if not k.startswith("$")}
    rules = {r["id"]: ComponentRule(
        r["id"], r["display"], r["unit"], {k: tuple(v) for k, v in r["roles"].items()},
        {k: tuple(v) for k, v in r.get("raw_roles", {}).items()}, tuple(r["tubes"]), float(r["nil_max"]),
        float(r["tb_min"]), float(r["tb_min_fraction_of_nil"]), float(r["mitogen_min"]), r["source"])
        for r in doc.get("component_rules", ())}
    return _Tables(codes, flags, texts, graded, flag_verdicts, rules)


def component_rule(rule_id: str) -> ComponentRule:
    """A manufacturer's rule of ``mappings/qualitative.json`` by id (KeyError names it)."""
    return tables().rules[rule_id]


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
    return _interpretation(observation)[0]


def _interpretation(observation: Mapping[str, Any]) -> tuple[str | None, str]:
    """(normalized meaning, the code or text as sent) of the first ``interpretation`` that maps."""
    t = tables()
    interpretations = observation.get("interpretation")
    for cc in interpretations if isinstance(interpretations, list) else ():
        if not isinstance(cc, Mapping):
            continue
        for c in cc.get("coding") or ():
            if not isinstance(c, Mapping):
                continue
            key = (c.get("system"), c.get("code"))
            if key in t.codes:
                return t.codes[key], str(c.get("code"))
            if key in t.flags:
                return t.flags[key], str(c.get("code"))
        text = cc.get("text")
        kind, _ = read_text(text if isinstance(text, str) else None)
        if kind:
            return kind, str(text)
    return None, ""


def parse_number(text: str) -> tuple[float, Comparator | None, str | None] | None:
    """(0.5, "<", "U/mL") for "<0.5 U/mL"; None when the text is not a (bounded) number."""
    m = _NUMBER.match(unicodedata.normalize("NFKC", text))
    if not m:
        return None
    comparator = _COMPARATORS[m.group(1)] if m.group(1) else None
    return float(m.group(2)), comparator, (m.group(3) or None)  # type: ignore[return-value]


def _number(v: Any) -> bool:
    """A finite JSON number (NaN and infinity are not results)."""
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


def read_result(observation: Mapping[str, Any]) -> Result:
    """Read ``Observation.value[x]`` (and ``interpretation``) into a ``Result``. Pure; never raises on bad data."""
    interp = read_interpretation(observation)
    vq = observation.get("valueQuantity")
    if isinstance(vq, Mapping) and _number(vq.get("value")):
        comparator = _COMPARATORS.get(vq.get("comparator") or "")
        code = vq.get("code") if vq.get("system") == UCUM else None
        return Result("quantity", float(vq["value"]), comparator, vq.get("unit"), code, None, interp)  # type: ignore[arg-type]
    for key in ("valueInteger", "valueDecimal"):
        v = observation.get(key)
        if _number(v):
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


# --- quantities of qualitative concepts ----------------------------------------------------------------------


def _shown(value: float, comparator: str | None, unit: str | None) -> str:
    return f"{comparator or ''}{value:g} {unit or ''}".strip()


def read_verdict(observation: Mapping[str, Any]) -> Verdict:
    """positive / negative / indeterminate of one Observation, and how it was read.

    A coded or textual value says it; a quantity is read against the result's own cut-off (``referenceRange``)
    and the lab's interpretation: when both speak and disagree, neither is taken; when neither speaks the
    quantity is not read ("the lab's cut-off is needed"). Pure; never raises on bad data.
    """
    result = read_result(observation)
    if result.kind in _QUALITATIVE:
        return Verdict(result.kind)
    interp, code = _interpretation(observation)
    if result.kind != "quantity" or result.value is None:
        if interp in _QUALITATIVE:
            return Verdict(interp, f"read from the lab's interpretation {code}")
        if result.kind == "unmapped":
            return Verdict(None, f"result {result.text!r} is not a known result", "a readable result")
        return Verdict(None, "no result value", "a result value or the lab's interpretation")
    shown = _shown(result.value, result.comparator, result.unit or result.unit_code)
    lab = interp if interp in _QUALITATIVE else tables().flag_verdicts.get(interp or "")
    lab_read = Verdict(lab, f"{shown} read from the lab's interpretation {code}") if lab else None
    cut = _against_cutoff(observation, result, shown)
    if cut is None:
        return lab_read or Verdict(
            None, f"{shown}: a quantity with no reference range or interpretation: the lab's cut-off is needed",
            "the lab's cut-off (referenceRange) or interpretation of the result")
    if lab_read is None:
        return cut
    if cut.verdict is not None and cut.verdict != lab_read.verdict:
        return Verdict(None, f"{shown}: the lab's interpretation {code} ({lab}) and its reference range disagree "
                             f"({cut.how})", "a person reads the result")
    return cut if cut.verdict is not None else lab_read


def _range_label(rr: Mapping[str, Any]) -> str | None:
    """positive / negative / indeterminate when a reference range says what it is ("grey zone", "阴性")."""
    texts = [rr.get("text")]
    typ = rr.get("type")
    if isinstance(typ, Mapping):
        texts.append(typ.get("text"))
        texts += [c.get("display") or c.get("code") for c in typ.get("coding") or () if isinstance(c, Mapping)]
    for t in texts:
        if isinstance(t, str) and t:
            kind, _ = read_text(t)
            if kind:
                return kind
            if normalize_text(t) == "normal":
                return "negative"
    return None


def _bound(q: Any, result: Result) -> tuple[float | None, bool]:
    """A range bound in the result's unit: (value, True); (None, True) when absent; (None, False) when its
    unit differs and does not convert."""
    if not isinstance(q, Mapping):
        return None, True
    value = q.get("value")
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None, True
    raw = q.get("code") if q.get("system") in (None, UCUM) and q.get("code") else q.get("unit")
    if not raw:
        return float(value), True
    mine = result.unit_code or result.unit
    if not mine:
        return None, False
    from fhir_adapter.terminology.units import parse_unit, unit_factor

    a, b = parse_unit(raw, raw), parse_unit(mine, mine)
    if a is None or b is None:
        return (float(value), True) if normalize_text(str(raw)) == normalize_text(str(mine)) else (None, False)
    factor = unit_factor(a, b)
    return (float(value) * factor, True) if factor is not None else (None, False)


def _against_cutoff(observation: Mapping[str, Any], result: Result, shown: str) -> Verdict | None:
    """The quantity read against the result's reference ranges; None when they give no cut-off.

    A plain range's ``high`` is the cut-off (above: positive; below: negative; at it: neither). A range with a
    ``low`` above zero and a ``high``, or a range the lab labels a grey zone ("equivocal", "灰区"), is the grey
    zone: inside it indeterminate. A range labelled positive starts at its ``low``. A bound the value's
    comparator does not place on one side decides nothing ("<40" with cut-off 32).
    """
    ranges = observation.get("referenceRange")
    if not isinstance(ranges, list):
        return None
    plain: tuple[float | None, float] | None = None
    grey: tuple[float, float] | None = None
    positive_from: float | None = None
    other_unit = False
    for rr in ranges:
        if not isinstance(rr, Mapping):
            continue
        (low, ok_low), (high, ok_high) = _bound(rr.get("low"), result), _bound(rr.get("high"), result)
        other_unit |= not (ok_low and ok_high)
        label = _range_label(rr)
        if label == "indeterminate":
            if low is not None and high is not None and low <= high:
                grey = (low, high)
        elif label == "positive":
            if low is not None:
                positive_from = low
        elif high is not None and plain is None:
            plain = (low, high)
    where_high = "referenceRange.high"
    if grey is not None:
        neg_below, pos_above, pos_op, zone = grey[0], grey[1], ">", f"the lab's grey zone {grey[0]:g}-{grey[1]:g}"
        where_low = where_high = "the lab's grey zone"
    elif positive_from is not None:
        neg_below = plain[1] if plain is not None else positive_from
        pos_above, pos_op, where_high = positive_from, ">=", "the lab's positive range"
        where_low = "referenceRange.high" if plain is not None else where_high
        zone = f"the lab's grey zone {neg_below:g}-{pos_above:g}"
    elif plain is not None:
        low, high = plain
        pos_above, pos_op = high, ">"
        if low is not None and 0 < low < high:
            neg_below, where_low, zone = low, "referenceRange.low", f"the lab's grey zone {low:g}-{high:g}"
        else:
            neg_below, where_low, zone = high, where_high, ""
    else:
        if other_unit:
            return Verdict(None, f"{shown}: the reference range is in another unit", "the lab's cut-off in the "
                           "result's unit, or its interpretation")
        return None
    v, comparator = result.value, result.comparator
    assert v is not None
    if decides(v, comparator, pos_op, pos_above) is True:
        return Verdict("positive", f"{shown} above the lab's cut-off {pos_above:g} ({where_high})")
    if decides(v, comparator, "<", neg_below) is True:
        return Verdict("negative", f"{shown} below the lab's cut-off {neg_below:g} ({where_low})")
    if comparator in (None, "="):
        if zone:
            return Verdict("indeterminate", f"{shown} in {zone}", "a repeat test")
        return Verdict("indeterminate", f"{shown} at the lab's cut-off {pos_above:g} ({where_high}): neither "
                                        "above nor below it", "a person reads the result, or a repeat test")
    return Verdict(None, f"{shown} could be either side of the lab's cut-off {pos_above:g} ({where_high})",
                   "an exact value or the lab's interpretation")


# --- tests read from several numbers (IGRA) ------------------------------------------------------------------


def _and3(*xs: bool | None) -> bool | None:
    return False if any(x is False for x in xs) else (None if any(x is None for x in xs) else True)


def _or3(*xs: bool | None) -> bool | None:
    return True if any(x is True for x in xs) else (None if any(x is None for x in xs) else False)


def read_components(rule: ComponentRule, values: Mapping[str, tuple[float, str | None]]) -> Verdict:
    """An IGRA read from all its components by the manufacturer's rule (QuantiFERON-TB Gold Plus: positive
    when TB1 or TB2 minus Nil >= 0.35 and >= 25% of Nil, Nil <= 8.0; negative when every TB tube is below that
    and Mitogen minus Nil >= 0.5; indeterminate when Nil > 8.0, or TB negative with Mitogen minus Nil < 0.5).

    ``values``: role -> (value, comparator) in ``rule.unit``, tubes and mitogen already minus Nil. A bounded
    value ("> 10") decides only what every value it allows decides; a missing component decides nothing."""
    unit = rule.unit.replace("[", "").replace("]", "")

    def show(role: str) -> str:
        v, c = values[role]
        name = "Nil" if role == "nil" else f"{role.upper() if role != 'mitogen' else 'Mitogen'} minus Nil"
        return f"{name} {_shown(v, c, unit)}"

    if "nil" not in values:
        return Verdict(None, f"{rule.display}: no Nil value", f"the Nil value of the {rule.display}")
    nil, nil_cmp = values["nil"]
    nil_high = decides(nil, nil_cmp, ">", rule.nil_max)
    if nil_high is True:
        return Verdict("indeterminate", f"{rule.display} indeterminate: {show('nil')} > {rule.nil_max:g} "
                                        "(package insert)", "a repeat IGRA")
    pos: dict[str, bool | None] = {}
    for tube in rule.tubes:
        if tube not in values:
            continue
        v, c = values[tube]
        enough = decides(v, c, ">=", rule.tb_min)
        if nil_cmp in (None, "="):
            share = decides(v, c, ">=", rule.tb_min_fraction_of_nil * nil)
        elif nil_cmp in ("<", "<="):  # Nil below a bound: the share is below that bound's share
            share = True if decides(v, c, ">=", rule.tb_min_fraction_of_nil * nil) else None
        else:
            share = None
        pos[tube] = _and3(enough, share)
    rule_text = f">= {rule.tb_min:g} and >= {rule.tb_min_fraction_of_nil:.0%} of Nil"
    if nil_high is None:
        return Verdict(None, f"{rule.display}: {show('nil')} does not say whether Nil is <= {rule.nil_max:g}",
                       "an exact Nil value")
    hit = [t for t, p in pos.items() if p is True]
    if hit:
        return Verdict("positive", f"{rule.display} positive (package insert): {show(hit[0])} {rule_text} "
                                   f"({show('nil')})")
    missing = [t.upper() for t in rule.tubes if t not in values]
    if missing or any(p is None for p in pos.values()):
        why = f"no {' or '.join(missing)} minus Nil" if missing else "a TB value whose bound does not decide"
        return Verdict(None, f"{rule.display}: TB antigens not positive but {why}", "every TB antigen tube value")
    tubes = ", ".join(show(t) for t in rule.tubes)
    if "mitogen" not in values:
        return Verdict(None, f"{rule.display}: TB antigens below {rule_text} ({tubes}) but no Mitogen value: "
                             "negative cannot be told from indeterminate", "the Mitogen minus Nil value")
    mit_ok = decides(*values["mitogen"], ">=", rule.mitogen_min)
    if mit_ok is True:
        return Verdict("negative", f"{rule.display} negative (package insert): {tubes} below {rule_text}, "
                                   f"{show('mitogen')} >= {rule.mitogen_min:g} ({show('nil')})")
    if mit_ok is False:
        return Verdict("indeterminate", f"{rule.display} indeterminate: {show('mitogen')} < "
                                        f"{rule.mitogen_min:g} with TB antigens negative", "a repeat IGRA")
    return Verdict(None, f"{rule.display}: {show('mitogen')} does not say whether it is >= {rule.mitogen_min:g}",
                   "an exact Mitogen value")
