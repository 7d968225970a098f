"""The name index: which concepts a free text names (for records whose codes map to nothing)."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest

from fhir_adapter.errors import ConfigError
from fhir_adapter.paths import data_dir
from fhir_adapter.terminology.catalog import Catalog, read_names
from fhir_adapter.terminology.names import NameIndex, normalize

# names shared by two targets on purpose: the same test reported two ways, a concept and its own class...
SHARED = {
    frozenset({("concept", "anti-mda5"), ("concept", "anti-mda5-level")}),
    frozenset({("concept", "hbv-dna-copies"), ("concept", "hbv-dna-iu")}),
    frozenset({("concept", "amyopathic-dm"), ("concept", "dermatomyositis")}),
    frozenset({("concept", "excepted-skin-cancer"), ("concept", "malignancy")}),
    frozenset({("class", "jak-inhibitor"), ("concept", "jak-inhibitor-unspecified")}),
    frozenset({("class", "sulfonamide"), ("concept", "sulfonamide-allergy")}),
}


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return Catalog.load()


def concepts(catalog: Catalog, text: str) -> set[str]:
    return set(catalog.names.named(text).concepts)


def test_normalize_folds_width_case_punctuation_and_spaces_by_cjk():
    full_width = "".join(chr(ord(c) + 0xFEE0) for c in "PREDNISONE(5mg)")  # as Chinese input methods type it
    assert normalize(full_width) == "prednisone 5mg"
    assert normalize("Gottron\u2019s papules") == normalize("Gottron's papules") == "gottron papules"
    assert normalize("他克莫司 胶囊 1mg") == "他克莫司胶囊1mg"
    assert normalize("FVC占预计值%") == "fvc占预计值pct"


@pytest.mark.parametrize("text, expected", [
    ("prednisone 5 mg tablet", {"prednisone"}),
    ("prednisolone 5 mg tablet", {"prednisolone"}),
    ("methylprednisolone sodium succinate 40 MG Injection", {"methylprednisolone"}),
    ("Hydrocortisone 10 mg", {"hydrocortisone"}),
    ("cortisone acetate", {"cortisone"}),
    ("醋酸泼尼松片 5mg", {"prednisone"}),
    ("泼尼松龙片", {"prednisolone"}),
    ("注射用甲泼尼龙琥珀酸钠", {"methylprednisolone"}),
    ("氢化可的松注射液", {"hydrocortisone"}),
    ("他克莫司胶囊 1mg", {"tacrolimus"}),
    ("枸橼酸托法替布片", {"tofacitinib"}),
    ("复方磺胺甲噁唑片", {"tmp-smx"}),
    ("Gottron's papules", {"gottron-papules"}),
    ("间质性肺炎", {"ild"}),
    ("社区获得性肺炎", {"pneumonia"}),
    ("肌酸激酶 CK", {"ck"}),
    ("CK-MB", set()),
    ("肌酸激酶同工酶", set()),
    ("尿白细胞", set()),
    ("白细胞计数 WBC", {"wbc"}),
    ("Hemoglobin A1c/Hemoglobin.total in Blood", set()),
    ("omeprazole 20 mg capsule", set()),
    ("calcium carbonate 600 MG Oral Tablet", set()),
])
def test_names_in_texts(catalog, text, expected):
    assert concepts(catalog, text) == expected


def test_prednisone_and_prednisolone_never_name_each_other(catalog):
    assert "prednisone" not in concepts(catalog, "Prednisolone")
    assert "prednisolone" not in concepts(catalog, "Prednisone")
    assert "prednisone" not in concepts(catalog, "泼尼松龙")
    assert "prednisolone" not in concepts(catalog, "甲泼尼龙")


def test_a_latin_name_matches_whole_words_even_beside_cjk(catalog):
    assert concepts(catalog, "抗MDA5抗体定性") >= {"anti-mda5"}
    assert concepts(catalog, "CKD stage 3") == set()  # "CK" is not a word of it
    assert concepts(catalog, "WBCs") == set()


def test_class_names(catalog):
    named = catalog.names.named("糖皮质激素")
    assert named.classes == {"glucocorticoid"} and not named.concepts
    assert catalog.names.named("激素六项").classes == frozenset()  # "hormone" alone is not a glucocorticoid


def test_no_name_of_one_concept_is_read_as_another(catalog):
    """Every name in the index, matched as a text, gives exactly what it names: a name inside a longer name of
    another concept ("泼尼松" in "泼尼松龙", "respiratory failure" in "acute respiratory failure") never leaks, and
    a name given to two concepts is one of the known pairs."""
    wrong = []
    for name, targets in catalog.names.names():
        got = catalog.names.named(name)
        want_c = {i for k, i in targets if k == "concept"}
        want_k = {i for k, i in targets if k == "class"}
        if set(got.concepts) != want_c or set(got.classes) != want_k:
            wrong.append((name, sorted(targets), sorted(got.concepts), sorted(got.classes)))
        kept = frozenset(t for t in targets if t[0] != "unrelated")
        if len(kept) > 1 and kept not in SHARED:
            wrong.append((name, "shared by", sorted(kept)))
    assert wrong == []


def test_longest_match_wins_and_unrelated_phrases_hide_names():
    index = NameIndex([("CK", ("concept", "ck")), ("CK-MB", ("unrelated", "")), ("泼尼松", ("concept", "a")),
                       ("泼尼松龙", ("concept", "b"))])
    assert index.named("CK-MB 12 U/L").concepts == frozenset()
    assert index.named("CK 300 U/L; CK-MB 12").concepts == {"ck"}
    assert index.named("泼尼松龙 and 泼尼松").concepts == {"a", "b"}
    assert index.named("泼尼松龙").concepts == {"b"}


def test_named_texts_are_cached(catalog):
    index = NameIndex([("tacrolimus", ("concept", "tacrolimus"))])
    first = index.named("tacrolimus 1 mg")
    assert index.named("tacrolimus 1 mg") is first
    assert index.named_any(("x", "tacrolimus 1 mg")) is index.named_any(("x", "tacrolimus 1 mg"))


def test_names_file_is_checked(tmp_path):
    path = tmp_path / "names.json"
    path.write_text(json.dumps({"concepts": {"no-such-concept": ["x"]}, "classes": {"no-such-class": ["y"]}}),
                    encoding="utf-8")
    concepts_ = {c.id: c for c in Catalog.load().concepts()}
    _, errors = read_names(path, concepts_)
    assert any("no-such-concept" in e and "unknown concept id" in e for e in errors)
    assert any("no-such-class" in e for e in errors)
    path.write_text(json.dumps({"concepts": {"prednisone": [""]}}), encoding="utf-8")
    _, errors = read_names(path, concepts_)
    assert errors and "names.json" in errors[0]


def test_the_package_names_file_is_valid():
    _, errors = read_names(data_dir("mappings") / "names.json", {c.id: c for c in Catalog.load().concepts()})
    assert errors == []


def test_site_names_and_ignore(tmp_path):
    site = tmp_path / "site.json"
    site.write_text(json.dumps({"site": "t", "names": {"prednisone": ["强的松片剂X"]},
                                "ignore": [{"system": "http://h/drug", "code": "OME-20", "note": "omeprazole"},
                                           {"system": "http://h/drug", "prefix": "VIT-"}]}, ensure_ascii=False),
                    encoding="utf-8")
    catalog = Catalog.load(site)
    assert concepts(catalog, "强的松片剂X") == {"prednisone"}
    assert concepts(Catalog.load(), "强的松片剂X") == {"prednisone"}  # 强的松 is a package name already
    assert catalog.is_ignored({"coding": [{"system": "http://h/drug", "code": "OME-20"}]})
    assert catalog.is_ignored({"coding": [{"system": "http://h/drug", "code": "VIT-D3"}]})
    assert not catalog.is_ignored({"coding": [{"system": "http://h/drug", "code": "YP-1"}]})
    assert catalog.ignored_coding("http://h/drug", "OME-20") == "omeprazole"


@pytest.mark.parametrize("doc, message", [
    ({"site": "t", "names": {"no-such": ["x"]}}, "names['no-such']: unknown concept id"),
    ({"site": "t", "names": {"prednisone": ["--"]}}, "has no letters or digits"),
    ({"site": "t", "ignore": [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": "8640"}]},
     "ignore[0]: http://www.nlm.nih.gov/research/umls/rxnorm|8640 maps to 'prednisone'"),
    ({"site": "t", "codes": [{"concept": "ck", "system": "http://h/lab", "code": "CK"}],
      "ignore": [{"system": "http://h/lab", "code": "CK"}]}, "a mapped code cannot be ignored"),
    ({"site": "t", "ignore": [{"system": "http://h/lab"}]}, "ignore"),
])
def test_bad_site_names_and_ignores_name_the_entry(tmp_path, doc, message):
    site = tmp_path / "site.json"
    site.write_text(json.dumps(doc), encoding="utf-8")
    with pytest.raises(ConfigError) as e:
        Catalog.load(site)
    assert message in str(e.value) and str(site) in str(e.value)


def test_site_module_does_not_import_the_catalog():
    """The catalog merges what site.py reads: site.py never imports catalog.py, at the top or inside a function
    (no import circle)."""
    import fhir_adapter.terminology.site as site

    tree = ast.parse(Path(site.__file__).read_text(encoding="utf-8"))
    imported = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)} | {
        a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    assert "fhir_adapter.terminology.catalog" not in imported
    assert {"fhir_adapter.terminology.concept", "fhir_adapter.terminology.index"} <= imported
