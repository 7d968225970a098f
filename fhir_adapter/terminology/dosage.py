"""Daily doses in mg from FHIR R4 ``Dosage`` (criteria-tables.md "Glucocorticoid dose"; clinical.md §4.7).

Daily dose = dose (``doseAndRate[].doseQuantity`` or ``doseRange``, in mg, or in tablets times the product
strength) x administrations per day (``timing.repeat`` frequency/period, else ``timing.code``, else
``timeOfDay``/``when``). A dose given less than daily is averaged over its cycle: methotrexate 15 mg once a
week is 15 / 7 = 2.14 mg/day, with ``interval_days`` 7 and ``mg_per_week`` 15 kept beside it; prednisone 20 mg
every other day is 10 mg/day. When nothing reliable can be derived the dose is None with a ``reason``; simple
free text ("5mg bid", "泼尼松 30mg qd") is read only as a fallback, flagged ``from_text``. Tables (timing codes,
text phrases, period units, routes, dose-form units) are data: ``mappings/dosage.json``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import cache
from typing import Any

from fhir_adapter.paths import data_dir
from fhir_adapter.terminology.units import UCUM, parse_unit, unit_factor

_MASS = "mg"


@dataclass(frozen=True, slots=True)
class Strength:
    """mg of one ingredient per ``per_value`` of ``per``: "form" (a tablet, capsule, vial) or a volume unit."""

    mg: float
    per: str = "form"
    per_value: float = 1.0


@dataclass(frozen=True, slots=True)
class DailyDose:
    """mg/day of one ingredient, or why it could not be derived (``mg_per_day`` None, ``reason`` set).

    ``mg_per_day_high`` is set for a ``doseRange`` or a ``frequencyMax``; ``dose_mg`` is one administration;
    ``per_day`` administrations a day averaged over the cycle (1/7 for weekly); ``interval_days`` the cycle.
    """

    mg_per_day: float | None
    reason: str | None = None
    mg_per_day_high: float | None = None
    dose_mg: float | None = None
    per_day: float | None = None
    interval_days: float | None = None
    from_text: bool = False
    as_needed: bool = False
    notes: tuple[str, ...] = ()

    @property
    def mg_per_week(self) -> float | None:
        if self.mg_per_day is None:
            return None
        if self.interval_days == 7 and self.dose_mg is not None:  # exact for weekly schedules
            return self.dose_mg
        return self.mg_per_day * 7


class _Tables:
    def __init__(self, data: Mapping[str, Any]) -> None:
        # (administrations, per days): QW = (1, 7), so 15 mg QW is exactly 15 / 7 mg/day
        self.timing_codes: dict[str, tuple[float, float]] = {
            k.upper(): (float(v[0]), float(v[1])) for k, v in data["timing_codes"].items()
        }
        self.text_frequencies: dict[str, tuple[float, float]] = {
            k.lower(): (float(v[0]), float(v[1])) for k, v in data["text_frequencies"].items()
        }
        self.period_days: dict[str, float] = {k: float(v) / 86400 for k, v in data["period_seconds"].items()}
        self.routes: dict[str, str] = {k if "|" in k else k.lower(): v for k, v in data["routes"].items()}
        self.systemic_routes: frozenset[str] = frozenset(data["systemic_routes"])
        self.form_units: frozenset[str] = frozenset(u.lower() for u in data["form_units"])
        self.text_dose_units: dict[str, str] = {k.lower(): v for k, v in data["text_dose_units"].items()}
        phrases = sorted(self.text_frequencies, key=len, reverse=True)
        self.frequency_pattern = re.compile(
            "|".join(_bounded(p) for p in phrases), re.IGNORECASE
        )
        units = sorted(self.text_dose_units, key=len, reverse=True)
        self.amount_pattern = re.compile(
            r"(\d+(?:\.\d+)?)\s*(" + "|".join(re.escape(u) for u in units) + r")(?![a-z])", re.IGNORECASE
        )


def _bounded(phrase: str) -> str:
    """An ASCII phrase must not sit inside a word ("qd" in "qod"); CJK phrases have no word boundaries."""
    escaped = re.escape(phrase)
    if phrase.isascii() and phrase[0].isalnum():
        return rf"(?<![a-z]){escaped}(?![a-z])"
    return escaped


@cache
def tables() -> _Tables:
    """The tables of ``mappings/dosage.json``, read once."""
    with (data_dir("mappings") / "dosage.json").open(encoding="utf-8") as f:
        return _Tables(json.load(f))


# --- small readers ---------------------------------------------------------------------------------------------


def route_of(route: Mapping[str, Any] | None) -> str | None:
    """"oral", "intravenous", ... from a ``dosage.route`` CodeableConcept (codes first, then text)."""
    if not isinstance(route, Mapping):
        return None
    routes = tables().routes
    for coding in route.get("coding") or ():
        if isinstance(coding, Mapping):
            hit = routes.get(f"{coding.get('system')}|{coding.get('code')}")
            if hit is None and coding.get("display"):
                hit = routes.get(str(coding["display"]).strip().lower())
            if hit is not None:
                return hit
    text = route.get("text")
    return routes.get(text.strip().lower()) if isinstance(text, str) else None


def mass_mg(quantity: Mapping[str, Any] | None) -> float | None:
    """A mass Quantity in mg (g x 1000, ug / 1000), None when it is not a mass."""
    if not isinstance(quantity, Mapping):
        return None
    value = quantity.get("value")
    if not isinstance(value, int | float) or isinstance(value, bool):
        return None
    unit = _unit_of(quantity)
    factor = unit_factor(unit, _MASS) if unit else None
    return None if factor is None else value * factor


def _unit_of(quantity: Mapping[str, Any]) -> str | None:
    code = quantity.get("code") if quantity.get("system") in (None, UCUM) else None
    return parse_unit(code, quantity.get("unit"))


def _is_form_unit(quantity: Mapping[str, Any]) -> bool:
    forms = tables().form_units
    return any(isinstance(u, str) and u.strip().lower() in forms for u in (quantity.get("code"), quantity.get("unit")))


def strength_from_ratio(ratio: Mapping[str, Any] | None) -> Strength | None:
    """``Medication.ingredient.strength`` (a Ratio): mg per tablet (form) or per volume."""
    if not isinstance(ratio, Mapping):
        return None
    mg = mass_mg(ratio.get("numerator"))
    if mg is None:
        return None
    den = ratio.get("denominator")
    if not isinstance(den, Mapping) or den.get("value") in (None, 0):
        return Strength(mg)
    value = den.get("value")
    if not isinstance(value, int | float) or value <= 0:
        return None
    if _is_form_unit(den):
        return Strength(mg / value)
    unit = _unit_of(den)
    if unit and unit_factor(unit, "mL") is not None:
        return Strength(mg, unit, float(value))
    return None


_TEXT_STRENGTH = re.compile(
    r"([^\d/;,]*?)\s*(\d+(?:\.\d+)?)\s*(mg|g|ug|mcg|µg|μg|毫克|克|微克)(?![a-z])"
    r"(?:\s*/\s*(\d+(?:\.\d+)?)?\s*(ml|毫升))?",
    re.IGNORECASE,
)


def strengths_from_text(text: str | None) -> list[tuple[str, Strength]]:
    """(name, strength) pairs in a product name: "sulfamethoxazole 400 MG / trimethoprim 80 MG Oral Tablet"."""
    if not text:
        return []
    out = []
    units = tables().text_dose_units
    for m in _TEXT_STRENGTH.finditer(text):
        name, amount, unit, vol, vol_unit = m.groups()
        factor = unit_factor(units[unit.lower()], _MASS)
        if factor is None:
            continue
        mg = float(amount) * factor
        strength = Strength(mg, "mL", float(vol or 1)) if vol_unit else Strength(mg)
        out.append((name.strip().strip("/").strip().lower(), strength))
    return out


# --- frequency ------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Frequency:
    per_day: float | None
    per_day_high: float | None = None
    reason: str | None = None
    notes: tuple[str, ...] = ()
    interval_days: float | None = None  # days between administrations (7 for weekly)


def frequency(timing: Mapping[str, Any] | None) -> _Frequency:
    """Administrations per day from a Timing: ``repeat`` first, then ``code`` (e.g. BID), then its text."""
    if not isinstance(timing, Mapping):
        return _Frequency(None, reason="no timing")
    t = tables()
    repeat = timing.get("repeat") if isinstance(timing.get("repeat"), Mapping) else {}
    freq, freq_max = repeat.get("frequency"), repeat.get("frequencyMax")
    period, period_max, unit = repeat.get("period"), repeat.get("periodMax"), repeat.get("periodUnit")
    if period and unit:
        days = t.period_days.get(unit)
        if days is None or period <= 0:
            return _Frequency(None, reason=f"unknown timing periodUnit {unit!r}")
        f = freq or 1
        per_day = f / (period * days)
        high = (freq_max or f) / (period * days)
        notes = ("frequencyMax",) if freq_max else ()
        if period_max:  # "every 4 to 6 hours": the longer period gives the lower frequency
            notes = (*notes, "periodMax")
            return _Frequency(f / (period_max * days), max(high, per_day), notes=notes,
                              interval_days=period_max * days / f)
        return _Frequency(per_day, high if high != per_day else None, notes=notes, interval_days=period * days / f)
    for key in ("timeOfDay", "when"):
        times = repeat.get(key)
        if times and not period:
            return _Frequency(float(len(times)), notes=(f"{len(times)} x {key}",), interval_days=1 / len(times))
    code = timing.get("code")
    if isinstance(code, Mapping):
        for coding in code.get("coding") or ():
            hit = t.timing_codes.get(str((coding or {}).get("code", "")).upper())
            if hit is not None:
                return _Frequency(hit[0] / hit[1], interval_days=hit[1] / hit[0])
        if isinstance(code.get("text"), str):
            hit = t.timing_codes.get(code["text"].strip().upper()) or text_frequency(code["text"])
            if hit is not None:
                return _Frequency(hit[0] / hit[1], interval_days=hit[1] / hit[0])
    if freq and not period:
        return _Frequency(None, reason="timing has a frequency but no period")
    return _Frequency(None, reason="no timing")


_N_TIMES = re.compile(
    r"(\d+)\s*(?:times|x)\s*(?:daily|a day|per day|/\s*d(?:ay)?)|(\d+)\s*次\s*/\s*[日天]|每[日天]\s*(\d+)\s*次"
    r"|(?<![a-z])q\s*(\d+)\s*h(?![a-z])",
    re.IGNORECASE,
)


def text_frequency(text: str) -> tuple[float, float] | None:
    """(administrations, per days) named in free text ("bid", "每日两次", "3 times daily", "q8h"), or None."""
    m = _N_TIMES.search(text)
    if m:
        n_times = m.group(1) or m.group(2) or m.group(3)
        if n_times:
            return (float(n_times), 1.0) if float(n_times) > 0 else None
        hours = float(m.group(4))
        return (24 / hours, 1.0) if hours > 0 else None
    m = tables().frequency_pattern.search(text)
    return tables().text_frequencies[m.group(0).lower()] if m else None


# --- dose -----------------------------------------------------------------------------------------------------


def dose_mg(quantity: Mapping[str, Any] | None, strength: Strength | None) -> tuple[float | None, str | None]:
    """One dose in mg: a mass, or tablets/vials x strength, or mL x mg/mL; else (None, reason)."""
    if not isinstance(quantity, Mapping):
        return None, "no dose"
    value = quantity.get("value")
    if not isinstance(value, int | float) or isinstance(value, bool):
        return None, "dose has no numeric value"
    raw = quantity.get("unit") or quantity.get("code")
    if _is_form_unit(quantity):  # checked first: "tablet" is no UCUM unit
        if strength is None:
            return None, f"dose in {raw!r} but no strength for the product"
        if strength.per != "form":
            return None, f"dose in {raw!r} but the strength is per {strength.per_value:g} {strength.per}"
        return value * strength.mg, None
    mg = mass_mg(quantity)
    if mg is not None:
        return mg, None
    unit = _unit_of(quantity)
    if unit and strength is not None and strength.per != "form":
        factor = unit_factor(unit, strength.per)
        if factor is not None:
            return value * factor / strength.per_value * strength.mg, None
    if unit and "/kg" in unit:
        return None, f"weight-based dose {value:g} {raw} needs the dosing weight"
    if not raw:
        return None, "dose without a unit"
    return None, f"dose unit {raw!r} cannot be converted to mg"


def _dose_of(dosage: Mapping[str, Any]) -> tuple[Mapping[str, Any] | None, Mapping[str, Any] | None, bool]:
    """(doseQuantity, doseRange, has_rate) of a Dosage, preferring the doseAndRate entry typed "ordered"."""
    entries = [e for e in dosage.get("doseAndRate") or () if isinstance(e, Mapping)]
    ordered = [e for e in entries if any(c.get("code") == "ordered" for c in (e.get("type") or {}).get("coding") or ())]
    has_rate = any("rateQuantity" in e or "rateRatio" in e or "rateRange" in e for e in entries)
    for e in ordered + entries:
        if "doseQuantity" in e or "doseRange" in e:
            return e.get("doseQuantity"), e.get("doseRange"), has_rate
    if isinstance(dosage.get("dose"), Mapping):  # MedicationAdministration.dosage.dose
        return dosage["dose"], None, has_rate or "rateQuantity" in dosage or "rateRatio" in dosage
    return None, None, has_rate


def _as_needed(dosage: Mapping[str, Any]) -> bool:
    return bool(dosage.get("asNeededBoolean")) or isinstance(dosage.get("asNeededCodeableConcept"), Mapping)


def daily_dose(
    dosages: Iterable[Mapping[str, Any]], strength: Strength | None = None, *, single: bool = False,
    mass_dose_ok: bool = True,
) -> DailyDose:
    """The mg/day of concurrent Dosage entries (summed), for one ingredient of ``strength``.

    ``single``: a MedicationAdministration's dosage, one administration (the dose on that date, no timing).
    ``mass_dose_ok`` False: a mg dose of a combination product cannot be given to one ingredient.
    """
    parts = [_one_daily_dose(d, strength, single, mass_dose_ok) for d in dosages if isinstance(d, Mapping)]
    if not parts:
        return DailyDose(None, "no dosage")
    if len(parts) == 1:
        return parts[0]
    missing = [p for p in parts if p.mg_per_day is None]
    if missing:
        return DailyDose(None, "; ".join(p.reason or "" for p in missing), as_needed=any(p.as_needed for p in parts))
    total = sum(p.mg_per_day or 0.0 for p in parts)
    high = sum((p.mg_per_day_high or p.mg_per_day or 0.0) for p in parts)
    notes = (*(n for p in parts for n in p.notes), f"{len(parts)} concurrent dosages summed")
    return DailyDose(total, None, high if high != total else None, None, None, None,
                     any(p.from_text for p in parts), any(p.as_needed for p in parts), notes)


def _one_daily_dose(dosage: Mapping[str, Any], strength: Strength | None, single: bool, mass_ok: bool) -> DailyDose:
    as_needed = _as_needed(dosage)
    quantity, dose_range, has_rate = _dose_of(dosage)
    notes: list[str] = ["as needed"] if as_needed else []
    low = high = None
    reason = None
    if quantity is not None:
        if not mass_ok and mass_mg(quantity) is not None:
            return DailyDose(None, "mg dose of a combination product cannot be split per ingredient",
                             as_needed=as_needed)
        low, reason = dose_mg(quantity, strength)
        high = low
    elif isinstance(dose_range, Mapping):
        low, reason = dose_mg(dose_range.get("low"), strength)
        high, reason_high = dose_mg(dose_range.get("high"), strength)
        reason = reason or reason_high
        notes.append("dose range")
    elif has_rate:
        reason = "rate-based dosing (infusion rate) without a dose"
    if low is None and reason is None:
        reason = "no dose"
    if low is None or high is None:
        text = dosage.get("text")
        if isinstance(text, str) and text.strip():
            fallback = text_daily_dose(text, strength, single=single)
            if fallback.mg_per_day is not None:
                return fallback if not as_needed else _with(fallback, as_needed=True)
            reason = f"{reason}; {fallback.reason}"
        return DailyDose(None, reason, as_needed=as_needed)
    if single:
        return DailyDose(low, None, high if high != low else None, low, 1.0, None, False, as_needed, tuple(notes))
    freq = frequency(dosage.get("timing"))
    if freq.per_day is None:
        text = dosage.get("text")
        found = text_frequency(text) if isinstance(text, str) else None
        if found is None:
            return DailyDose(None, f"{freq.reason}: cannot derive a daily dose", dose_mg=low, as_needed=as_needed)
        freq = _Frequency(found[0] / found[1], notes=("frequency from dosage text",), interval_days=found[1] / found[0])
    notes.extend(freq.notes)
    per_day_high = freq.per_day_high or freq.per_day
    mg = low * freq.per_day
    mg_high = high * per_day_high
    return DailyDose(mg, None, mg_high if mg_high != mg else None, low, freq.per_day,
                     freq.interval_days, False, as_needed, tuple(notes))


def _with(d: DailyDose, *, as_needed: bool) -> DailyDose:
    return DailyDose(d.mg_per_day, d.reason, d.mg_per_day_high, d.dose_mg, d.per_day, d.interval_days,
                     d.from_text, as_needed, (*d.notes, "as needed"))


def text_daily_dose(text: str, strength: Strength | None = None, *, single: bool = False) -> DailyDose:
    """Fallback for a dosage given only as text: "5mg bid", "泼尼松 30mg qd", "1 tablet daily"."""
    t = tables()
    amounts = [(float(v), t.text_dose_units[u.lower()]) for v, u in t.amount_pattern.findall(text)]
    forms = [v for v, u in amounts if u == "{form}"]
    dose = None
    if forms and strength is not None and strength.per == "form":
        dose = forms[0] * strength.mg
    else:
        for value, unit in amounts:
            factor = unit_factor(unit, _MASS) if unit != "{form}" else None
            if factor is not None:
                dose = value * factor
                break
    if dose is None:
        why = "no strength for the tablets" if forms else "no dose"
        return DailyDose(None, f"dosage text {text!r}: {why}", from_text=True)
    if single:
        return DailyDose(dose, None, None, dose, 1.0, None, True, False, ("from dosage text",))
    found = text_frequency(text)
    if found is None:
        return DailyDose(None, f"dosage text {text!r}: no frequency", dose_mg=dose, from_text=True)
    n, days = found
    return DailyDose(dose * n / days, None, None, dose, n / days, days / n, True, False, ("from dosage text",))
