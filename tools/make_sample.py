#!/usr/bin/env python3
"""Write the built-in synthetic sample population (Bulk Data NDJSON) to ``fhir_adapter/sample/data``.

Every patient is invented. The population is driven by two tables: ``PROMIS`` (pre-screening scenarios for
NCT07377058, each a "candidate" template plus the one change that should decide the criterion it exercises)
and ``TOFA`` (NCT04966884 patients followed 12 months on tofacitinib, with the six IMACS core set measures).
The expected outcome of every scenario is written to ``scenarios.json``; the generator checks its own
arithmetic (TIS points, Cockcroft-Gault, prednisone mg/kg/day) against the hand-entered expectations.

Deterministic: no clock, no randomness except a seeded shuffle that interleaves patients in each file, so
running it twice gives byte-identical files.

    .venv/bin/python tools/make_sample.py [--out DIR]
"""

from __future__ import annotations

import argparse
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "fhir_adapter" / "sample" / "data"
SEED = 20260630
AS_OF = date(2026, 6, 30)  # screening date S; randomization R is assumed equal to S

LOINC = "http://loinc.org"
SCT = "http://snomed.info/sct"
ICD10CM = "http://hl7.org/fhir/sid/icd-10-cm"
ICD10 = "http://hl7.org/fhir/sid/icd-10"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
ATC = "http://www.whocc.no/atc"
UCUM = "http://unitsofmeasure.org"
MEASURES = "http://fhir-adapter.org/fhir/CodeSystem/myositis-measures"
LOCAL_LAB = "http://hospital.example.cn/CodeSystem/lab"
LOCAL_ASSESS = "http://hospital.example.cn/CodeSystem/assessment"
LOCAL_DRUG = "http://hospital.example.cn/CodeSystem/formulary"
LOCAL_DX = "http://hospital.example.cn/CodeSystem/icd10-cn-clinical"
LOCAL_PROC = "http://hospital.example.cn/CodeSystem/procedure"
OBS_CAT = "http://terminology.hl7.org/CodeSystem/observation-category"
INTERP = "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation"
COND_CLIN = "http://terminology.hl7.org/CodeSystem/condition-clinical"
COND_VER = "http://terminology.hl7.org/CodeSystem/condition-ver-status"
ACT_CODE = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
DOSE_FORM = "http://terminology.hl7.org/CodeSystem/v3-orderableDrugForm"
HTEST = {"system": "http://terminology.hl7.org/CodeSystem/v3-ActReason", "code": "HTEST",
         "display": "test health data"}
SAMPLE_TAG = {"system": "http://fhir-adapter.org/fhir/CodeSystem/sample", "code": "sample"}
TYPES = ["Medication", "Patient", "Encounter", "Condition", "Observation", "MedicationStatement",
         "MedicationRequest", "MedicationAdministration", "AllergyIntolerance", "DiagnosticReport", "Procedure"]

ORAL = (SCT, "26643006", "Oral route")
IV = (SCT, "47625008", "Intravenous route")
POS = {"coding": [{"system": SCT, "code": "10828004", "display": "Positive"}], "text": "Positive"}
NEG = {"coding": [{"system": SCT, "code": "260385009", "display": "Negative"}], "text": "Negative"}

# ---------------------------------------------------------------------------------------------------------
# Observation concepts: key -> (LOINC or None, LOINC display, local code, local display, category)
# ---------------------------------------------------------------------------------------------------------
OBS: dict[str, tuple[str | None, str, str, str, str]] = {
    "wbc": ("26464-8", "Leukocytes [#/volume] in Blood", "CBC-WBC", "白细胞计数 WBC", "laboratory"),
    "neut": ("26499-4", "Neutrophils [#/volume] in Blood", "CBC-NEUT", "中性粒细胞绝对值", "laboratory"),
    "lymph": ("26474-7", "Lymphocytes [#/volume] in Blood", "CBC-LYMPH", "淋巴细胞绝对值", "laboratory"),
    "hb": ("718-7", "Hemoglobin [Mass/volume] in Blood", "CBC-HGB", "血红蛋白 Hb", "laboratory"),
    "plt": ("26515-7", "Platelets [#/volume] in Blood", "CBC-PLT", "血小板计数", "laboratory"),
    "alt": ("1742-6", "Alanine aminotransferase [Enzymatic activity/volume] in Serum or Plasma", "CHEM-ALT",
            "丙氨酸氨基转移酶 ALT", "laboratory"),
    "ast": ("1920-8", "Aspartate aminotransferase [Enzymatic activity/volume] in Serum or Plasma", "CHEM-AST",
            "天门冬氨酸氨基转移酶 AST", "laboratory"),
    "bili": ("14631-6", "Bilirubin.total [Moles/volume] in Serum or Plasma", "CHEM-TBIL", "总胆红素",
             "laboratory"),
    "bili_mass": ("1975-2", "Bilirubin.total [Mass/volume] in Serum or Plasma", "CHEM-TBIL", "总胆红素",
                  "laboratory"),
    "creat": ("14682-9", "Creatinine [Moles/volume] in Serum or Plasma", "CHEM-CREA", "肌酐", "laboratory"),
    "crcl": ("2164-2", "Creatinine renal clearance in 24 hour Urine and Serum or Plasma", "CHEM-CCR",
             "内生肌酐清除率", "laboratory"),
    "ck": ("2157-6", "Creatine kinase [Enzymatic activity/volume] in Serum or Plasma", "CHEM-CK", "肌酸激酶 CK",
           "laboratory"),
    "ldh": ("2532-0", "Lactate dehydrogenase [Enzymatic activity/volume] in Serum or Plasma", "CHEM-LDH",
            "乳酸脱氢酶 LDH", "laboratory"),
    "aldolase": (None, "", "CHEM-ALD", "醛缩酶 Aldolase", "laboratory"),
    "ferritin": ("2276-4", "Ferritin [Mass/volume] in Serum or Plasma", "CHEM-FER", "铁蛋白", "laboratory"),
    "cd3": ("8122-4", "CD3 cells [#/volume] in Blood", "FCM-CD3", "CD3+ T细胞绝对计数", "laboratory"),
    "cd4": ("24467-3", "CD3+CD4+ (T4 helper) cells [#/volume] in Blood", "FCM-CD4", "CD4+ T细胞绝对计数",
            "laboratory"),
    "cd8": ("14135-8", "CD3+CD8+ (T8 suppressor cells) cells [#/volume] in Blood", "FCM-CD8",
            "CD8+ T细胞绝对计数", "laboratory"),
    "cd19": ("8116-6", "CD19 cells [#/volume] in Blood", "FCM-CD19", "CD19+ B细胞绝对计数", "laboratory"),
    "cd19_pct": ("8117-4", "CD19 cells/100 cells in Blood", "FCM-CD19P", "CD19+ B细胞百分比", "laboratory"),
    "nk": ("20402-4", "CD16+CD56+ cells [#/volume] in Blood", "FCM-NK", "NK细胞绝对计数", "laboratory"),
    "weight": ("29463-7", "Body weight", "VS-WT", "体重", "vital-signs"),
    "spo2": ("59408-5", "Oxygen saturation in Arterial blood by Pulse oximetry", "VS-SPO2", "指脉氧饱和度",
             "vital-signs"),
    "pao2": ("2703-7", "Oxygen [Partial pressure] in Arterial blood", "BG-PO2", "动脉血氧分压", "laboratory"),
    "fio2": ("3150-0", "Inhaled oxygen concentration", "BG-FIO2", "吸入氧浓度", "laboratory"),
    "fvc": ("19870-5", "Forced vital capacity [Volume] Respiratory", "PFT-FVC", "用力肺活量 FVC", "exam"),
    "fvc_pct": ("19872-1", "Forced vital capacity [Volume] Respiratory measured/predicted",
                "PFT-FVCP", "FVC占预计值%", "exam"),
    "dlco_pct": ("98130-8", "Diffusion capacity.carbon monoxide/Predicted", "PFT-DLCOP", "DLCO占预计值%", "exam"),
    "dlco": ("19911-7", "Carbon monoxide diffusing capacity", "PFT-DLCO", "一氧化碳弥散量 DLCO", "exam"),
    "dlco_pred": ("19910-9", "Carbon monoxide diffusing capacity predicted", "PFT-DLCOPRED", "DLCO预计值", "exam"),
    "hbsag": ("5196-1", "Hepatitis B virus surface Ag [Presence] in Serum by Immunoassay", "SER-HBSAG",
              "乙肝表面抗原", "laboratory"),
    "hbeag": ("13954-3", "Hepatitis B virus e Ag [Presence] in Serum", "SER-HBEAG", "乙肝e抗原", "laboratory"),
    "antihbc": ("16933-4", "Hepatitis B virus core Ab [Presence] in Serum", "SER-HBCAB", "乙肝核心抗体",
                "laboratory"),
    "hbvdna": ("29615-2", "Hepatitis B virus DNA [#/volume] (viral load) in Serum or Plasma by NAA with probe "
               "detection", "MOL-HBVDNA", "乙肝病毒DNA定量", "laboratory"),
    "hbvdna_iu": ("42595-9", "Hepatitis B virus DNA [Units/volume] (viral load) in Serum or Plasma by NAA with "
                  "probe detection", "MOL-HBVDNA-IU", "乙肝病毒DNA定量(IU)", "laboratory"),
    "antihcv": ("16128-1", "Hepatitis C virus Ab [Presence] in Serum", "SER-HCVAB", "丙肝抗体", "laboratory"),
    "hiv": ("56888-1", "HIV 1+2 Ab+HIV1 p24 Ag [Presence] in Serum or Plasma by Immunoassay", "SER-HIV",
            "HIV抗原抗体联合检测", "laboratory"),
    "igra": ("71773-6", "Mycobacterium tuberculosis stimulated gamma interferon [Presence] in Blood",
             "IMM-QFT", "结核感染T细胞检测(QFT)", "laboratory"),
    "tspot": (None, "", "IMM-TSPOT", "T-SPOT.TB 结核感染T细胞斑点试验", "laboratory"),
    "hcg": ("2118-8", "Choriogonadotropin (pregnancy test) [Presence] in Serum or Plasma", "SER-HCG",
            "血清hCG定性", "laboratory"),
    "mda5": ("107563-9", "Melanoma differentiation-associated gene 5 Ab [Presence] in Serum or Plasma",
             "IMM-MDA5", "抗MDA5抗体", "laboratory"),
    "jo1": ("5234-0", "Jo-1 extractable nuclear Ab [Presence] in Serum", "IMM-JO1", "抗Jo-1抗体", "laboratory"),
}
# measure key -> (code in the adapter's CodeSystem, display, local code, local display, category)
MEASURE_CODES: dict[str, tuple[str, str, str, str, str]] = {
    "phga": ("phga-vas", "Physician global activity VAS", "RHEUM-PGA", "医生总体评估VAS", "exam"),
    "ptga": ("ptga-vas", "Patient global activity VAS", "RHEUM-PTGA", "患者总体评估VAS", "survey"),
    "mmt8": ("mmt8", "Manual muscle testing MMT-8", "RHEUM-MMT8", "徒手肌力测定MMT-8", "exam"),
    "haq": ("haq-di", "HAQ disability index", "RHEUM-HAQ", "HAQ-DI 健康评估问卷", "survey"),
    "extra": ("mdaat-extramuscular-vas", "MDAAT extramuscular global activity VAS", "RHEUM-EXTRA",
              "肌外疾病活动度VAS", "exam"),
    "myoact": ("myoact-total", "MYOACT total score", "RHEUM-MYOACT", "MYOACT总分", "exam"),
    "myoact_cut": ("myoact-cutaneous", "MYOACT cutaneous VAS", "RHEUM-MYOACT-SKIN", "MYOACT皮肤VAS", "exam"),
    "myoact_pulm": ("myoact-pulmonary", "MYOACT pulmonary VAS", "RHEUM-MYOACT-LUNG", "MYOACT肺VAS", "exam"),
}

# unit key -> (unit text, UCUM code or None when the hospital sends no code, factor from the canonical unit)
UNITS: dict[str, tuple[str, str | None, float]] = {
    "10*9/L": ("10*9/L", "10*9/L", 1.0), "x10^9/L": ("\u00d710^9/L", None, 1.0), "10*3/uL": ("10*3/uL", "10*3/uL", 1.0),
    "g/L": ("g/L", "g/L", 1.0), "g/dL": ("g/dL", "g/dL", 0.1),
    "U/L": ("U/L", "U/L", 1.0), "ukat/L": ("ukat/L", "ukat/L", 1 / 60),
    "umol/L": ("umol/L", "umol/L", 1.0), "μmol/L": ("μmol/L", None, 1.0),
    "bili mg/dL": ("mg/dL", "mg/dL", 1 / 17.1), "creat mg/dL": ("mg/dL", "mg/dL", 1 / 88.4),
    "mm[Hg]": ("mmHg", "mm[Hg]", 1.0), "kPa": ("kPa", "kPa", 1 / 7.5006),
    "kg": ("kg", "kg", 1.0), "[lb_av]": ("lb", "[lb_av]", 1 / 0.45359237),
    "%": ("%", "%", 1.0), "L": ("L", "L", 1.0), "mL/min": ("mL/min", "mL/min", 1.0),
    "ng/mL": ("ng/mL", "ng/mL", 1.0), "/uL": ("cells/uL", "/uL", 1.0), "{copies}/mL": ("copies/mL", "{copies}/mL", 1.0),
    "[IU]/mL": ("IU/mL", "[IU]/mL", 1.0), "mL/min/mm[Hg]": ("mL/min/mmHg", "mL/min/mm[Hg]", 1.0),
    "cm": ("cm", "cm", 1.0), "mm": ("mm", "mm", 10.0), "{score}": ("{score}", "{score}", 1.0),
}
# reference ranges in the canonical unit (low, high)
REF: dict[str, tuple[float, float]] = {
    "wbc": (3.5, 9.5), "neut": (1.8, 6.3), "lymph": (1.1, 3.2), "hb": (115, 150), "plt": (125, 350),
    "alt": (9, 50), "ast": (15, 40), "bili": (3.4, 20.5), "creat": (45, 84), "ck": (38, 174), "ldh": (120, 250),
    "aldolase": (0, 7.6), "ferritin": (15, 150), "cd3": (770, 2041), "cd4": (414, 1123), "cd8": (238, 874),
    "cd19": (90, 560), "nk": (150, 1100),
}

# ---------------------------------------------------------------------------------------------------------
# Drugs: key -> codings (system, code, display) and a text
# ---------------------------------------------------------------------------------------------------------
DRUGS: dict[str, tuple[list[tuple[str, str, str]], str]] = {
    "prednisone": ([(RXNORM, "8640", "prednisone"), (ATC, "H02AB07", "prednisone")], "prednisone 5 mg tablet"),
    "methylprednisolone": ([(RXNORM, "6902", "methylprednisolone"), (ATC, "H02AB04", "methylprednisolone")],
                           "methylprednisolone"),
    "tacrolimus": ([(RXNORM, "42316", "tacrolimus"), (ATC, "L04AD02", "tacrolimus")], "tacrolimus 1 mg capsule"),
    "cyclosporine": ([(RXNORM, "3008", "cyclosporine"), (ATC, "L04AD01", "ciclosporin")],
                     "ciclosporin 25 mg capsule"),
    "tofacitinib": ([(RXNORM, "1357536", "tofacitinib"), (ATC, "L04AF01", "tofacitinib")],
                    "tofacitinib 5 mg tablet"),
    "baricitinib": ([(RXNORM, "2047232", "baricitinib"), (ATC, "L04AF02", "baricitinib")],
                    "baricitinib 2 mg tablet"),
    "tocilizumab": ([(RXNORM, "612865", "tocilizumab"), (ATC, "L04AC07", "tocilizumab")],
                    "tocilizumab 400 mg/20 mL injection"),
    "rituximab": ([(RXNORM, "121191", "rituximab"), (ATC, "L01FA01", "rituximab")],
                  "rituximab 500 mg/50 mL injection"),
    "ivig": ([(RXNORM, "5666", "immunoglobulin G"), (ATC, "J06BA02",
              "immunoglobulins, normal human, for intravascular adm.")], "human immunoglobulin (pH4) for IV use"),
    "methotrexate": ([(RXNORM, "6851", "methotrexate"), (ATC, "L04AX03", "methotrexate")],
                     "methotrexate 2.5 mg tablet"),
    "mmf": ([(ATC, "L04AA06", "mycophenolic acid")], "mycophenolate mofetil 500 mg tablet"),
    "isoniazid": ([(RXNORM, "6038", "isoniazid")], "isoniazid 300 mg tablet"),
    "rifampin": ([(RXNORM, "9384", "rifampin")], "rifampicin 150 mg capsule"),
    "ceftriaxone": ([(ATC, "J01DD04", "ceftriaxone")], "ceftriaxone 1 g for injection"),
    "hydroxychloroquine": ([(RXNORM, "5521", "hydroxychloroquine"), (ATC, "P01BA02", "hydroxychloroquine")],
                           "hydroxychloroquine 200 mg tablet"),
    "omeprazole": ([(RXNORM, "7646", "omeprazole")], "omeprazole 20 mg capsule"),
    # local formulary only (with text), as a Chinese hospital pharmacy sends them
    "tacrolimus_local": ([(LOCAL_DRUG, "YP-0231", "他克莫司胶囊 1mg")], "他克莫司胶囊 1mg (tacrolimus)"),
    "prednisone_local": ([(LOCAL_DRUG, "YP-0107", "醋酸泼尼松片 5mg")], "醋酸泼尼松片 5mg (prednisone acetate)"),
    "tofacitinib_local": ([(LOCAL_DRUG, "YP-0415", "枸橼酸托法替布片 5mg")], "枸橼酸托法替布片 5mg (tofacitinib)"),
    "tofacitinib_atc_old": ([(ATC, "L04AA29", "tofacitinib")], "tofacitinib 5 mg"),
    "tmpsmx_local": ([(LOCAL_DRUG, "YP-0562", "复方磺胺甲噁唑片")], "复方磺胺甲噁唑片 (SMZ 400 mg/TMP 80 mg)"),
}
TMPSMX_MED_ID = "med-smx400-tmp80-tablet"
SHARED_MEDICATIONS = [{
    "resourceType": "Medication", "id": TMPSMX_MED_ID,
    "code": {"coding": [{"system": RXNORM, "code": "198334",
                         "display": "sulfamethoxazole 400 MG / trimethoprim 80 MG Oral Tablet"},
                        {"system": ATC, "code": "J01EE01", "display": "sulfamethoxazole and trimethoprim"}],
             "text": "sulfamethoxazole 400 mg / trimethoprim 80 mg tablet"},
    "form": {"coding": [{"system": DOSE_FORM, "code": "TAB", "display": "Tablet"}]},
    "ingredient": [
        {"itemCodeableConcept": {"coding": [{"system": RXNORM, "code": "10180", "display": "sulfamethoxazole"}]},
         "isActive": True, "strength": {"numerator": {"value": 400, "unit": "mg", "system": UCUM, "code": "mg"},
                                        "denominator": {"value": 1, "unit": "tablet", "system": DOSE_FORM,
                                                        "code": "TAB"}}},
        {"itemCodeableConcept": {"coding": [{"system": RXNORM, "code": "10829", "display": "trimethoprim"}]},
         "isActive": True, "strength": {"numerator": {"value": 80, "unit": "mg", "system": UCUM, "code": "mg"},
                                        "denominator": {"value": 1, "unit": "tablet", "system": DOSE_FORM,
                                                        "code": "TAB"}}}]}]

# Condition concepts: key -> {"intl": [...codings], "who": [...], "local": [...]}, text
CONDS: dict[str, tuple[dict[str, list[tuple[str, str, str]]], str]] = {
    "dm": ({"intl": [(SCT, "396230008", "Dermatomyositis (disorder)"),
                     (ICD10CM, "M33.11", "Other dermatomyositis with respiratory involvement")],
            "who": [(ICD10, "M33.1", "Other dermatomyositis")],
            "local": [(LOCAL_DX, "M33.101", "抗MDA5抗体阳性皮肌炎"), (ICD10, "M33.1", "Other dermatomyositis")]},
           "Dermatomyositis"),
    "dm_noild": ({"intl": [(SCT, "396230008", "Dermatomyositis (disorder)"),
                           (ICD10CM, "M33.10", "Other dermatomyositis, organ involvement unspecified")],
                  "who": [(ICD10, "M33.1", "Other dermatomyositis")], "local": []}, "Dermatomyositis"),
    "cadm": ({"intl": [(SCT, "238935002", "Dermatomyositis sine myositis (disorder)"),
                       (ICD10CM, "M33.13", "Other dermatomyositis without myopathy")],
              "who": [(ICD10, "M33.1", "Other dermatomyositis")], "local": []},
             "Clinically amyopathic dermatomyositis"),
    "ild": ({"intl": [(SCT, "233703007", "Interstitial lung disease (disorder)"),
                      (ICD10CM, "J84.10", "Pulmonary fibrosis, unspecified")],
             "who": [(ICD10, "J84.1", "Other interstitial pulmonary diseases with fibrosis")],
             "local": [(LOCAL_DX, "J84.101", "间质性肺病"), (ICD10, "J84.1", "Other interstitial pulmonary diseases "
                                                                          "with fibrosis")]},
            "Interstitial lung disease"),
    "gottron": ({"intl": [], "who": [], "local": []}, "Gottron's papules over MCP and PIP joints"),
    "pm": ({"intl": [(SCT, "31384009", "Polymyositis (disorder)")],
            "who": [(ICD10, "M33.2", "Polymyositis")], "local": []}, "Polymyositis"),
    "overlap": ({"intl": [(ICD10CM, "M35.1", "Other overlap syndromes")],
                 "who": [(ICD10, "M35.1", "Other overlap syndromes")], "local": []},
                "Antisynthetase syndrome (anti-Jo-1), overlap myositis"),
    "nstemi": ({"intl": [(SCT, "401314000", "Acute non-ST segment elevation myocardial infarction"),
                         (ICD10CM, "I21.4", "Non-ST elevation (NSTEMI) myocardial infarction")],
                "who": [], "local": []}, "NSTEMI"),
    "stroke": ({"intl": [(ICD10, "I63.9", "Cerebral infarction, unspecified")], "who": [], "local": []},
               "Cerebral infarction (2019)"),
    "active_tb": ({"intl": [(SCT, "427099000", "Active tuberculosis (disorder)"),
                            (ICD10CM, "A15.0", "Tuberculosis of lung")], "who": [], "local": []},
                  "Active pulmonary tuberculosis"),
    "hiv": ({"intl": [(SCT, "86406008", "Human immunodeficiency virus infection (disorder)"),
                      (ICD10CM, "B20", "Human immunodeficiency virus [HIV] disease")], "who": [], "local": []},
            "HIV infection"),
    "pregnant": ({"intl": [(SCT, "77386006", "Pregnant (finding)"),
                           (ICD10CM, "Z33.1", "Pregnant state, incidental")], "who": [], "local": []},
                 "Pregnancy, 9 weeks"),
    "lactating": ({"intl": [(SCT, "69840006", "Normal breast feeding (finding)"),
                            (ICD10CM, "Z39.1", "Encounter for care and examination of lactating mother")],
                   "who": [], "local": []}, "Breastfeeding"),
    "breast_ca": ({"intl": [(SCT, "363346000", "Malignant neoplastic disease (disorder)"),
                            (ICD10CM, "C50.911", "Malignant neoplasm of unspecified site of right female breast")],
                   "who": [], "local": []}, "Breast cancer, right"),
    "bcc": ({"intl": [(SCT, "254701007", "Basal cell carcinoma of skin"),
                      (ICD10CM, "C44.91", "Basal cell carcinoma of skin, unspecified")], "who": [], "local": []},
            "Basal cell carcinoma of skin, excised"),
    "thyroid_ca": ({"intl": [(ICD10, "C73", "Malignant neoplasm of thyroid gland")], "who": [], "local": []},
                   "Papillary thyroid carcinoma, thyroidectomy"),
    "sulfa_z88": ({"intl": [(ICD10, "Z88.2", "Personal history of allergy to sulfonamides")], "who": [],
                   "local": []}, "磺胺类药物过敏史 (sulfonamide allergy history)"),
    "zoster": ({"intl": [(SCT, "4740000", "Herpes zoster (disorder)"), (ICD10CM, "B02.9", "Zoster without "
                                                                                          "complications")],
                "who": [], "local": []}, "Herpes zoster, thoracic dermatome"),
    "ra": ({"intl": [(SCT, "69896004", "Rheumatoid arthritis (disorder)"),
                     (ICD10CM, "M06.9", "Rheumatoid arthritis, unspecified")], "who": [], "local": []},
           "Rheumatoid arthritis"),
    "sle": ({"intl": [(SCT, "55464009", "Systemic lupus erythematosus (disorder)"),
                      (ICD10CM, "M32.9", "Systemic lupus erythematosus, unspecified")], "who": [], "local": []},
            "Systemic lupus erythematosus"),
    "ipf": ({"intl": [(ICD10, "J84.1", "Other interstitial pulmonary diseases with fibrosis")], "who": [],
             "local": []}, "Idiopathic pulmonary fibrosis"),
    "pneumonia": ({"intl": [(ICD10CM, "J18.9", "Pneumonia, unspecified organism")], "who": [], "local": []},
                  "Community-acquired pneumonia"),
}
DUR = timedelta


def d(days: int) -> date:
    """The date ``days`` before the screening date (negative = before)."""
    return AS_OF + DUR(days=days)


def dt(day: date, hh: int = 9) -> str:
    return f"{day.isoformat()}T{hh:02d}:30:00+08:00"


def coding(system: str, code: str, display: str) -> dict[str, str]:
    return {"system": system, "code": code, "display": display}


def cc(codings: list[tuple[str, str, str]], text: str) -> dict[str, Any]:
    out: dict[str, Any] = {"text": text}
    if codings:
        out = {"coding": [coding(*c) for c in codings], "text": text}
    return out


def quantity(value: float | int, unit_key: str) -> dict[str, Any]:
    text, code, _ = UNITS[unit_key]
    q: dict[str, Any] = {"value": value, "unit": text}
    if code is not None:
        q.update(system=UCUM, code=code)
    return q


def convert(canonical: float, unit_key: str, ndigits: int) -> float | int:
    v = round(canonical * UNITS[unit_key][2], ndigits)
    return int(v) if ndigits == 0 else v


# ---------------------------------------------------------------------------------------------------------
# One patient's resources
# ---------------------------------------------------------------------------------------------------------
@dataclass
class Rec:
    """Builds the resources of one patient with stable ids ``<pid>-<kind>-<n>``."""

    pid: str
    style: str = "intl"  # intl: LOINC+local labs, SNOMED+ICD-10-CM; who: WHO ICD-10/ATC; local: local codes only
    out: dict[str, list[dict[str, Any]]] = field(default_factory=lambda: {t: [] for t in TYPES})
    n: dict[str, int] = field(default_factory=dict)
    encounter: str | None = None

    def rid(self, kind: str) -> str:
        self.n[kind] = self.n.get(kind, 0) + 1
        return f"{self.pid}-{kind}{self.n[kind]:02d}"

    def add(self, rtype: str, body: dict[str, Any], kind: str) -> dict[str, Any]:
        res = {"resourceType": rtype, "id": self.rid(kind),
               "meta": {"tag": [HTEST, SAMPLE_TAG]}, **body}
        self.out[rtype].append(res)
        return res

    @property
    def subject(self) -> dict[str, str]:
        return {"reference": f"Patient/{self.pid}"}

    # --- Patient / Encounter ---------------------------------------------------------------------------
    def patient(self, birth: date, gender: str, deceased: date | None = None) -> None:
        label = self.pid.replace("-", " ").title()
        body: dict[str, Any] = {
            "resourceType": "Patient", "id": self.pid,
            "meta": {"tag": [HTEST, SAMPLE_TAG]},
            "text": {"status": "generated",
                     "div": f'<div xmlns="http://www.w3.org/1999/xhtml">SYNTHETIC test patient {self.pid}</div>'},
            "identifier": [{"system": "http://hospital.example.cn/mrn", "value": f"SYN-{self.pid}"}],
            "active": True,
            "name": [{"use": "official", "family": "Synthetic", "given": ["Test", label],
                      "text": f"Test {label} SYNTHETIC"}],
            "gender": gender, "birthDate": birth.isoformat()}
        if deceased is not None:
            body["deceasedDateTime"] = dt(deceased, 4)
        self.out["Patient"].append(body)

    def visit(self, day: date, inpatient: bool = False, days: int = 0,
              reason: tuple[list[tuple[str, str, str]], str] | None = None) -> str:
        cls = ("IMP", "inpatient encounter") if inpatient else ("AMB", "ambulatory")
        body: dict[str, Any] = {"status": "finished", "class": {"system": ACT_CODE, "code": cls[0], "display": cls[1]},
                                "subject": self.subject,
                                "period": {"start": dt(day, 8), "end": dt(day + DUR(days=days), 17)}}
        if reason:
            body["reasonCode"] = [cc(*reason)]
        res = self.add("Encounter", body, "enc")
        self.encounter = res["id"]
        return res["id"]

    # --- Observations --------------------------------------------------------------------------------------
    def _obs_code(self, key: str) -> tuple[dict[str, Any], str]:
        if key in MEASURE_CODES:
            code, disp, lcode, ldisp, cat = MEASURE_CODES[key]
            if self.style == "local":
                return cc([(LOCAL_ASSESS, lcode, ldisp)], ldisp), cat
            return cc([(MEASURES, code, disp)], disp), cat
        loinc, disp, lcode, ldisp, cat = OBS[key]
        codings = [(LOCAL_LAB, lcode, ldisp)]
        if loinc and self.style != "local":
            codings.append((LOINC, loinc, disp))
        return cc(codings, ldisp), cat

    def obs(self, key: str, when: date, *, value: dict[str, Any] | None = None, status: str = "final",
            interpretation: str | None = None, ref: dict[str, Any] | None = None, hh: int = 8,
            extra: dict[str, Any] | None = None) -> dict[str, Any]:
        code, cat = self._obs_code(key)
        body: dict[str, Any] = {
            "status": status,
            "category": [{"coding": [{"system": OBS_CAT, "code": cat}]}],
            "code": code, "subject": self.subject, "effectiveDateTime": dt(when, hh)}
        if self.encounter:
            body["encounter"] = {"reference": f"Encounter/{self.encounter}"}
        if value:
            body.update(value)
        if interpretation:
            body["interpretation"] = [{"coding": [{"system": INTERP, "code": interpretation}]}]
        if ref:
            body["referenceRange"] = [ref]
        if extra:
            body.update(extra)
        return self.add("Observation", body, "obs")

    def lab(self, key: str, when: date, canonical: float, unit: str, ndigits: int = 0,
            loinc_key: str | None = None, status: str = "final", ref_key: str | None = None) -> dict[str, Any]:
        """A quantitative lab: ``canonical`` in the canonical unit, written in ``unit`` with its reference range."""
        v = convert(canonical, unit, ndigits)
        ref = None
        rk = ref_key or key
        if rk in REF:
            lo, hi = REF[rk]
            rdig = max(ndigits, 2 if UNITS[unit][2] < 0.2 else ndigits)
            ref = {"low": quantity(convert(lo, unit, rdig), unit), "high": quantity(convert(hi, unit, rdig), unit)}
            flag = "H" if canonical > hi else "L" if canonical < lo else "N"
        else:
            flag = None
        return self.obs(loinc_key or key, when, value={"valueQuantity": quantity(v, unit)}, interpretation=flag,
                        ref=ref, status=status)

    def qual(self, key: str, when: date, positive: bool, status: str = "final") -> dict[str, Any]:
        return self.obs(key, when, value={"valueCodeableConcept": POS if positive else NEG},
                        interpretation="POS" if positive else "NEG", status=status)

    def measure(self, key: str, when: date, value: float, unit: str, high: float | None = None) -> None:
        ref = None
        if high is not None:
            ref = {"low": quantity(0, unit), "high": quantity(high, unit),
                   "text": f"0-{high:g} ({'MMT-8 unilateral, 8 groups' if high == 80 else 'MMT-8 bilateral'})"}
        self.obs(key, when, value={"valueQuantity": quantity(value, unit)}, ref=ref, hh=10)

    # --- Conditions, allergies, reports ------------------------------------------------------------------------
    def condition(self, key: str, onset: date, *, clinical: str = "active", verification: str = "confirmed",
                  abatement: date | None = None, style: str | None = None) -> None:
        systems, text = CONDS[key]
        codings = systems.get(style or self.style) or systems["intl"]
        body: dict[str, Any] = {
            "clinicalStatus": {"coding": [{"system": COND_CLIN, "code": clinical}]},
            "verificationStatus": {"coding": [{"system": COND_VER, "code": verification}]},
            "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-category",
                                      "code": "problem-list-item"}]}],
            "code": cc(codings, text), "subject": self.subject,
            "onsetDateTime": onset.isoformat(), "recordedDate": onset.isoformat()}
        if abatement:
            body["abatementDateTime"] = abatement.isoformat()
        self.add("Condition", body, "cond")

    def allergy(self, codings: list[tuple[str, str, str]], text: str, verification: str = "confirmed") -> None:
        self.add("AllergyIntolerance", {
            "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/"
                                                     "allergyintolerance-clinical", "code": "active"}]},
            "verificationStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/"
                                                         "allergyintolerance-verification", "code": verification}]},
            "type": "allergy", "category": ["medication"], "code": cc(codings, text), "patient": self.subject,
            "recordedDate": d(-400).isoformat(),
            "reaction": [{"manifestation": [cc([(SCT, "271807003", "Eruption of skin")], "rash")]}]}, "alg")

    def no_known_allergy(self) -> None:
        """An explicit "no known allergy" (SNOMED 716186003): the allergy list was taken and is empty, so an
        allergy missing from the record is absent rather than unknown (issue 4 item 3). Not an allergen."""
        self.add("AllergyIntolerance", {
            "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/"
                                                     "allergyintolerance-clinical", "code": "active"}]},
            "verificationStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/"
                                                         "allergyintolerance-verification", "code": "confirmed"}]},
            "code": cc([(SCT, "716186003", "No known allergy")], "No known allergy"), "patient": self.subject,
            "recordedDate": d(-400).isoformat()}, "alg")

    def report(self, text: str, when: date, normal: bool = False) -> None:
        body: dict[str, Any] = {
            "status": "final", "category": [cc([("http://terminology.hl7.org/CodeSystem/v2-0074", "RAD",
                                                 "Radiology")], "Radiology")],
            "code": cc([(LOCAL_PROC, "RAD-HRCT-CHEST", "胸部高分辨率CT")], "HRCT chest"),
            "subject": self.subject, "effectiveDateTime": dt(when, 14), "issued": dt(when, 18),
            "conclusion": text}
        if normal:
            body["conclusionCode"] = [cc([(SCT, "17621005", "Normal")], "Normal")]
        self.add("DiagnosticReport", body, "dr")

    def procedure(self, when: date, status: str = "completed", reason: str | None = None) -> None:
        body: dict[str, Any] = {"status": status,
                                "code": cc([(LOCAL_PROC, "PFT-FULL", "肺功能全套(通气+弥散)")],
                                           "Pulmonary function test, spirometry + DLCO"),
                                "subject": self.subject, "performedDateTime": dt(when, 11)}
        if reason:
            body["statusReason"] = {"text": reason}
        self.add("Procedure", body, "proc")

    # --- Medications ----------------------------------------------------------------------------------------
    def _dosage(self, dose: float | None, unit: str, per_day: int, route: tuple[str, str, str], text: str,
                period: int = 1, period_unit: str = "d") -> dict[str, Any]:
        dsg: dict[str, Any] = {"text": text}
        if per_day:
            dsg["timing"] = {"repeat": {"frequency": per_day, "period": period, "periodUnit": period_unit}}
        dsg["route"] = cc([route], route[2])
        if dose is not None:
            q = ({"value": dose, "unit": "mg", "system": UCUM, "code": "mg"} if unit == "mg" else
                 {"value": dose, "unit": "g", "system": UCUM, "code": "g"} if unit == "g" else
                 {"value": dose, "unit": unit, "system": DOSE_FORM, "code": "TAB" if unit == "tablet" else "CAP"})
            dsg["doseAndRate"] = [{"doseQuantity": q}]
        return dsg

    def med_statement(self, drug: str, start: date, end: date | None = None, *, dose: float | None = None,
                      unit: str = "mg", per_day: int = 1, route: tuple[str, str, str] = ORAL,
                      status: str | None = None, text: str | None = None, period: int = 1,
                      period_unit: str = "d", medication_ref: str | None = None,
                      text_only: bool = False) -> None:
        codings, drug_text = DRUGS[drug]
        if status is None:
            status = "active" if end is None or end >= AS_OF else "completed"
        eff: dict[str, str] = {"start": start.isoformat()}
        if end is not None:
            eff["end"] = end.isoformat()
        dtext = text or (f"{dose:g} {unit} x{per_day}/{period_unit}" if dose is not None else drug_text)
        body: dict[str, Any] = {"status": status}
        if medication_ref:
            body["medicationReference"] = {"reference": medication_ref, "display": drug_text}
        else:
            body["medicationCodeableConcept"] = cc(codings, drug_text)
        body.update(subject=self.subject, effectivePeriod=eff, dateAsserted=min(start, AS_OF).isoformat())
        body["dosage"] = [{"text": dtext} if text_only else
                          self._dosage(dose, unit, per_day, route, dtext, period, period_unit)]
        self.add("MedicationStatement", body, "ms")

    def med_statement_contained(self, start: date, caps: int, per_day: int, mg_per_cap: float = 1) -> None:
        """Tacrolimus as "1 capsule" with the strength in a contained Medication."""
        med = {"resourceType": "Medication", "id": "m1",
               "code": cc(DRUGS["tacrolimus"][0], "tacrolimus 1 mg capsule"),
               "form": {"coding": [{"system": DOSE_FORM, "code": "CAP", "display": "Capsule"}]},
               "ingredient": [{"itemCodeableConcept": cc([(RXNORM, "42316", "tacrolimus")], "tacrolimus"),
                               "isActive": True,
                               "strength": {"numerator": {"value": mg_per_cap, "unit": "mg", "system": UCUM,
                                                          "code": "mg"},
                                            "denominator": {"value": 1, "unit": "capsule", "system": DOSE_FORM,
                                                            "code": "CAP"}}}]}
        self.add("MedicationStatement", {
            "contained": [med], "status": "active", "medicationReference": {"reference": "#m1"},
            "subject": self.subject, "effectivePeriod": {"start": start.isoformat()},
            "dateAsserted": start.isoformat(),
            "dosage": [self._dosage(caps, "capsule", per_day, ORAL, f"{caps} capsule twice daily")]}, "ms")

    def med_request(self, drug: str, authored: date, dose: float, per_day: int, text: str,
                    status: str = "active") -> None:
        codings, drug_text = DRUGS[drug]
        self.add("MedicationRequest", {
            "status": status, "intent": "order", "medicationCodeableConcept": cc(codings, drug_text),
            "subject": self.subject, "authoredOn": authored.isoformat(),
            "dosageInstruction": [self._dosage(dose, "mg", per_day, ORAL, text)],
            "dispenseRequest": {"validityPeriod": {"start": authored.isoformat()}}}, "mr")

    def med_admin(self, drug: str, start: date, end: date | None, dose: float, unit: str, text: str) -> None:
        codings, drug_text = DRUGS[drug]
        eff = ({"effectivePeriod": {"start": dt(start, 9), "end": dt(end, 12)}} if end
               else {"effectiveDateTime": dt(start, 9)})
        self.add("MedicationAdministration", {
            "status": "completed", "medicationCodeableConcept": cc(codings, drug_text), "subject": self.subject,
            **eff,
            "dosage": {"text": text, "route": cc([IV], "IV"),
                       "dose": {"value": dose, "unit": unit, "system": UCUM, "code": unit}}}, "ma")


# ---------------------------------------------------------------------------------------------------------
# NCT07377058 (PROMIS-MDA5) pre-screening scenarios
# ---------------------------------------------------------------------------------------------------------
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
    gc_name, _, _, gc_mg = c.get("gc", [("prednisone", d(-70), None, 30.0)])[-1]
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


# ---------------------------------------------------------------------------------------------------------
# NCT04966884 (tofacitinib) follow-up scenarios and the TIS (clinical.md 1.2 / 1.4)
# ---------------------------------------------------------------------------------------------------------
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


# ---------------------------------------------------------------------------------------------------------
# Output
# ---------------------------------------------------------------------------------------------------------
def local_codes() -> list[dict[str, str]]:
    rows = []
    for key, (loinc, disp, lcode, ldisp, _) in sorted(OBS.items()):
        rows.append({"system": LOCAL_LAB, "code": lcode, "display": ldisp,
                     "concept": f"LOINC {loinc} {disp}" if loinc else key})
    for _key, (code, disp, lcode, ldisp, _) in MEASURE_CODES.items():
        rows.append({"system": LOCAL_ASSESS, "code": lcode, "display": ldisp, "concept": f"{MEASURES}|{code} {disp}"})
    for key, (codings, text) in DRUGS.items():
        for system, code, disp in codings:
            if system == LOCAL_DRUG:
                rows.append({"system": system, "code": code, "display": disp, "concept": f"{key}: {text}"})
    for key, (systems, _text) in CONDS.items():
        for system, code, disp in systems.get("local", []):
            if system == LOCAL_DX:
                rows.append({"system": system, "code": code, "display": disp,
                             "concept": f"{key}: China national clinical ICD-10 extension of WHO {code[:5]}"})
    rows.append({"system": LOCAL_PROC, "code": "RAD-HRCT-CHEST", "display": "胸部高分辨率CT",
                 "concept": "HRCT chest (DiagnosticReport)"})
    rows.append({"system": LOCAL_PROC, "code": "PFT-FULL", "display": "肺功能全套(通气+弥散)",
                 "concept": "pulmonary function test (Procedure)"})
    unique: dict[tuple[str, str], dict[str, str]] = {}
    for row in rows:
        unique.setdefault((row["system"], row["code"]), row)
    return list(unique.values())


def generate() -> tuple[dict[str, list[dict[str, Any]]], dict[str, Any]]:
    """All resources per type (patients interleaved) and the scenarios document."""
    per_patient: list[dict[str, list[dict[str, Any]]]] = []
    scenarios: list[dict[str, Any]] = []
    for p in PROMIS:
        per_patient.append(build_promis(p))
        scenarios.append({"id": p.pid, "story": p.story, "study": "NCT07377058", "exercises": p.exercises,
                          "expected": p.expected, **({"notes": p.notes} if p.notes else {})})
    baselines: dict[str, str] = {}
    for i, t in enumerate(TOFA):
        baseline = date(2025, 4, 7) + DUR(days=7 * i)
        baselines[t.pid] = baseline.isoformat()
        per_patient.append(build_tofa(t, baseline))
        tis = tis_expectation(t)
        scenarios.append({
            "id": t.pid, "story": t.story, "study": "NCT04966884",
            "exercises": ["T1", "T3", "T4", "R1", "R2", "R3", "R4", "R5", "R6"] + (["R7"] if t.events else []),
            "expected": {
                "T1": "met", "T3": "met", "baseline": baseline.isoformat(),
                "month12": (baseline + DUR(days=365)).isoformat(),
                "T4_mg_per_kg_day": round(t.pred_mg / t.weight, 3), "T4": "met",
                "tis": tis, "inactive_month12": t.inactive12,
                "safety_events": t.events,
                "secondary_baseline_month12": secondary(t),
                "NCT07377058": {"E14.2": "met", "status": "ineligible"}},
            **({"notes": t.notes} if t.notes else {})})
        assert 0.8 <= t.pred_mg / t.weight <= 1.0, t.pid
        assert baseline + DUR(days=365) <= AS_OF
    files: dict[str, list[dict[str, Any]]] = {t: [] for t in TYPES}
    files["Medication"].extend({**m, "meta": {"tag": [HTEST, SAMPLE_TAG]}}
                               for m in SHARED_MEDICATIONS)
    rng = random.Random(SEED)
    for rtype in TYPES:
        items = [res for out in per_patient for res in out[rtype]]
        rng.shuffle(items)
        files[rtype].extend(items)
    doc = {
        "description": "Expected outcomes of the built-in synthetic sample (see README.md). Derived by hand from "
                       "the protocol text and /work/shared/reference; the generator re-checks the arithmetic.",
        "as_of": AS_OF.isoformat(),
        "randomization_assumed": AS_OF.isoformat(),
        "screening_lab_lookback_days": 28,
        "outcome_values": {"met": "criterion satisfied (for an exclusion: the patient is excluded by it)",
                           "not-met": "criterion not satisfied (for an exclusion: not triggered)",
                           "unknown": "the data cannot decide it (missing, ambiguous, or needs a human)"},
        "status_values": {"candidate": "no criterion fails and every data-decidable criterion is decided; only "
                                       "human items (I6, I8, E18, review flags) remain",
                          "potential-candidate": "nothing fails but a data-decidable criterion is unknown",
                          "ineligible": "an inclusion is not-met or an exclusion is met, or the patient has "
                                        "died (Patient.deceasedDateTime)"},
        "human_only": {"I6": "future TMP-SMX obligation", "I8": "informed consent",
                       "E18": "investigator judgement: no data can trigger it"},
        "tofacitinib": {"baseline_dates": baselines, "visit_months": VISIT_MONTHS, "visit_days": VISIT_DAYS,
                        "enzyme_uln_U_per_L": ENZ_ULN, "ck_uln_ukat_per_L": round(174 / 60, 2),
                        "tis_rules": "clinical.md 1.2/1.4: VAS (b-f)/10x100; HAQ (b-f)/3x100; MMT (f-b)/max x100; "
                                     "enzyme (b-f)/b x100 for the enzyme most abnormal (x ULN) at baseline; bins "
                                     "x<=5 -> first, upper edge inclusive (MMT x<=2)",
                        "inactive_values": {"yes": "CK <= 200 U/L, physician VAS = 0 and MYOACT = 0 at month 12",
                                            "no": "at least one of the three fails",
                                            "unknown": "no component fails and one is missing"}},
        "local_codes": local_codes(),
        "patients": scenarios,
    }
    return files, doc


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=OUT)
    a = ap.parse_args(argv)
    a.out.mkdir(parents=True, exist_ok=True)
    files, doc = generate()
    total = 0
    for rtype, items in files.items():
        path = a.out / f"{rtype}.ndjson"
        if not items:
            path.unlink(missing_ok=True)
            continue
        path.write_bytes(b"".join(orjson.dumps(res) + b"\n" for res in items))
        total += len(items)
        print(f"{path.name:<34}{len(items):>6}")
    (a.out / "scenarios.json").write_bytes(orjson.dumps(doc, option=orjson.OPT_INDENT_2) + b"\n")
    print(f"{len(doc['patients'])} patients, {total} resources -> {a.out}")


if __name__ == "__main__":
    main()
