"""Code systems, the sample's concepts (Observations, drugs, conditions, shared Medications) with their
standard and local codes, and small helpers for dates, codings and quantities."""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
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
    "lymph_pct": ("736-9", "Lymphocytes/100 leukocytes in Blood by Automated count", "CBC-LYMPH-PCT",
                  "淋巴细胞百分比", "laboratory"),
    "igra_nil": ("71776-9", "Gamma interferon background [Units/volume] in Blood by Immunoassay", "IMM-QFT-NIL",
                 "QFT 阴性对照管 Nil", "laboratory"),
    "igra_tb1": ("64084-7", "Mycobacterium tuberculosis stimulated gamma interferon release by CD4+ T-cells "
                 "[Units/volume] corrected for background in Blood", "IMM-QFT-TB1", "QFT TB1-Nil", "laboratory"),
    "igra_tb2": ("88517-8", "Mycobacterium tuberculosis stimulated gamma interferon release by CD4+ and CD8+ "
                 "T-cells [Units/volume] corrected for background in Blood", "IMM-QFT-TB2", "QFT TB2-Nil",
                 "laboratory"),
    "igra_mitogen": ("71774-4", "Mitogen stimulated gamma interferon [Units/volume] corrected for background in "
                     "Blood", "IMM-QFT-MITO", "QFT 阳性对照管 Mitogen-Nil", "laboratory"),
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
    "[IU]/mL": ("IU/mL", "[IU]/mL", 1.0), "[U]/mL": ("U/mL", "[U]/mL", 1.0),
    "{s_co_ratio}": ("S/CO", "{s_co_ratio}", 1.0), "mL/min/mm[Hg]": ("mL/min/mmHg", "mL/min/mm[Hg]", 1.0),
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
    # product-level codes, as hospitals mostly send them (RxNorm clinical drug, SCD): read as their ingredient
    "tofacitinib_scd": ([(RXNORM, "1357541", "tofacitinib 5 MG Oral Tablet")], "tofacitinib 5 MG Oral Tablet"),
    "prednisone_text_only": ([], "醋酸泼尼松片 5mg (prednisone acetate 5 mg tablet)"),
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
PREDNISONE_MED_ID = "med-prednisone-5mg-tablet"
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
                                                        "code": "TAB"}}}]}, {
    # a formulary item with no product code at all: only its ingredient is coded, with the strength per tablet
    "resourceType": "Medication", "id": PREDNISONE_MED_ID,
    "code": {"text": "醋酸泼尼松片 5mg"},
    "form": {"coding": [{"system": DOSE_FORM, "code": "TAB", "display": "Tablet"}]},
    "ingredient": [
        {"itemCodeableConcept": {"coding": [{"system": RXNORM, "code": "8640", "display": "prednisone"}]},
         "isActive": True, "strength": {"numerator": {"value": 5, "unit": "mg", "system": UCUM, "code": "mg"},
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
