"""The concept catalog: loads and validates, covers every criterion's evidence, classifies codes by every system."""

from __future__ import annotations

import pytest

from fhir_adapter.terminology import Catalog
from fhir_adapter.terminology.catalog import read_catalog

LOINC = "http://loinc.org"
SCT = "http://snomed.info/sct"
CM = "http://hl7.org/fhir/sid/icd-10-cm"
WHO = "http://hl7.org/fhir/sid/icd-10"
RX = "http://www.nlm.nih.gov/research/umls/rxnorm"
ATC = "http://www.whocc.no/atc"
MEASURES = "http://fhir-adapter.org/fhir/CodeSystem/myositis-measures"

# Evidence concepts per criterion (criteria-tables.md, walked row by row). This table also documents the mapping.
CRITERIA: dict[str, tuple[str, ...]] = {
    "I1": ("body-weight",),
    "I2": ("dermatomyositis", "amyopathic-dm", "anti-mda5", "anti-mda5-level", "gottron-papules", "gottron-sign",
           "heliotrope-rash"),
    "I3": ("ild", "spo2", "pao2", "fvc-pct-predicted", "dlco-pct-predicted", "dlco", "dlco-predicted", "hrct-chest"),
    "I4": ("body-weight",),  # + class glucocorticoid
    "I5": (),  # class calcineurin-inhibitor, other-immunosuppressant
    "I6": ("tmp-smx",),
    "I7": ("hcg-serum", "hcg-urine", "hcg-quantitative"),
    "I8": (),  # consent: not in clinical data
    "E1": ("polymyositis", "antisynthetase-syndrome", "imnm", "overlap-myositis", "anti-jo1", "anti-pl7", "anti-pl12",
           "anti-srp", "anti-hmgcr", "sle", "systemic-sclerosis", "sjogren"),
    "E2": ("acute-coronary-syndrome", "old-myocardial-infarction", "cerebrovascular-disease"),
    "E3a": ("wbc",), "E3b": ("neutrophils",), "E3c": ("lymphocytes",), "E3d": ("hemoglobin",),
    "E3e": ("platelets",), "E3f": ("alt", "ast", "ck"), "E3g": ("bilirubin-total",),
    "E3h": ("creatinine-clearance", "creatinine-clearance-estimated", "creatinine", "egfr", "body-weight"),
    "E4": ("sepsis", "pneumonia", "pjp", "systemic-antibacterial"),
    "E5a": ("tuberculosis-active",),
    "E5b": ("igra-qft", "igra-ifn-gamma", "t-spot-tb", "latent-tuberculosis"),
    "E6": ("hbsag", "hbeag", "anti-hbc", "hbv-dna-copies", "hbv-dna-iu", "anti-hcv"),
    "E7": ("hiv", "hiv-serology"),
    "E8": ("ild", "dyspnea", "acute-respiratory-failure", "fio2", "o2-flow", "oxygen-therapy", "fvc-pct-predicted",
           "dlco-pct-predicted", "pao2", "pf-ratio", "hrct-chest"),
    "E9": ("tocilizumab",),
    "E10": ("sulfonamide-allergy", "sulfamethoxazole", "tmp-smx"),
    "E11": ("fvc", "dlco", "pulmonary-function-test"),
    "E12": ("body-weight",),
    "E13": ("immunoglobulin-iv", "immunoglobulin-sc"),
    "E14.1": ("rituximab",),
    "E14.2": ("tofacitinib", "baricitinib", "upadacitinib", "ruxolitinib"),
    "E14.3": ("anakinra", "adalimumab", "infliximab", "methotrexate", "azathioprine", "mycophenolate",
              "cyclophosphamide"),
    "E15": ("tocilizumab", "sarilumab", "siltuximab", "satralizumab"),
    "E16": ("pregnancy", "lactation", "hcg-serum", "hcg-urine", "pregnancy-status"),
    "E17": ("malignancy", "malignancy-history", "excepted-skin-cancer", "cervical-cis"),
    "E18": (),  # investigator judgement
    "T1": ("dermatomyositis", "amyopathic-dm", "anti-mda5", "anti-mda5-level"),
    "T2": (),  # Patient.birthDate
    "T3": ("tofacitinib",),
    "T4": ("body-weight",),
    "T5": (),  # classes below
    "R1": ("ck", "phga-vas", "myoact-total"),
    "R2": ("phga-vas", "ptga-vas", "mmt8", "haq-di", "mdaat-extramuscular-vas", "ck", "aldolase", "ldh", "alt", "ast"),
    "R3": ("fvc-pct-predicted",),
    "R4": ("dlco-pct-predicted", "dlco", "dlco-predicted", "dlco-hb-adjusted"),
    "R5": ("ferritin",),
    "R6": ("cd3-abs", "cd3-pct", "cd4-abs", "cd4-pct", "cd8-abs", "cd8-pct", "cd19-abs", "cd19-pct", "nk-abs",
           "nk-pct", "lymphocytes"),
    "R7": ("herpes-zoster", "pjp", "sepsis", "alt", "ast", "wbc", "neutrophils", "lymphocytes", "platelets"),
}
# value sets (criteria-tables.md "Useful value sets") used by criteria as classes
CLASSES: dict[str, tuple[str, ...]] = {
    "glucocorticoid": ("prednisone", "prednisolone", "methylprednisolone", "dexamethasone", "hydrocortisone"),
    "jak-inhibitor": ("tofacitinib", "baricitinib", "upadacitinib", "ruxolitinib", "filgotinib"),
    "il6-inhibitor": ("tocilizumab", "sarilumab", "siltuximab", "satralizumab"),
    "calcineurin-inhibitor": ("cyclosporine", "tacrolimus", "voclosporin"),
    "rituximab": ("rituximab",),
    "other-biologic": ("anakinra", "adalimumab", "infliximab", "etanercept"),
    "other-immunosuppressant": ("methotrexate", "azathioprine", "mycophenolate", "cyclophosphamide"),
    "ivig": ("immunoglobulin-iv",),
    "tmp-smx": ("tmp-smx",),
    "anti-tb": ("isoniazid", "rifampicin", "rifapentine", "pyrazinamide", "ethambutol"),
    "muscle-enzyme": ("ck", "aldolase", "ldh", "alt", "ast"),
    "tis-core-set": ("phga-vas", "ptga-vas", "mmt8", "haq-di", "mdaat-extramuscular-vas"),
    "malignancy-exception": ("excepted-skin-cancer", "cervical-cis"),
}


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return Catalog.load()


def ids(concepts) -> list[str]:
    return [c.id for c in concepts]


def test_loads_validates_and_is_cached(catalog):
    assert Catalog.load() is catalog
    fresh = read_catalog()  # uncached: re-reads and re-validates every file
    assert len(fresh.concepts()) == len(catalog.concepts()) > 150
    assert {c.kind for c in catalog.concepts()} >= {"quantity", "qualitative", "score", "condition", "drug"}


@pytest.mark.parametrize("criterion", sorted(CRITERIA))
def test_every_criterion_has_its_evidence_concepts(catalog, criterion):
    for concept_id in CRITERIA[criterion]:
        assert concept_id in catalog, f"{criterion}: no concept {concept_id!r}"


@pytest.mark.parametrize("class_id", sorted(CLASSES))
def test_value_sets(catalog, class_id):
    assert set(CLASSES[class_id]) <= set(ids(catalog.members(class_id)))


def test_value_sets_keep_cni_and_gc_out_of_other_immunosuppressants(catalog):
    others = set(ids(catalog.members("other-immunosuppressant")))
    assert not others & set(ids(catalog.members("calcineurin-inhibitor")))
    assert not others & set(ids(catalog.members("glucocorticoid")))


def test_quantities_and_scores_have_units_and_glucocorticoids_factors(catalog):
    for c in catalog.concepts():
        if c.kind in ("quantity", "score"):
            assert c.unit, c.id
        # budesonide and deflazacort have no verified prednisone factor (clinical.md §4.7): left out on purpose
        if "glucocorticoid" in c.classes and c.id not in ("budesonide", "deflazacort"):
            assert c.prednisone_factor, c.id
    assert catalog.concept("deflazacort").prednisone_factor is None
    assert catalog.concept("methylprednisolone").prednisone_factor == 1.25
    assert catalog.concept("dexamethasone").prednisone_factor == 6.67
    assert catalog.concept("hemoglobin").unit_factors == {"mmol/L": 16.1}
    assert catalog.concept("ferritin").unit_factors == {"pmol/L": 0.445}
    assert catalog.concept("bilirubin-total").unit_factors["umol/L"] == pytest.approx(1 / 17.1, rel=1e-3)
    assert catalog.concept("creatinine").unit_factors["umol/L"] == pytest.approx(1 / 88.4, rel=1e-2)
    assert catalog.concept("haq-di").scale == (0, 3)
    assert catalog.concept("phga-vas").unit == "cm"


def test_every_code_carries_status_and_source(catalog):
    for c in catalog.concepts():
        for e in c.codes:
            assert e.status in ("VERIFIED", "SECONDARY", "UNVERIFIED"), (c.id, e)
            assert e.source, (c.id, e)
            assert (e.code is None) != (e.prefix is None), (c.id, e)


def test_unknown_concept_id_is_a_config_error(catalog):
    from fhir_adapter.errors import ConfigError

    with pytest.raises(ConfigError, match="unknown concept id 'nope'"):
        catalog.concept("nope")
    assert catalog.get("nope") is None


@pytest.mark.parametrize("system, code, expected, not_expected", [
    (LOINC, "2157-6", {"ck"}, set()),
    (LOINC, "1761-6", {"aldolase"}, set()),
    (LOINC, "2532-0", {"ldh"}, set()),
    (LOINC, "19872-1", {"fvc-pct-predicted"}, set()),
    (LOINC, "107563-9", {"anti-mda5"}, set()),
    (SCT, "396230008", {"dermatomyositis"}, set()),
    (SCT, "238935002", {"dermatomyositis", "amyopathic-dm"}, set()),
    (SCT, "233703007", {"ild"}, set()),
    # M33.13 is amyopathic DM, and amyopathic DM is a dermatomyositis for I2/T1: both
    (CM, "M33.13", {"amyopathic-dm", "dermatomyositis"}, set()),
    (CM, "M33.10", {"dermatomyositis"}, {"amyopathic-dm"}),
    (CM, "M33.20", {"polymyositis"}, {"dermatomyositis"}),
    (CM, "M33.22", {"polymyositis"}, {"dermatomyositis"}),
    (CM, "J84.10", {"ild"}, set()),
    (CM, "J84.170", {"ild"}, set()),
    (CM, "M33.11", {"dermatomyositis", "ild"}, set()),
    (CM, "C44.91", {"excepted-skin-cancer", "malignancy"}, set()),
    (CM, "C44.311", {"excepted-skin-cancer", "malignancy"}, set()),
    (CM, "C44.99", {"malignancy"}, {"excepted-skin-cancer"}),
    (CM, "C43.9", {"malignancy"}, {"excepted-skin-cancer"}),
    (CM, "C4A.9", {"malignancy"}, {"excepted-skin-cancer"}),
    (CM, "I21.4", {"acute-coronary-syndrome"}, set()),
    (CM, "I63.9", {"cerebrovascular-disease"}, set()),
    (CM, "Z88.2", {"sulfonamide-allergy"}, set()),
    (CM, "O09.90", {"pregnancy"}, set()),
    (CM, "m3313", {"amyopathic-dm", "dermatomyositis"}, set()),  # ICD codes compare without dots and case
    (WHO, "M33.1", {"dermatomyositis"}, set()),
    (WHO, "M33.2", {"polymyositis"}, {"dermatomyositis"}),
    (WHO, "C73", {"malignancy"}, set()),
    (WHO, "B48.5", {"pjp"}, set()),
    (RX, "1357536", {"tofacitinib"}, set()),
    (RX, "198334", {"tmp-smx"}, set()),
    (ATC, "L04AF01", {"tofacitinib"}, {"jak-inhibitor-unspecified"}),
    (ATC, "L04AA29", {"tofacitinib"}, set()),  # old code
    (ATC, "L01XC02", {"rituximab"}, set()),  # old code
    (ATC, "L04AF99", {"jak-inhibitor-unspecified"}, set()),  # catch-all only when nothing else maps
    (ATC, "J01DD04", {"systemic-antibacterial"}, set()),
    (MEASURES, "phga-vas", {"phga-vas"}, set()),
    (MEASURES, "myoact-cardiac", {"myoact-cardiac"}, set()),
    ("urn:oid:2.16.840.1.113883.6.1", "2157-6", {"ck"}, set()),  # LOINC by OID
])
def test_classify_coding(catalog, system, code, expected, not_expected):
    got = set(ids(catalog.classify_coding(system, code)))
    assert expected <= got
    assert not (not_expected & got)


def test_codeable_concept_maps_when_any_coding_maps(catalog):
    cc = {"coding": [{"system": "http://hospital.example.cn/CodeSystem/lab", "code": "NOPE"},
                     {"system": LOINC, "code": "2276-4"}], "text": "铁蛋白"}
    assert ids(catalog.classify(cc)) == ["ferritin"]
    assert catalog.classify({"coding": [{"system": "http://x", "code": "1"}]}) == ()
    assert catalog.classify({"text": "Gottron's papules"}) == ()  # text alone never maps
    assert catalog.classify(None) == ()
    assert catalog.classify({"coding": [{"system": LOINC}]}) == ()


def test_catch_all_only_when_no_coding_maps(catalog):
    cc = {"coding": [{"system": RX, "code": "1357536"}, {"system": ATC, "code": "L04AF99"}]}
    assert ids(catalog.classify(cc)) == ["tofacitinib"]


def test_mmt8_scale_by_code(catalog):
    assert catalog.local_scale(MEASURES, "mmt8-150") == (0, 150)
    assert catalog.local_scale(MEASURES, "mmt8-80") == (0, 80)
    assert catalog.local_scale(MEASURES, "mmt8") is None


def test_importing_terminology_does_not_import_jsonschema():
    import subprocess
    import sys

    code = "import sys, fhir_adapter.terminology; print('jsonschema' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_classification_is_an_index_lookup(catalog):
    """Classifying asks the index once per coding and never scans the specs (speed: benchmarks/terminology.py)."""
    cc = {"coding": [{"system": "http://hospital.example.cn/CodeSystem/icd", "code": "X"},
                     {"system": CM, "code": "C44.311"}]}
    before = catalog.classify(cc)
    specs = catalog._specs
    catalog._specs = None  # a scan of the code entries would now fail
    try:
        assert catalog.classify(cc) == before and before
    finally:
        catalog._specs = specs
