"""Merged patients: which Patient is read as part of which (FHIR R4 Patient.link replaced-by / replaces)."""

from __future__ import annotations

from fhir_adapter.record.merged import Merges, combine, groups, links_of, resolve
from fhir_adapter.record.patient_record import PatientRecord, Unreadable


def patient(pid: str, *links: tuple[str, str]) -> dict:
    return {"resourceType": "Patient", "id": pid,
            "link": [{"other": {"reference": ref}, "type": kind} for kind, ref in links]}


def test_links_of_reads_both_directions_and_ignores_other_kinds() -> None:
    edges, problems = links_of(patient("a", ("replaced-by", "Patient/b"), ("seealso", "Patient/z"),
                                       ("replaces", "http://h.example/fhir/Patient/old/_history/3"),
                                       ("refer", "RelatedPerson/r")))
    assert edges == [("a", "b"), ("old", "a")] and problems == []


def test_links_of_names_what_it_cannot_follow() -> None:
    edges, problems = links_of(patient("a", ("replaced-by", "RelatedPerson/r"), ("replaced-by", "urn:uuid:nowhere"),
                                       ("replaced-by", "Patient/a")))
    assert edges == []
    assert len(problems) == 2 and "RelatedPerson/r does not name a Patient" in problems[0]
    # a urn resolves through the Bundle's fullUrls
    assert links_of(patient("a", ("replaced-by", "urn:uuid:1")), {"urn:uuid:1": "Patient/b"})[0] == [("a", "b")]


def test_chains_resolve_to_their_end() -> None:
    m = resolve([("a", "b"), ("b", "c"), ("x", "c")])
    assert m.into == {"a": "c", "b": "c", "x": "c"} and m.problems == {}
    assert m.members() == {"c": ["a", "b", "x"]}


def test_a_loop_merges_nothing_and_is_named() -> None:
    m = resolve([("a", "b"), ("b", "a"), ("z", "a"), ("p", "q")])
    assert m.into == {"p": "q"}
    assert set(m.problems) == {"a", "b", "z"}
    assert "a loop" in m.problems["a"] and "Patient/a -> Patient/b -> Patient/a" in m.problems["a"]


def test_a_patient_replaced_by_two_is_not_merged() -> None:
    m = resolve([("a", "b"), ("a", "c"), ("a", "b"), ("d", "a")])
    assert m.into == {} and "replaced by both Patient/b and Patient/c" in m.problems["a"]
    assert "whose links are not followed" in m.problems["d"]
    assert resolve([("a", "b"), ("a", "b")]).into == {"a": "b"}  # the same link twice (both directions) is one


def test_groups_reads_a_replaced_patient_with_its_survivor_when_the_survivor_is_there() -> None:
    m = resolve([("a", "c"), ("b", "c"), ("d", "e")])
    todo, notes = groups({"a", "b", "c", "d", "z"}, m, has_patient=lambda pid: True)
    assert todo == [("c", ["a", "b"]), ("d", []), ("z", [])]
    assert len(notes) == 1 and notes[0][0] == "d" and "Patient/e" in notes[0][1]
    todo, notes = groups({"a", "b", "c"}, m, has_patient=lambda pid: pid != "c")  # c only has resources
    assert todo == [("a", []), ("b", []), ("c", [])] and "not in the source" in notes[0][1]


def test_combine_merges_assembled_records() -> None:
    new = PatientRecord("c", {"resourceType": "Patient", "id": "c"}, {"Observation": [{"resourceType": "Observation",
                                                                                       "id": "o1"}]})
    old = PatientRecord("a", {"resourceType": "Patient", "id": "a"}, {"Condition": [{"resourceType": "Condition",
                                                                                     "id": "c1"}]},
                        unreadable=[Unreadable("Observation", "x line 1", "not JSON")])
    got = combine(new, [old])
    assert got is new and got.count() == 2 and got.merged == ["Patient/a"]
    assert got.unread(("Observation",)) and got.resolve({"reference": "Patient/a"}) is new.patient
    assert not Merges()
