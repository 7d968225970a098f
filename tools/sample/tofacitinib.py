"""NCT04966884 (tofacitinib) patients followed 12 months, and their expected TIS (clinical.md 1.2 / 1.4)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from typing import Any

from sample.codes import DUR, ICD10, LOINC, TMPSMX_MED_ID, coding, convert, quantity
from sample.record import Rec

VISIT_MONTHS = [0, 1, 3, 6, 9, 12]
VISIT_DAYS = [0, 30, 91, 182, 273, 365]
ENZ_ULN = {"ck": 174.0, "aldolase": 7.6, "ldh": 250.0, "alt": 50.0, "ast": 40.0}
BINS = {  # measure -> (edges, points): x <= e0 -> p0, e0 < x <= e1 -> p1, ... > last -> last point
    "phga": ((5, 15, 25, 40), (0, 7.5, 15, 17.5, 20)),
    "ptga": ((5, 15, 25, 40), (0, 2.5, 5, 7.5, 10)),
    "extra": ((5, 15, 25, 40), (0, 7.5, 12.5, 15, 20)),
    "haq": ((5, 15, 25, 40), (0, 5, 7.5, 7.5, 10)),
    "enzyme": ((5, 15, 25, 40), (0, 2.5, 5, 7.5, 7.5)),
    "mmt8": ((2, 10, 20, 30), (0, 10, 20, 27.5, 32.5)),
}


@dataclass
class Tofa:
    """A patient on tofacitinib 5 mg bid + prednisone from baseline B, core set measures at 0..12 months.

    Values are (baseline, month 12) in cm for VAS (written in mm when ``vas_mm``), HAQ 0-3, MMT-8 on
    ``mmt_max``, enzymes in U/L (CK written in ukat/L when ``ck_ukat``). ``missing`` names a measure absent
    at month 12. ``points`` and ``cls`` are the hand-computed expectations the generator double-checks.
    """

    pid: str
    story: str
    phga: tuple[float, float]
    ptga: tuple[float, float]
    mmt8: tuple[int, int]
    haq: tuple[float, float]
    enzymes: dict[str, tuple[float, float]]
    extra: tuple[float, float]
    myoact: tuple[float, float]
    points: dict[str, float | None]
    cls: str
    mmt_max: int = 80
    weight: float = 60.0
    age: int = 40
    gender: str = "female"
    missing: str | None = None
    vas_mm: bool = False
    ck_ukat: bool = False
    local: bool = False
    drug: str = "tofacitinib"
    as_request: bool = False
    pred_mg: float = 50.0
    inactive12: str = "no"
    events: list[str] = field(default_factory=list)
    notes: str = ""


TOFA: list[Tofa] = [
    Tofa("tofa-responder-major", "Anti-MDA5+ ADM-ILD, major improvement; AST (not CK) is the most abnormal "
         "enzyme at baseline.", (7.0, 1.0), (8.0, 2.0), (62, 77), (1.5, 0.25),
         {"ck": (120, 80), "aldolase": (9.0, 6.0), "ldh": (450, 220), "alt": (80, 30), "ast": (95, 30)},
         (6.0, 1.0), (18.0, 1.5),
         {"phga": 20, "ptga": 10, "mmt8": 20, "haq": 10, "enzyme": 7.5, "extra": 20}, "major"),
    Tofa("tofa-responder-moderate", "Anti-MDA5+ DM-ILD, moderate improvement (MMT-8 on the 0-150 scale, LDH "
         "the enzyme); herpes zoster at month 4.", (6.0, 3.4), (6.0, 4.0), (120, 132), (1.25, 0.875),
         {"ck": (160, 120), "aldolase": (8.0, 7.0), "ldh": (420, 300), "alt": (60, 45), "ast": (55, 40)},
         (5.0, 3.4), (14.0, 6.0),
         {"phga": 17.5, "ptga": 5, "mmt8": 10, "haq": 5, "enzyme": 7.5, "extra": 12.5}, "moderate", mmt_max=150,
         events=["zoster"], age=46, weight=62.0, drug="tofacitinib_atc_old",
         notes="Tofacitinib coded with the old ATC L04AA29 only."),
    Tofa("tofa-responder-minimal", "Anti-MDA5+ DM, minimal improvement; CK the enzyme; ALT rise to 3.2 x ULN at "
         "month 1 that resolved.", (5.0, 4.0), (5.0, 4.5), (70, 72), (1.0, 0.75),
         {"ck": (600, 420), "aldolase": (9.5, 8.0), "ldh": (300, 260), "alt": (70, 55), "ast": (65, 50)},
         (4.0, 3.6), (10.0, 8.0),
         {"phga": 7.5, "ptga": 0, "mmt8": 10, "haq": 5, "enzyme": 7.5, "extra": 0}, "minimal",
         events=["alt_rise"], age=38, weight=55.0, as_request=True,
         notes="PtGA change is exactly 5.0% (bin edge: <= 5 scores 0). If it scored 2.5 the TIS would be 32.5, "
               "still minimal. Tofacitinib recorded as MedicationRequest."),
    Tofa("tofa-nonresponder", "Anti-MDA5+ DM-ILD, TIS below 20 (ALT the enzyme).", (6.0, 5.6), (7.0, 6.0),
         (110, 112), (1.375, 1.25),
         {"ck": (150, 140), "aldolase": (7.0, 7.0), "ldh": (380, 350), "alt": (120, 100), "ast": (70, 60)},
         (5.0, 4.2), (16.0, 13.0),
         {"phga": 0, "ptga": 2.5, "mmt8": 0, "haq": 0, "enzyme": 5, "extra": 7.5}, "none", mmt_max=150,
         age=52, weight=60.0, drug="tofacitinib_local", notes="Tofacitinib coded with a local formulary code only."),
    Tofa("tofa-worsening", "Anti-MDA5+ DM-ILD worsening on treatment (every measure worse, FVC falling); "
         "cytopenia (WBC 2.1, lymphocytes 0.3) at month 3.", (4.0, 7.0), (4.0, 8.0), (70, 60), (0.75, 1.625),
         {"ck": (300, 900), "aldolase": (8.0, 12.0), "ldh": (320, 500), "alt": (60, 90), "ast": (55, 95)},
         (3.0, 7.0), (9.0, 25.0),
         {"phga": 0, "ptga": 0, "mmt8": 0, "haq": 0, "enzyme": 0, "extra": 0}, "none",
         events=["cytopenia"], age=58, weight=58.0, gender="male"),
    Tofa("tofa-missing-haq-decidable", "HAQ-DI not collected at month 12; the other five measures give 67.5, so "
         "the class is major whatever the HAQ.", (7.0, 2.0), (7.0, 4.0), (60, 70), (1.625, 1.0),
         {"ck": (200, 150), "aldolase": (8.0, 7.0), "ldh": (500, 350), "alt": (70, 50), "ast": (60, 45)},
         (6.0, 4.0), (15.0, 7.0),
         {"phga": 20, "ptga": 7.5, "mmt8": 20, "haq": None, "enzyme": 7.5, "extra": 12.5}, "major",
         missing="haq", age=44, notes="TIS total unknown (range 67.5-77.5); class major; responder yes."),
    Tofa("tofa-missing-phga-undecidable", "Physician global VAS missing at month 12; the other five give 12.5, so "
         "TIS is 12.5-32.5: neither class nor responder status can be decided.", (6.0, 3.0), (6.0, 5.0),
         (100, 104), (1.5, 1.5),
         {"ck": (400, 390), "aldolase": (8.0, 8.0), "ldh": (260, 255), "alt": (50, 48), "ast": (45, 44)},
         (5.0, 4.6), (12.0, 10.0),
         {"phga": None, "ptga": 2.5, "mmt8": 10, "haq": 0, "enzyme": 0, "extra": 0}, "unknown", mmt_max=150,
         missing="phga", age=36,
         notes="Inactive disease at 12 months is no although the physician VAS is missing: CK 390 U/L > 200 and "
               "MYOACT 10 fail, and one failing condition decides (unknown only when none fails and one is "
               "missing)."),
    Tofa("tofa-inactive-12m", "Anti-MDA5+ DM reaching inactive disease at 12 months: CK 200 U/L (= limit), "
         "physician VAS 0, MYOACT 0.", (6.0, 0.0), (6.0, 1.0), (66, 80), (1.0, 0.0),
         {"ck": (900, 200), "aldolase": (10.0, 6.0), "ldh": (350, 180), "alt": (60, 30), "ast": (70, 30)},
         (5.0, 0.0), (14.0, 0.0),
         {"phga": 20, "ptga": 10, "mmt8": 20, "haq": 7.5, "enzyme": 7.5, "extra": 20}, "major", inactive12="yes",
         age=33, weight=54.0),
    Tofa("tofa-near-inactive", "Physician VAS 0 and MYOACT 0 at 12 months but CK 215 U/L: misses inactive "
         "disease on the CK condition only.", (6.0, 0.0), (5.0, 1.5), (118, 146), (1.125, 0.125),
         {"ck": (1200, 215), "aldolase": (14.0, 7.0), "ldh": (400, 200), "alt": (90, 35), "ast": (110, 35)},
         (4.5, 0.0), (12.0, 0.0),
         {"phga": 20, "ptga": 7.5, "mmt8": 20, "haq": 7.5, "enzyme": 7.5, "extra": 20}, "major", mmt_max=150,
         age=41, weight=58.0, gender="male"),
    Tofa("tofa-ukat-mm", "CK reported in ukat/L (15.0 -> 8.4 ukat/L = 900 -> 504 U/L) and every VAS in mm; "
         "moderate with the conversions (an mm value read as cm would give major).", (6.0, 4.4), (7.0, 6.0),
         (64, 70), (1.25, 1.0),
         {"ck": (900, 504), "aldolase": (8.0, 7.5), "ldh": (400, 330), "alt": (55, 50), "ast": (60, 50)},
         (5.0, 4.4), (13.0, 9.0),
         {"phga": 15, "ptga": 2.5, "mmt8": 10, "haq": 5, "enzyme": 7.5, "extra": 7.5}, "moderate",
         vas_mm=True, ck_ukat=True, age=49, weight=63.0, pred_mg=60.0,
         notes="VAS values in mm: PhGA 60 -> 44, PtGA 70 -> 60, extramuscular 50 -> 44."),
    Tofa("tofa-local-codes", "Core set measures and labs coded with the hospital's local codes only (aldolase "
         "the enzyme); minimal improvement.", (5.0, 3.0), (6.0, 5.0), (130, 134), (0.875, 0.75),
         {"ck": (150, 120), "aldolase": (12.0, 8.5), "ldh": (300, 260), "alt": (50, 45), "ast": (45, 40)},
         (3.0, 2.8), (8.0, 5.0),
         {"phga": 15, "ptga": 2.5, "mmt8": 10, "haq": 0, "enzyme": 7.5, "extra": 0}, "minimal", mmt_max=150,
         local=True, age=55, weight=59.0, gender="male",
         notes="Expected values assume the site mapping in local_codes."),
]


def pct_change(measure: str, base: float, follow: float, mmt_max: int) -> Decimal:
    """Absolute percent change, improvement positive (clinical.md 1.4)."""
    b, f = Decimal(str(base)), Decimal(str(follow))
    if measure in ("phga", "ptga", "extra"):
        return (b - f) / 10 * 100
    if measure == "haq":
        return (b - f) / 3 * 100
    if measure == "mmt8":
        return (f - b) / mmt_max * 100
    return (b - f) / b * 100


def points_for(measure: str, change: Decimal) -> float:
    edges, pts = BINS[measure]
    for edge, p in zip(edges, pts, strict=False):
        if change <= edge:
            return p
    return pts[-1]


def tis_expectation(t: Tofa) -> dict[str, Any]:
    """Per-measure change and points, the total and the class; asserts the hand-entered ``points``."""
    enzyme = max(t.enzymes, key=lambda k: t.enzymes[k][0] / ENZ_ULN[k])
    rows: dict[str, Any] = {}
    total = Decimal(0)
    unknown_max = Decimal(0)
    for m in ("phga", "ptga", "mmt8", "haq", "enzyme", "extra"):
        base, follow = t.enzymes[enzyme] if m == "enzyme" else getattr(t, m)
        unit = {"phga": "cm", "ptga": "cm", "extra": "cm", "mmt8": f"score 0-{t.mmt_max}", "haq": "score 0-3",
                "enzyme": "U/L"}[m]
        row: dict[str, Any] = {"baseline": base, "month12": follow, "unit": unit}
        if m == "enzyme":
            row.update(enzyme=enzyme.upper() if enzyme != "aldolase" else "aldolase",
                       uln=ENZ_ULN[enzyme], baseline_x_uln=round(base / ENZ_ULN[enzyme], 2))
        if t.missing == m:
            row.update(month12=None, change_pct=None, points=None)
            unknown_max += Decimal(str(BINS[m][1][-1]))
        else:
            ch = pct_change(m, base, follow, t.mmt_max)
            pts = points_for(m, ch)
            row.update(change_pct=float(round(ch, 2)), points=pts)
            total += Decimal(str(pts))
        rows[m] = row
        assert row["points"] == t.points[m], (t.pid, m, row["points"], t.points[m])

    def cls(x: Decimal) -> str:
        return "major" if x >= 60 else "moderate" if x >= 40 else "minimal" if x >= 20 else "none"

    lo, hi = total, total + unknown_max
    klass = cls(lo) if cls(lo) == cls(hi) else "unknown"
    responder: bool | None = bool(lo >= 20) if (lo >= 20) == (hi >= 20) else None
    assert klass == t.cls, (t.pid, klass, t.cls, lo, hi)
    return {"measures": rows, "total": float(total) if t.missing is None else None,
            "total_range": [float(lo), float(hi)], "class": klass, "responder": responder}


def secondary(t: Tofa) -> dict[str, list[float]]:
    """R3-R6 values at baseline and month 12 (FVC%, DLCO%, ferritin ng/mL, lymphocytes 10*9/L, CD19 /uL)."""
    worse = "cytopenia" in t.events
    return {"fvc_pct": [72, 66] if worse else [68, 80], "dlco_pct": [48, 40] if worse else [45, 58],
            "ferritin": [1200, 900 if worse else 180], "lymphocytes": [0.6, 1.4], "cd19": [72, 168]}


def build_tofa(t: Tofa, baseline: date) -> dict[str, list[dict[str, Any]]]:
    r = Rec(t.pid, "local" if t.local else "intl")
    r.patient(date(baseline.year - t.age, 3, 15), t.gender)
    r.visit(baseline - DUR(days=7), inpatient=True, days=10,
            reason=([(ICD10, "M33.1", "Other dermatomyositis")], "抗MDA5阳性皮肌炎 anti-MDA5+ DM"))
    r.condition("dm", baseline - DUR(days=40))
    r.condition("gottron", baseline - DUR(days=40))
    r.condition("ild", baseline - DUR(days=30))
    if t.pid == "tofa-responder-major":
        r.obs("mda5", baseline - DUR(days=6), value={"valueQuantity": {"value": 86, "unit": "U/mL"}},
              interpretation="POS", extra={"referenceRange": [{"high": {"value": 11, "unit": "U/mL"}}]})
        r.out["Observation"][-1]["code"]["coding"][-1] = coding(
            LOINC, "105529-2", "Melanoma differentiation-associated gene 5 Ab [Units/volume] in Serum or Plasma")
    else:
        r.qual("mda5", baseline - DUR(days=6), True)
    # treatment
    drug_text = "tofacitinib 5 mg twice daily"
    if t.as_request:
        r.med_request(t.drug, baseline, 5, 2, drug_text)
    else:
        r.med_statement(t.drug, baseline, dose=5, per_day=2, text=drug_text)
    tapers = [(0, 30, t.pred_mg), (31, 90, t.pred_mg * 0.8), (91, 182, 20.0), (183, None, 10.0)]
    for start, end, mg in tapers:
        r.med_statement("prednisone", baseline + DUR(days=start),
                        baseline + DUR(days=end) if end is not None else None, dose=mg,
                        text=f"prednisone {mg:g} mg once daily")
    r.med_statement("tmpsmx_local", baseline, dose=1, unit="tablet", medication_ref=f"Medication/{TMPSMX_MED_ID}",
                    text="1 tablet once daily")
    enzyme_units = {"ck": "ukat/L" if t.ck_ukat else "U/L"}
    vas_unit = "mm" if t.vas_mm else "cm"
    for i, (month, off) in enumerate(zip(VISIT_MONTHS, VISIT_DAYS, strict=True)):
        day = baseline + DUR(days=off)
        frac = off / 365
        r.visit(day)

        def at(pair: tuple[float, float], nd: int = 1, frac: float = frac) -> float:
            return round(pair[0] + (pair[1] - pair[0]) * frac, nd)

        last = i == len(VISIT_DAYS) - 1
        r.obs("weight", day, value={"valueQuantity": quantity(round(t.weight + (i % 2) * 0.5, 1), "kg")})
        for key in ("phga", "ptga", "extra"):
            if last and t.missing == key:
                continue
            r.measure(key, day, convert(at(getattr(t, key)), vas_unit, 0 if t.vas_mm else 1), vas_unit)
        if not (last and t.missing == "mmt8"):
            r.measure("mmt8", day, round(at(t.mmt8, 0)), "{score}", high=t.mmt_max)
        if not (last and t.missing == "haq"):
            r.measure("haq", day, round(at(t.haq, 3) * 8) / 8 if not last else t.haq[1], "{score}")
        myo = at(t.myoact)
        r.measure("myoact", day, convert(myo, vas_unit, 0 if t.vas_mm else 1), vas_unit)
        if month in (0, 6, 12):
            r.measure("myoact_cut", day, convert(round(myo * 0.4, 1), vas_unit, 0 if t.vas_mm else 1), vas_unit)
            r.measure("myoact_pulm", day, convert(round(myo * 0.3, 1), vas_unit, 0 if t.vas_mm else 1), vas_unit)
        for enz, pair in t.enzymes.items():
            unit = enzyme_units.get(enz, "U/L")
            v = at(pair, 0) if not last else pair[1]
            if enz == "alt" and "alt_rise" in t.events and month == 1:
                v = 160
            r.lab(enz, day, v, unit, 2 if unit == "ukat/L" else (1 if enz == "aldolase" else 0),
                  ref_key=enz)
        fvc = (72, 66) if "cytopenia" in t.events else (68, 80)
        dlco = (48, 40) if "cytopenia" in t.events else (45, 58)
        r.lab("fvc_pct", day, at(fvc, 0), "%")
        r.lab("dlco_pct", day, at(dlco, 0), "%")
        r.lab("ferritin", day, at((1200, 900 if "cytopenia" in t.events else 180), 0), "ng/mL")
        wbc, lymph = (2.1, 0.3) if ("cytopenia" in t.events and month == 3) else (5.0, at((0.6, 1.4), 2))
        r.lab("wbc", day, wbc, "10*9/L", 2)
        r.lab("lymph", day, lymph, "10*9/L", 2)
        if month in (0, 12):
            cells = lymph * 1000
            for key, share in (("cd3", 0.70), ("cd4", 0.40), ("cd8", 0.25), ("cd19", 0.12), ("nk", 0.15)):
                r.lab(key, day, round(cells * share), "/uL")
            r.lab("cd19_pct", day, 12.0, "%", 1)
        if "zoster" in t.events and month == 3:
            r.condition("zoster", day + DUR(days=30))
    return r.out
