"""NCT07377058 (PROMIS-MDA5) pre-screening scenarios: a candidate template and the one change that decides the
criterion each patient exercises, with the expected result of every criterion."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from sample.codes import AS_OF, DUR, ICD10, ICD10CM, IV, PREDNISONE_MED_ID, RXNORM, TMPSMX_MED_ID, d, quantity
from sample.record import Rec

CRITERIA = ["I1", "I2", "I3", "I4", "I5", "I6", "I7", "I8", "E1", "E2", "E3a", "E3b", "E3c", "E3d", "E3e", "E3f",
            "E3g", "E3h", "E4", "E5a", "E5b", "E6", "E7", "E8", "E9", "E10", "E11", "E12", "E13", "E14.1",
            "E14.2", "E14.3", "E15", "E16", "E17", "E18"]
HUMAN = {"I6": "unknown", "I8": "unknown", "E18": "unknown"}  # never decidable from FHIR data
CANDIDATE_EXPECTED = {c: HUMAN.get(c, "met" if c.startswith("I") else "not-met") for c in CRITERIA}


@dataclass
class Promis:
    """One pre-screening patient: the candidate template plus ``changes`` and what they should decide."""

    pid: str
    story: str
    exercises: list[str]
    expected: dict[str, str]
    changes: dict[str, Any] = field(default_factory=dict)
    age: int = 35
    gender: str = "female"
    weight: tuple[float, str] = (58.0, "kg")
    style: str = "intl"
    notes: str = ""
    template: bool = True  # False: a decoy that does not start from the candidate template


def status_of(expected: dict[str, str]) -> str:
    """Overall status from criterion outcomes (human-only criteria do not count)."""
    decided = {k: v for k, v in expected.items() if k not in HUMAN and k != "status"}
    if any((k.startswith("I") and v == "not-met") or (k.startswith("E") and v == "met") for k, v in decided.items()):
        return "ineligible"
    if any(v == "unknown" for v in decided.values()):
        return "potential-candidate"
    return "candidate"


def birth_for(age: int, pid: str) -> date:
    """A birth date giving ``age`` completed years on AS_OF (the day after AS_OF, minus ``age``+1 years)."""
    offset = sum(map(ord, pid)) % 200 + 1  # stable, not on the birthday
    return date(AS_OF.year - age - 1, AS_OF.month, AS_OF.day) + DUR(days=offset)


def build_promis(p: Promis) -> dict[str, list[dict[str, Any]]]:
    """The candidate template, with the scenario's changes applied."""
    c = p.changes
    r = Rec(p.pid, p.style)
    birth = c.get("birth") or birth_for(p.age, p.pid)
    r.patient(birth, p.gender, c.get("deceased"))
    if not p.template:
        c["decoy"](r)
        return r.out
    # diagnosis admission ~5 months ago (not an infection): DM, ILD, anti-MDA5
    ild_onset = c.get("ild_onset", d(-145))
    dx_day = min(ild_onset, d(-140))
    r.visit(dx_day - DUR(days=5), inpatient=True, days=12,
            reason=([(ICD10, "M33.1", "Other dermatomyositis")], "皮肌炎 dermatomyositis"))
    if "pm_instead" in c:
        r.condition("pm", d(-160))
    else:
        r.condition(c.get("dm_key", "dm" if c.get("ild", True) else "cadm"), dx_day - DUR(days=10))
        r.condition("gottron", dx_day - DUR(days=10))
    if c.get("ild", True):
        r.condition("ild", ild_onset)
    mda5 = c.get("mda5", True)
    if mda5 is not None:
        r.qual("mda5", dx_day - DUR(days=3), mda5)
    for extra in c.get("conditions", []):
        r.condition(*extra[:2], **(extra[2] if len(extra) > 2 else {}))
    # medications
    wt_kg = p.weight[0] if p.weight[1] == "kg" else round(p.weight[0] * 0.45359237, 2)
    for gc in c.get("gc", [("prednisone", d(-70), None, 30.0)]):
        r.med_statement(gc[0], gc[1], gc[2], dose=gc[3], text=f"{gc[0]} {gc[3]:g} mg once daily")
    cni = c.get("cni", "tacrolimus")
    if cni == "tacrolimus":
        r.med_statement("tacrolimus", d(-90), dose=1, per_day=2, text="tacrolimus 1 mg twice daily")
    elif cni == "tacrolimus_changed":
        r.med_statement("tacrolimus", d(-90), d(-15), dose=1, per_day=2, text="tacrolimus 1 mg twice daily")
        r.med_statement("tacrolimus", d(-14), dose=1.5, per_day=2, text="tacrolimus 1.5 mg twice daily")
    elif cni == "tacrolimus_contained":
        r.med_statement_contained(d(-90), caps=1, per_day=2)
    elif cni == "tacrolimus_request":
        r.med_request("tacrolimus", d(-90), 1, 2, "tacrolimus 1 mg twice daily")
    elif cni == "tacrolimus_local":
        r.med_statement("tacrolimus_local", d(-90), dose=1, per_day=2, text="他克莫司 1mg bid")
    elif cni == "cyclosporine":
        r.med_statement("cyclosporine", d(-90), dose=75, per_day=2, text="ciclosporin 75 mg twice daily")
    if c.get("tmpsmx", True):
        if p.style == "local":
            r.med_statement("tmpsmx_local", d(-90), text="复方磺胺甲噁唑 1片 每日一次", text_only=True)
        else:
            r.med_statement("tmpsmx_local", d(-90), dose=1, unit="tablet", medication_ref=f"Medication/{TMPSMX_MED_ID}",
                            text="1 tablet once daily")
    r.med_statement("omeprazole", d(-90), text="omeprazole 20 mg qd", text_only=True)
    for fn in c.get("meds", []):
        fn(r)
    for a in c.get("allergies", []):
        r.allergy(*a)
    if not any(len(a) < 3 or a[2] == "confirmed" for a in c.get("allergies", [])):
        r.no_known_allergy()  # the template's allergy list was taken: none known (a refuted one aside)
    # earlier PFT and current screening visit
    if c.get("pft", True) and "pft_series" not in c:
        r.visit(d(-60))
        r.lab("fvc_pct", d(-60), 75, "%")
        r.lab("dlco_pct", d(-60), 58, "%")
    for enc in c.get("encounters", []):
        r.visit(*enc[:2], **enc[2])
    r.visit(d(-10))
    if c.get("ild", True) or c.get("hrct_normal"):
        r.report("Bilateral subpleural reticulation and ground-glass opacities, about 20% of lung fields"
                 if c.get("ild", True) else "No interstitial abnormality. Lungs clear.", d(-10),
                 normal=not c.get("ild", True))
    if c.get("pft", True):
        if "pft_series" in c:
            for day, fvc, dlco in c["pft_series"]:
                r.lab("fvc_pct", day, fvc, "%")
                r.lab("dlco_pct", day, dlco, "%")
        else:
            r.procedure(d(-10))
            r.lab("fvc", d(-10), 2.45, "L", 2)
            fvc_pct = c.get("fvc_pct", 78)
            r.lab("fvc_pct", d(-10), fvc_pct, "%")
            if "dlco_measured" in c:
                meas, pred = c["dlco_measured"]
                r.lab("dlco", d(-10), meas, "mL/min/mm[Hg]", 1)
                r.lab("dlco_pred", d(-10), pred, "mL/min/mm[Hg]", 1)
            else:
                r.lab("dlco_pct", d(-10), c.get("dlco_pct", 62), "%")
    elif c.get("pft_unable"):
        r.procedure(d(-10), "stopped", "Patient unable to complete spirometry manoeuvres (cough, dyspnoea)")
    # serologies / TB / pregnancy at screening
    ser = {"hbsag": False, "antihbc": False, "antihcv": False, "hiv": False, "igra": False, **c.get("serology", {})}
    for key, pos in ser.items():
        if pos is not None:
            r.qual(key, d(-10), pos)
    for fn in c.get("obs_extra", []):
        fn(r)
    if p.gender == "female" and c.get("hcg", False) is not None:
        r.qual("hcg", d(-2), bool(c.get("hcg", False)))
    # screening labs
    lab_day = c.get("lab_day", d(-3))
    r.visit(lab_day)
    units = {"counts": "10*9/L", "hb": "g/L", "bili": "umol/L", "creat": "umol/L", "ck": "U/L", **c.get("units", {})}
    labs = {"wbc": 5.2, "neut": 3.4, "lymph": 0.9, "hb": 125, "plt": 210, "alt": 35, "ast": 38, "bili": 12.0,
            "creat": 62, "ck": 150, "ferritin": 520, **c.get("labs", {})}
    for key in ("wbc", "neut", "lymph", "plt"):
        if key in c.get("omit_labs", ()):
            continue
        r.lab(key, lab_day, labs[key], units.get(key, units["counts"]), 0 if key == "plt" else 2)
    r.lab("hb", lab_day, labs["hb"], units["hb"], 1 if units["hb"] == "g/dL" else 0)
    for key in ("alt", "ast"):
        r.lab(key, lab_day, labs[key], "U/L")
    if units["bili"] == "bili mg/dL":
        r.lab("bili", lab_day, labs["bili"], "bili mg/dL", 2, loinc_key="bili_mass", ref_key="bili")
    else:
        r.lab("bili", lab_day, labs["bili"], units["bili"], 1)
    r.lab("creat", lab_day, labs["creat"], units["creat"], 0)
    if "crcl" in labs:
        r.lab("crcl", lab_day, labs["crcl"], "mL/min")
    r.lab("ck", lab_day, labs["ck"], units["ck"], 2 if units["ck"] == "ukat/L" else 0)
    r.lab("ferritin", lab_day, labs["ferritin"], "ng/mL")
    if lab_day != d(-3):
        r.visit(d(-3))
    wv, wu = p.weight
    r.obs("weight", d(-3), value={"valueQuantity": quantity(wv, wu)})
    r.obs("spo2", d(-3), value={"valueQuantity": quantity(c.get("spo2", 96), "%")})
    if "pao2" in c:
        val, unit = c["pao2"]
        r.obs("pao2", d(-3), value={"valueQuantity": quantity(val, unit)})
    for fn in c.get("late", []):
        fn(r)
    # self-checks of the arithmetic the expectations rely on
    gc_name, _, _, gc_mg = (c.get("gc", [("prednisone", d(-70), None, 30.0)]) or [c["gc_check"]])[-1]
    peq = gc_mg * (1.25 if gc_name == "methylprednisolone" else 1.0)
    age = AS_OF.year - birth.year - ((AS_OF.month, AS_OF.day) < (birth.month, birth.day))
    crcl = cockcroft(age, wt_kg, labs["creat"], p.gender)
    exp = p.expected if "I4" in p.expected else E()  # misc-deceased: clinically the candidate
    assert (peq / wt_kg < 1) == (exp["I4"] != "not-met" or "3wk" in p.pid), p.pid
    assert (labs.get("crcl", crcl) > 45) == (exp["E3h"] != "met") or "lab_day" in c, (p.pid, crcl)
    assert (wt_kg >= 45 and 18 <= age < 65) == (exp["I1"] == "met"), (p.pid, age, wt_kg)
    p.notes = (p.notes + " " if p.notes else "") + (
        f"Age {age}; weight {wt_kg:g} kg; oral GC {peq:g} mg/d prednisone-equivalent = {peq / wt_kg:.3f} "
        f"mg/kg/day; Cockcroft-Gault CrCl {crcl:.1f} mL/min.")
    return r.out


def cockcroft(age: int, kg: float, creat_umol: float, gender: str) -> float:
    v = (140 - age) * kg / (72 * creat_umol / 88.4)
    return v * 0.85 if gender == "female" else v


def ma(drug: str, start: int, end: int | None, dose: float, unit: str, text: str) -> Callable[[Rec], None]:
    return lambda r: r.med_admin(drug, d(start), d(end) if end is not None else None, dose, unit, text)


def ms(drug: str, start: int, end: int | None = None, **kw: Any) -> Callable[[Rec], None]:
    return lambda r: r.med_statement(drug, d(start), d(end) if end is not None else None, **kw)


def _decoy_ra(r: Rec) -> None:
    r.visit(d(-30))
    r.condition("ra", d(-2000))
    r.med_statement("tofacitinib", d(-400), dose=5, per_day=2, text="tofacitinib 5 mg bid")
    r.med_statement("methotrexate", d(-900), dose=15, per_day=1, period=1, period_unit="wk",
                    text="methotrexate 15 mg once weekly")
    r.lab("wbc", d(-30), 6.1, "10*9/L", 2)
    r.lab("ck", d(-30), 90, "U/L")


def _decoy_sle(r: Rec) -> None:
    r.visit(d(-20))
    r.condition("sle", d(-1500))
    r.med_statement("mmf", d(-300), dose=750, per_day=2, text="MMF 750 mg bid")
    r.med_statement("hydroxychloroquine", d(-1400), dose=200, per_day=2, text="HCQ 200 mg bid")
    r.qual("mda5", d(-20), False)
    r.lab("lymph", d(-20), 0.8, "10*9/L", 2)


def _decoy_ipf(r: Rec) -> None:
    r.visit(d(-15))
    r.condition("ipf", d(-700))
    r.lab("fvc_pct", d(-15), 64, "%")
    r.lab("dlco_pct", d(-15), 45, "%")
    r.obs("spo2", d(-15), value={"valueQuantity": quantity(93, "%")})


def _decoy_dm_neg(r: Rec) -> None:
    r.visit(d(-25))
    r.condition("dm_noild", d(-500))
    r.qual("mda5", d(-480), False)
    r.qual("jo1", d(-480), False)
    r.lab("ck", d(-25), 2400, "U/L")
    r.med_statement("prednisone", d(-480), dose=20, text="prednisone 20 mg qd")
    r.med_statement("methotrexate", d(-400), dose=15, period_unit="wk", text="methotrexate 15 mg weekly")


def E(**kw: str) -> dict[str, str]:
    """Expected outcomes: the candidate's, with ``kw`` overriding (E14_1 -> "E14.1")."""
    out = dict(CANDIDATE_EXPECTED)
    out.update({k.replace("_", "."): v for k, v in kw.items()})
    out["status"] = status_of(out)
    return out


PROMIS: list[Promis] = [
    # ---- candidates -------------------------------------------------------------------------------------
    Promis("mda5-ild-01", "35-year-old woman, anti-MDA5+ DM with ILD (SpO2 96%, FVC 78%, DLCO 62%), prednisone "
           "30 mg/d x10 wk, tacrolimus 1 mg bid x13 wk, TMP-SMX, negative serologies/IGRA/hCG, normal labs.",
           ["I1", "I2", "I3", "I4", "I5", "I7"], E(),
           notes="The candidate template: every other PROMIS scenario is this record plus one change."),
    Promis("mda5-ild-02-local", "48-year-old man, same clinical picture as mda5-ild-01 but coded like a Chinese "
           "HIS: local lab codes only, national-clinical ICD-10 codes, local formulary drugs, text units "
           "(x10^9/L, μmol/L), hemoglobin in g/dL, PaO2 in kPa, TMP-SMX dose in text only.",
           ["I1", "I2", "I3", "I4", "I5", "local codes"], E(), age=48, gender="male", weight=(66.0, "kg"),
           style="local",
           changes={"cni": "tacrolimus_local",
                    "gc": [("prednisone_local", d(-70), None, 35.0)],
                    "units": {"counts": "x10^9/L", "hb": "g/dL", "bili": "μmol/L", "creat": "μmol/L"},
                    "pao2": (10.9, "kPa")},
           notes="Expected outcomes assume the site mapping of the local codes listed in local_codes. Without it "
                 "most criteria are unknown."),
    Promis("mda5-cadm-no-ild", "29-year-old woman, clinically amyopathic anti-MDA5+ DM, no ILD (HRCT normal, "
           "coded Normal), no PFT abnormality.", ["I3"], E(), age=29, weight=(52.0, "kg"),
           changes={"ild": False, "hrct_normal": True, "dm_key": "cadm"},
           notes="I3 is met vacuously: no ILD Condition and a normal HRCT (conclusionCode SNOMED 17621005). PFT "
                 "still on file (FVC 78%, DLCO 62%)."),
    # ---- I1 ---------------------------------------------------------------------------------------------
    Promis("incl-i1-age17", "17-year-old girl, otherwise the candidate.", ["I1"], E(I1="not-met"), age=17,
           weight=(50.0, "kg")),
    Promis("incl-i1-age65", "Woman whose 65th birthday is the screening date (I1 says < 65; the registry header "
           "says 18 to 65).", ["I1"], E(I1="not-met"), gender="female",
           changes={"birth": date(1961, 6, 30), "hcg": None},
           notes="Age exactly 65.0 on S: not-met by the criterion text (< 65); flag for the 18-65 header. "
                 "No hCG test (post-menopausal); I7 met as not of childbearing potential (human confirms)."),
    Promis("bnd-i1-age64", "Man aged 64 (65th birthday tomorrow); tacrolimus recorded as a MedicationRequest "
           "only.", ["I1", "I5"], E(), gender="male", weight=(70.0, "kg"),
           changes={"birth": date(1961, 7, 1), "cni": "tacrolimus_request"}),
    Promis("bnd-i1-age18", "Man whose 18th birthday is the screening date.", ["I1"], E(), gender="male",
           weight=(61.0, "kg"), changes={"birth": date(2008, 6, 30)}),
    Promis("incl-i1-weight44", "Woman weighing 44 kg.", ["I1"], E(I1="not-met"), weight=(44.0, "kg")),
    Promis("incl-i1-weight-lb", "Woman weighing 96 lb (43.5 kg), weight sent in [lb_av].", ["I1"],
           E(I1="not-met"), weight=(96.0, "[lb_av]")),
    Promis("bnd-i1-weight45", "Woman weighing exactly 45.0 kg.", ["I1"], E(), weight=(45.0, "kg")),
    Promis("bnd-i1-weight-lb-ok", "Man weighing 150 lb (68.0 kg), weight in [lb_av]; tacrolimus as '1 capsule' "
           "with the strength in a contained Medication.", ["I1", "I5"], E(), gender="male",
           weight=(150.0, "[lb_av]"), changes={"cni": "tacrolimus_contained"}),
    # ---- I2 ---------------------------------------------------------------------------------------------
    Promis("incl-i2-mda5neg", "Dermatomyositis with ILD but anti-MDA5 negative.", ["I2"], E(I2="not-met"),
           changes={"mda5": False}),
    Promis("incl-i2-no-mda5-test", "Dermatomyositis with ILD, anti-MDA5 never tested.", ["I2"],
           E(I2="unknown"), changes={"mda5": None}),
    # ---- I3 ---------------------------------------------------------------------------------------------
    Promis("incl-i3-fvc55", "ILD with FVC 55% predicted.", ["I3"], E(I3="not-met"), changes={"fvc_pct": 55}),
    Promis("incl-i3-dlco38", "ILD with DLCO 38% predicted, reported only as measured 9.5 and predicted 25.0 "
           "mL/min/mmHg (no %pred code).", ["I3"], E(I3="not-met"),
           changes={"dlco_measured": (9.5, 25.0)}, notes="DLCO % = 9.5 / 25.0 x 100 = 38%."),
    Promis("incl-i3-hypoxaemia", "ILD with SpO2 88% and PaO2 7.6 kPa (57.0 mmHg).", ["I3"], E(I3="not-met"),
           changes={"spo2": 88, "pao2": (7.6, "kPa")}),
    Promis("bnd-i3-spo2-low-pao2-ok", "ILD with SpO2 88% but PaO2 8.4 kPa (63.0 mmHg): the OR is satisfied.",
           ["I3"], E(), changes={"spo2": 88, "pao2": (8.4, "kPa")}),
    # ---- I4 ---------------------------------------------------------------------------------------------
    Promis("incl-i4-pred-1mgkg", "Prednisone 60 mg/d at 60 kg = exactly 1.0 mg/kg/day (must be < 1).", ["I4"],
           E(I4="not-met"), weight=(60.0, "kg"), changes={"gc": [("prednisone", d(-70), None, 60.0)]}),
    Promis("incl-i4-pred-3wk", "Prednisone started only 3 weeks before screening.", ["I4"], E(I4="not-met"),
           changes={"gc": [("prednisone", d(-21), None, 30.0)]},
           notes="Assumes randomization R = S; with R >= S+7 the 4 weeks would be complete."),
    Promis("bnd-i4-methylpred", "Oral methylprednisolone 32 mg/d (= 40 mg prednisone, 0.69 mg/kg/d) for 10 "
           "weeks.", ["I4"], E(), changes={"gc": [("methylprednisolone", d(-70), None, 32.0)]}),
    # ---- I5 / I6 / I7 -----------------------------------------------------------------------------------
    Promis("incl-i5-no-cni", "Never received a calcineurin inhibitor.", ["I5"], E(I5="not-met"),
           changes={"cni": None},
           notes="Literal reading of I5; clinical.md 7.3 says eligibility without a CNI is ambiguous: needs review."),
    Promis("incl-i5-cni-dose-change", "Tacrolimus raised from 1 to 1.5 mg bid 2 weeks before screening.",
           ["I5"], E(I5="not-met"), changes={"cni": "tacrolimus_changed"}),
    Promis("bnd-i5-cyclosporine", "On a stable ciclosporin dose instead of tacrolimus.", ["I5"], E(),
           gender="male", weight=(72.0, "kg"), changes={"cni": "cyclosporine"}),
    Promis("incl-i6-no-tmpsmx", "Not (yet) taking TMP-SMX prophylaxis.", ["I6"], E(),
           changes={"tmpsmx": False},
           notes="I6 is a future obligation (human); its outcome is unknown for every patient. The absence of "
                 "TMP-SMX is only a hint to review."),
    Promis("incl-i7-no-hcg", "30-year-old woman with no pregnancy test on file.", ["I7"], E(I7="unknown"),
           age=30, changes={"hcg": None}),
    # ---- E1 / E2 ----------------------------------------------------------------------------------------
    Promis("excl-e1-pm", "Polymyositis (SNOMED 31384009), no dermatomyositis code, anti-MDA5 negative.",
           ["E1", "I2"], E(E1="met", I2="not-met"), changes={"pm_instead": True, "mda5": False}),
    Promis("excl-e1-antisynthetase", "Anti-MDA5+ DM with a positive anti-Jo-1 and an overlap/antisynthetase "
           "diagnosis (ICD-10-CM M35.1).", ["E1"], E(E1="met"),
           changes={"conditions": [("overlap", d(-100))], "obs_extra": [lambda r: r.qual("jo1", d(-100), True)]},
           notes="E1 is partial: M35.1 is not specific; needs review."),
    Promis("excl-e2-acs", "NSTEMI 100 days before screening (within 24 weeks).", ["E2"], E(E2="met"),
           gender="male", weight=(70.0, "kg"), age=58, changes={"conditions": [("nstemi", d(-100))]}),
    Promis("bnd-e2-mi-old", "NSTEMI 200 days before screening (outside 24 weeks), resolved.", ["E2"], E(),
           gender="male", weight=(70.0, "kg"), age=58,
           changes={"conditions": [("nstemi", d(-200), {"clinical": "resolved", "abatement": d(-180)})]},
           notes="Outside the 24-week ACS window; 'significant' life-threatening complication is still a human "
                 "call."),
    Promis("excl-e2-stroke", "Cerebral infarction in 2019 (WHO ICD-10 I63.9 only).", ["E2"], E(E2="met"),
           gender="male", weight=(68.0, "kg"), age=60,
           changes={"conditions": [("stroke", date(2019, 3, 2), {"clinical": "resolved",
                                                                 "abatement": date(2019, 4, 1)})]}),
    # ---- E3 ---------------------------------------------------------------------------------------------
    Promis("excl-e3a-wbc", "WBC 2.8 x10^9/L (unit text only, no UCUM code).", ["E3a"], E(E3a="met"),
           changes={"labs": {"wbc": 2.8}, "units": {"wbc": "x10^9/L"}}),
    Promis("excl-e3b-neut", "Neutrophils 0.8 10*3/uL.", ["E3b"], E(E3b="met"),
           changes={"labs": {"wbc": 3.2, "neut": 0.8}, "units": {"counts": "10*3/uL"}}),
    Promis("excl-e3c-lymph", "Lymphocytes 0.4 x10^9/L.", ["E3c"], E(E3c="met"), changes={"labs": {"lymph": 0.4}}),
    Promis("bnd-e3c-lymph", "Lymphocytes exactly 0.5 x10^9/L (not < 0.5).", ["E3c"], E(),
           changes={"labs": {"lymph": 0.5}}),
    Promis("excl-e3d-hb", "Hemoglobin 8.5 g/dL (85 g/L).", ["E3d"], E(E3d="met"),
           changes={"labs": {"hb": 85}, "units": {"hb": "g/dL"}}),
    Promis("bnd-e3d-hb", "Hemoglobin exactly 9.0 g/dL (90 g/L, not < 90).", ["E3d"], E(),
           changes={"labs": {"hb": 90}, "units": {"hb": "g/dL"}}),
    Promis("excl-e3e-plt", "Platelets 45 x10^9/L.", ["E3e"], E(E3e="met"), changes={"labs": {"plt": 45}}),
    Promis("excl-e3f-alt", "ALT 160 U/L (3.2 x ULN 50) with normal CK: not explained by myositis.", ["E3f"],
           E(E3f="met"), changes={"labs": {"alt": 160, "ck": 90}},
           notes="The 'due to DM' exception stays a human call; CK normal makes it unlikely."),
    Promis("excl-e3f-ast-dm", "AST 130 U/L (3.25 x ULN 40), ALT 70, with CK 3500 U/L: probably muscle origin.",
           ["E3f"], E(E3f="unknown"), changes={"labs": {"ast": 130, "alt": 70, "ck": 3500}},
           notes="Ratio criterion met, but the 'excluding elevation due to dermatomyositis' exception probably "
                 "applies; a clinician must decide."),
    Promis("excl-e3g-bili", "Total bilirubin 2.0 mg/dL (34.2 umol/L = 1.67 x ULN 20.5 umol/L), in mg/dL.",
           ["E3g"], E(E3g="met"), changes={"labs": {"bili": 34.2}, "units": {"bili": "bili mg/dL"}}),
    Promis("excl-e3h-crcl-derived", "58-year-old man, 60 kg, creatinine 160 umol/L: Cockcroft-Gault CrCl "
           "37.8 mL/min (no measured clearance).", ["E3h"], E(E3h="met"), age=58, gender="male",
           weight=(60.0, "kg"), changes={"labs": {"creat": 160}},
           notes="Derived value; the adapter should flag it as computed."),
    Promis("excl-e3h-crcl-measured", "Measured 24-h creatinine clearance 40 mL/min.", ["E3h"], E(E3h="met"),
           age=52, changes={"labs": {"creat": 98, "crcl": 40}}),
    # ---- E4 ---------------------------------------------------------------------------------------------
    Promis("excl-e4-infection-admission", "Admitted 40 days ago for pneumonia (inpatient, 10 days).", ["E4"],
           E(E4="met"), changes={"encounters": [(d(-40), True, {"days": 10, "reason": (
               [(ICD10CM, "J18.9", "Pneumonia, unspecified organism")], "Pneumonia")})]},
           notes="'Severe' is a human judgement; an infection admission in [S-60d, S] is the machine signal."),
    Promis("excl-e4-iv-antibiotic", "IV ceftriaxone 2 g daily until the morning of screening (washout of 5 "
           "half-lives not complete).", ["E4"], E(E4="met"),
           changes={"meds": [ma("ceftriaxone", -6, 0, 2, "g", "ceftriaxone 2 g IV q24h")]}),
    Promis("bnd-e4-admission-old", "Pneumonia admission 75 days ago (outside 60 days).", ["E4"], E(),
           changes={"encounters": [(d(-75), True, {"days": 8, "reason": (
               [(ICD10CM, "J18.9", "Pneumonia, unspecified organism")], "Pneumonia")})]}),
    # ---- E5 ---------------------------------------------------------------------------------------------
    Promis("excl-e5a-active-tb", "Active pulmonary TB diagnosed 20 days ago, untreated.", ["E5a"],
           E(E5a="met"), changes={"conditions": [("active_tb", d(-20))]}),
    Promis("excl-e5b-igra-untreated", "Positive QuantiFERON, no preventive treatment.", ["E5b"], E(E5b="met"),
           changes={"serology": {"igra": True}}),
    Promis("excl-e5b-tspot-one-drug", "Positive T-SPOT.TB (local code), isoniazid alone for 5 weeks.", ["E5b"],
           E(E5b="met"), changes={"serology": {"igra": None},
                                  "obs_extra": [lambda r: r.qual("tspot", d(-40), True)],
                                  "meds": [ms("isoniazid", -35, dose=300, text="isoniazid 300 mg qd")]},
           notes="One anti-TB drug is not the required >= 2."),
    Promis("bnd-e5b-igra-treated", "Positive QuantiFERON, isoniazid + rifampicin for 5 weeks, continuing.",
           ["E5b"], E(), changes={"serology": {"igra": True},
                                  "meds": [ms("isoniazid", -35, dose=300, text="isoniazid 300 mg qd"),
                                           ms("rifampin", -35, dose=450, text="rifampicin 450 mg qd")]}),
    # ---- E6 / E7 ----------------------------------------------------------------------------------------
    Promis("excl-e6-hbsag", "HBsAg positive.", ["E6"], E(E6="met"), changes={"serology": {"hbsag": True}}),
    Promis("excl-e6-hbc-dna-high", "Anti-HBc positive, HBsAg negative, HBV DNA 5200 copies/mL.", ["E6"],
           E(E6="met"), changes={"serology": {"antihbc": True}, "obs_extra": [
               lambda r: r.obs("hbvdna", d(-10), value={"valueQuantity": quantity(5200, "{copies}/mL")})]},
           notes="Above the default 1000 copies/mL (the seed's '10^3 copies/L' read as copies/mL)."),
    Promis("bnd-e6-hbc-dna-low", "Anti-HBc positive, HBV DNA < 20 IU/mL (below detection).", ["E6"], E(),
           changes={"serology": {"antihbc": True}, "obs_extra": [
               lambda r: r.obs("hbvdna_iu", d(-10), value={"valueQuantity": {**quantity(20, "[IU]/mL"),
                                                                             "comparator": "<"}})]}),
    Promis("excl-e6-hbc-no-dna", "Anti-HBc positive, HBV DNA not tested.", ["E6"], E(E6="unknown"),
           changes={"serology": {"antihbc": True}}),
    Promis("excl-e6-hcv", "Anti-HCV positive.", ["E6"], E(E6="met"), changes={"serology": {"antihcv": True}}),
    Promis("excl-e7-hiv", "HIV infection on the problem list and a reactive HIV Ag/Ab test.", ["E7"],
           E(E7="met"), gender="male", weight=(64.0, "kg"),
           changes={"serology": {"hiv": True}, "conditions": [("hiv", d(-900))]}),
    # ---- E8 ---------------------------------------------------------------------------------------------
    Promis("excl-e8-fvc-drop", "ILD onset 25 days ago; FVC 80% -> 66% and DLCO 55% -> 48% within 3 weeks.",
           ["E8"], E(E8="met"), changes={"ild_onset": d(-25), "gc": [("prednisone", d(-50), None, 30.0)],
                                        "pft_series": [(d(-22), 80, 55), (d(-3), 66, 48)]},
           notes="FVC fall 14 points absolute (17.5% relative): > 10 on both readings. FVC 66% and DLCO 48% still "
                 "meet I3."),
    Promis("excl-e8-pao2-drop", "ILD onset 25 days ago; PaO2 85 mmHg -> 9.33 kPa (70.0 mmHg) on room air.",
           ["E8"], E(E8="met"), changes={"ild_onset": d(-25), "gc": [("prednisone", d(-50), None, 30.0)],
                                        "pao2": (9.33, "kPa"), "obs_extra": [
               lambda r: r.obs("pao2", d(-22), value={"valueQuantity": quantity(85, "mm[Hg]")}),
               lambda r: r.obs("fio2", d(-22), value={"valueQuantity": quantity(21, "%")})]},
           notes="Fall 15.0 mmHg > 10; P/F 70/0.21 = 333 >= 200."),
    Promis("bnd-e8-fvc-relative-only", "ILD onset 25 days ago; FVC 80% -> 71%: 9 points absolute but 11.25% "
           "relative.", ["E8"], E(E8="unknown"),
           changes={"ild_onset": d(-25), "gc": [("prednisone", d(-50), None, 30.0)],
                    "pft_series": [(d(-22), 80, 60), (d(-3), 71, 57)]},
           notes="The seed does not say whether '>10%' is relative or absolute: needs review."),
    # ---- E9 .. E17 --------------------------------------------------------------------------------------
    Promis("excl-e9-tcz-allergy", "Documented allergy to tocilizumab (no tocilizumab in the drug history).",
           ["E9"], E(E9="met"), changes={"allergies": [([(RXNORM, "612865", "tocilizumab")], "tocilizumab")]}),
    Promis("excl-e10-sulfa-allergy", "Sulfonamide allergy (sulfamethoxazole, text 磺胺类); not on TMP-SMX.",
           ["E10"], E(E10="met"), changes={"tmpsmx": False, "allergies": [
               ([(RXNORM, "10180", "sulfamethoxazole")], "磺胺类药物过敏 sulfonamides")]}),
    Promis("excl-e10-sulfa-z88", "Sulfonamide allergy recorded only as a Condition Z88.2 (WHO ICD-10).",
           ["E10"], E(E10="met"), changes={"tmpsmx": False, "conditions": [("sulfa_z88", d(-800))]}),
    Promis("excl-e11-pft-unable", "Could not complete the baseline PFT (Procedure stopped, reason in text); "
           "no FVC/DLCO values.", ["E11", "I3"], E(E11="met", I3="unknown"),
           changes={"pft": False, "pft_unable": True},
           notes="E11 is partial (human); without FVC/DLCO, I3 (ii) is unknown."),
    Promis("excl-e11-no-pft", "ILD but no PFT on file at all.", ["E11", "I3"], E(E11="unknown", I3="unknown"),
           changes={"pft": False},
           notes="A missing PFT is only suggestive of E11 (may be not done yet)."),
    Promis("excl-e12-mp-pulse", "IV methylprednisolone 500 mg/d x3 days 12-10 days before screening "
           "(MedicationAdministration), oral prednisone 30 mg/d otherwise.", ["E12", "I4"],
           E(E12="met", I4="unknown"),
           changes={"meds": [ma("methylprednisolone", -12, -10, 500, "mg", "methylprednisolone 500 mg IV qd x3")]},
           notes="Pulse = 625 mg/d prednisone-equivalent = 10.8 mg/kg/d > 2. I4: < 1 mg/kg/d at R but not "
                 "throughout [R-28d, R]; the protocol does not say which, so needs review."),
    Promis("excl-e13-ivig", "IVIG 25 g/d x5 days, 20-16 days before screening.", ["E13"], E(E13="met"),
           changes={"meds": [ma("ivig", -20, -16, 25, "g", "IVIG 0.4 g/kg/d x5 d")]}),
    Promis("bnd-e13-ivig-old", "IVIG 25 g/d x5 days, 45-41 days before screening (stopped > 30 days).",
           ["E13"], E(), changes={"meds": [ma("ivig", -45, -41, 25, "g", "IVIG 0.4 g/kg/d x5 d")]}),
    Promis("excl-e14-1-rituximab", "Rituximab 500 mg IV 120 days before screening.", ["E14.1"],
           E(E14_1="met"), changes={"meds": [ma("rituximab", -120, None, 500, "mg", "rituximab 500 mg IV")]}),
    Promis("bnd-e14-1-rituximab-old", "Rituximab 500 mg IV 220 days before screening.", ["E14.1"], E(),
           changes={"meds": [ma("rituximab", -220, None, 500, "mg", "rituximab 500 mg IV")]}),
    Promis("excl-e14-2-jaki", "Tofacitinib 5 mg bid stopped 10 days before screening.", ["E14.2"],
           E(E14_2="met"), changes={"meds": [ms("tofacitinib", -120, -10, dose=5, per_day=2)]}),
    Promis("bnd-e14-2-jaki-old", "Baricitinib stopped 20 days before screening.", ["E14.2"], E(),
           changes={"meds": [ms("baricitinib", -150, -20, dose=4, per_day=1)]}),
    Promis("excl-e14-3-mtx", "Methotrexate 15 mg weekly stopped 14 days before screening.", ["E14.3"],
           E(E14_3="met"), changes={"meds": [ms("methotrexate", -200, -14, dose=15, period_unit="wk",
                                                text="methotrexate 15 mg once weekly")]}),
    Promis("excl-e14-3-mmf", "Mycophenolate mofetil 1 g bid ongoing (ATC code only).", ["E14.3"],
           E(E14_3="met"), changes={"meds": [ms("mmf", -100, dose=1000, per_day=2)]}),
    Promis("excl-e15-prior-tcz", "Tocilizumab in 2023 for 6 months (completed).", ["E15"], E(E15="met"),
           changes={"meds": [lambda r: r.med_statement("tocilizumab", date(2023, 2, 1), date(2023, 8, 1),
                                                       dose=480, route=IV, period=4, period_unit="wk",
                                                       text="tocilizumab 8 mg/kg IV every 4 weeks")]}),
    Promis("excl-e16-pregnant", "28-year-old woman, pregnant (Condition Z33.1) with a positive serum hCG.",
           ["E16", "I7"], E(E16="met", I7="not-met"), age=28,
           changes={"hcg": True, "conditions": [("pregnant", d(-20))]}),
    Promis("excl-e16-lactating", "31-year-old woman breastfeeding (SNOMED 69840006), hCG negative.", ["E16"],
           E(E16="met"), age=31, changes={"conditions": [("lactating", d(-120))]}),
    Promis("excl-e17-malignancy", "Breast cancer diagnosed 2 years ago.", ["E17"], E(E17="met"), age=52,
           changes={"conditions": [("breast_ca", d(-730))]}),
    Promis("bnd-e17-bcc", "Basal cell carcinoma of the skin excised 2 years ago (excepted).", ["E17"], E(),
           age=55, changes={"conditions": [("bcc", d(-730), {"clinical": "resolved", "abatement": d(-700)})]},
           notes="Excepted if adequately treated with no recurrence: human confirms."),
    Promis("bnd-e17-old-cancer", "Thyroid carcinoma 7 years ago, cured (abatement 6.5 years ago).", ["E17"],
           E(), age=50, changes={"conditions": [("thyroid_ca", d(-2555),
                                                 {"clinical": "resolved", "abatement": d(-2370)})]}),
    # ---- other ------------------------------------------------------------------------------------------
    Promis("misc-deceased", "Candidate-like record but the patient died 5 days before screening.", ["deceased"],
           {"status": "ineligible"}, changes={"deceased": d(-5)}),
    Promis("misc-missing-labs", "Candidate-like record but the last blood tests are 120 days old (outside any "
           "screening look-back window).", ["E3a", "E3b", "E3c", "E3d", "E3e", "E3f", "E3g", "E3h"],
           E(E3a="unknown", E3b="unknown", E3c="unknown", E3d="unknown", E3e="unknown", E3f="unknown",
             E3g="unknown", E3h="unknown"), changes={"lab_day": d(-120)}),
    Promis("notdata-eie-wbc", "Candidate with a WBC of 1.5 entered-in-error the day after the valid WBC 5.2.",
           ["not data", "E3a"], E(), changes={"late": [
               lambda r: r.lab("wbc", d(-2), 1.5, "10*9/L", 2, status="entered-in-error")]}),
    Promis("notdata-refuted-tb", "Candidate with an active TB Condition that was refuted.", ["not data", "E5a"],
           E(), changes={"conditions": [("active_tb", d(-30), {"verification": "refuted"})]}),
    Promis("notdata-not-taken-rtx", "Candidate with a rituximab MedicationStatement marked not-taken.",
           ["not data", "E14.1"], E(),
           changes={"meds": [ms("rituximab", -60, -60, dose=500, route=IV, status="not-taken")]}),
    Promis("notdata-refuted-sulfa", "Candidate with a refuted sulfonamide allergy (still on TMP-SMX).",
           ["not data", "E10"], E(),
           changes={"allergies": [([(RXNORM, "10180", "sulfamethoxazole")], "sulfamethoxazole", "refuted")]}),
    # ---- data shaped like a real hospital's -----------------------------------------------------------------
    Promis("messy-jaki-rxnorm-product", "Tofacitinib 5 mg bid stopped 10 days before screening, coded only as the "
           "RxNorm clinical drug 'tofacitinib 5 MG Oral Tablet' (RxCUI 1357541), as hospitals send drugs.",
           ["E14.2", "product codes"], E(E14_2="met"),
           changes={"meds": [ms("tofacitinib_scd", -120, -10, dose=5, per_day=2, text="5 mg twice daily")]},
           notes="The product code maps to its ingredient tofacitinib, a JAK inhibitor."),
    Promis("messy-prednisone-medication", "Prednisone recorded through a formulary Medication with no product "
           "code, only its coded ingredient (prednisone 5 mg per tablet); 6 tablets once daily for 10 weeks.",
           ["I4", "Medication.ingredient", "dose from strength"], E(),
           changes={"gc": [], "gc_check": ("prednisone", None, None, 30.0),
                    "meds": [ms("prednisone_text_only", -70, dose=6, unit="tablet",
                                medication_ref=f"Medication/{PREDNISONE_MED_ID}", text="6 tablets once daily")]},
           notes="6 tablets x 5 mg = 30 mg/day = 0.517 mg/kg/day at 58 kg."),
    Promis("messy-mda5-level", "Anti-MDA5 reported as a level, 85 U/mL, beside the lab's cut-off 32 U/mL "
           "(referenceRange.high), with no positive/negative word and no interpretation flag.",
           ["I2", "quantitative result"], E(),
           changes={"mda5": None, "obs_extra": [lambda r: r.obs(
               "mda5", d(-148), value={"valueQuantity": quantity(85, "[U]/mL")},
               ref={"high": quantity(32, "[U]/mL")})]},
           notes="85 is above the assay cut-off 32: positive."),
    Promis("messy-mda5-level-no-cutoff", "Anti-MDA5 reported only as '> 150 U/mL', with no reference range and no "
           "interpretation: the lab's cut-off is not on the result.", ["I2", "quantitative result"],
           E(I2="unknown"),
           changes={"mda5": None, "obs_extra": [lambda r: r.obs(
               "mda5", d(-148), value={"valueQuantity": {**quantity(150, "[U]/mL"), "comparator": ">"}})]},
           notes="Assays differ in their cut-off; without the lab's, a number is not read as positive."),
    Promis("messy-lymph-percent", "No absolute lymphocyte count: lymphocytes 8% of a WBC of 4.0 x10^9/L from the "
           "same draw.", ["E3c", "derived value"], E(E3c="met"),
           changes={"labs": {"wbc": 4.0, "neut": 3.4}, "omit_labs": ["lymph"],
                    "late": [lambda r: r.obs("lymph_pct", d(-3), value={"valueQuantity": quantity(8, "%")})]},
           notes="8% x 4.0 = 0.32 x10^9/L < 0.5: derived from the same draw (same time, no specimen named)."),
    Promis("messy-lymph-percent-ok", "No absolute lymphocyte count: lymphocytes 25% of a WBC of 5.2 x10^9/L from "
           "the same draw.", ["E3c", "derived value"], E(),
           changes={"omit_labs": ["lymph"],
                    "late": [lambda r: r.obs("lymph_pct", d(-3), value={"valueQuantity": quantity(25, "%")})]},
           notes="25% x 5.2 = 1.3 x10^9/L: not < 0.5."),
    Promis("messy-hbsag-grey-zone", "HBsAg reported as a signal-to-cutoff ratio, 0.95 S/CO, inside the lab's "
           "grey zone 0.90-1.00 (referenceRange low and high).", ["E6", "quantitative result"], E(E6="unknown"),
           changes={"serology": {"hbsag": None}, "obs_extra": [lambda r: r.obs(
               "hbsag", d(-10), value={"valueQuantity": quantity(0.95, "{s_co_ratio}")},
               ref={"low": quantity(0.9, "{s_co_ratio}"), "high": quantity(1.0, "{s_co_ratio}"),
                    "text": "0.90-1.00 grey zone: retest"})]},
           notes="A grey-zone result is neither positive nor negative: unknown, retest."),
    Promis("messy-igra-components", "QuantiFERON-TB Gold Plus sent only as its four numbers (Nil 0.08, TB1-Nil "
           "0.71, TB2-Nil 0.52, Mitogen-Nil 6.4 IU/mL), no overall result; no preventive therapy.",
           ["E5b", "IGRA components"], E(E5b="met"),
           changes={"serology": {"igra": None}, "obs_extra": [
               lambda r: [r.obs(k, d(-10), value={"valueQuantity": quantity(v, "[IU]/mL")})
                          for k, v in (("igra_nil", 0.08), ("igra_tb1", 0.71), ("igra_tb2", 0.52),
                                       ("igra_mitogen", 6.4))]]},
           notes="QFT-Plus rule: TB1-Nil 0.71 >= 0.35 IU/mL and >= 25% of Nil, Nil <= 8.0: positive."),
    Promis("messy-igra-one-number", "Only one QuantiFERON number on file: TB1-Nil 0.71 IU/mL (no Nil, TB2 or "
           "Mitogen, no overall result).", ["E5b", "IGRA components"], E(E5b="unknown"),
           changes={"serology": {"igra": None}, "obs_extra": [
               lambda r: r.obs("igra_tb1", d(-10), value={"valueQuantity": quantity(0.71, "[IU]/mL")})]},
           notes="An IGRA is never read from one number."),
    # ---- decoys (not from the template) -----------------------------------------------------------------
    Promis("decoy-ra-tofacitinib", "Rheumatoid arthritis on tofacitinib and methotrexate; no myositis.",
           ["I2", "T1"], {"I2": "not-met", "E14.2": "met", "E14.3": "met", "status": "ineligible"},
           gender="female", age=57, template=False, changes={"decoy": _decoy_ra},
           notes="Not an NCT04966884 patient either (no anti-MDA5 DM) although tofacitinib is active."),
    Promis("decoy-sle-mmf", "SLE on mycophenolate, anti-MDA5 negative, lymphopenic.", ["I2"],
           {"I2": "not-met", "E14.3": "met", "status": "ineligible"}, age=33, template=False,
           changes={"decoy": _decoy_sle}),
    Promis("decoy-ipf", "Idiopathic pulmonary fibrosis (WHO J84.1 only), no myositis.", ["I2"],
           {"I2": "not-met", "status": "ineligible"}, gender="male", age=62, template=False,
           changes={"decoy": _decoy_ipf}),
    Promis("decoy-dm-mda5neg-noild", "Classic anti-MDA5-negative DM (CK 2400) without ILD, on methotrexate.",
           ["I2", "T1"], {"I2": "not-met", "E14.3": "met", "status": "ineligible"}, age=45, template=False,
           changes={"decoy": _decoy_dm_neg}),
]
