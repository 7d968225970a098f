"""Merged patients: a Patient that ``link``s to another as ``replaced-by`` is read as part of the one that replaced it.

FHIR R4 Patient.link (https://hl7.org/fhir/R4/valueset-link-type.html): ``replaced-by`` "the patient resource
containing this link must no longer be used; the link points forward to another patient resource that must be
used in lieu of [it]"; ``replaces`` is the same merge seen from the surviving record. A hospital that merges two
charts keeps both resources, each with its own clinical resources, so screening them apart would give one person
two half records. Here each replaced Patient maps to the end of its chain (a -> b -> c: a and b to c); a
Patient replaced by two others, or a chain that loops, is not merged and the problem is named. Whether the
survivor is in the source is for the caller to see (its own records): a link to a Patient not in the source
leaves both apart, named.

``links_of`` reads one Patient; ``resolve`` turns every link of a source into ``Merges``; ``groups`` says, for the
patients a source grouped, which to assemble with which; ``combine`` merges records already assembled (a source
that reads patient by patient).
"""

from __future__ import annotations

from collections import ChainMap
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from fhir_adapter.record.patient_record import PatientRecord
from fhir_adapter.record.references import parse_reference, reference_of

REPLACED_BY, REPLACES = "replaced-by", "replaces"


def links_of(patient: dict[str, Any], aliases: Mapping[str, str] | None = None) -> tuple[list[tuple[str, str]],
                                                                                          list[str]]:
    """The merges one Patient states, as ``(replaced id, surviving id)`` pairs, and what could not be followed.

    ``patient`` has passed the shape check (``link`` is a list of objects). Links of other types (``refer``,
    ``seealso``) say nothing about merging and are not read."""
    pid = patient.get("id")
    edges: list[tuple[str, str]] = []
    problems: list[str] = []
    for link in patient.get("link") or ():
        kind = link.get("type")
        if kind not in (REPLACED_BY, REPLACES):
            continue
        ref = reference_of(link.get("other"))
        target = parse_reference(ref, aliases) if ref else None
        if not target or not target.startswith("Patient/"):
            problems.append(f"link {kind} {ref or 'without a reference'} does not name a Patient in the source; "
                            "not merged")
            continue
        other = target[8:]
        if other == pid:
            continue  # a link to itself merges nothing
        edges.append((pid, other) if kind == REPLACED_BY else (other, pid))
    return edges, problems


@dataclass
class Merges:
    """Which Patient is read as part of which. ``into``: replaced id -> surviving id (the end of its chain);
    ``problems``: Patient id -> why its links were not followed."""

    into: dict[str, str] = field(default_factory=dict)
    problems: dict[str, str] = field(default_factory=dict)

    def members(self) -> dict[str, list[str]]:
        """Surviving id -> the ids it replaces, sorted."""
        out: dict[str, list[str]] = {}
        for old, new in sorted(self.into.items()):
            out.setdefault(new, []).append(old)
        return out

    def __bool__(self) -> bool:
        return bool(self.into)


def resolve(edges: Iterable[tuple[str, str]]) -> Merges:
    """``Merges`` from ``(replaced, survivor)`` pairs, chains followed to their end.

    A Patient said to be replaced by two different Patients, and every Patient of a loop (or of a chain that runs
    into one), is left unmerged and named in ``problems``."""
    nxt: dict[str, str] = {}
    problems: dict[str, str] = {}
    for old, new in edges:
        if old in problems:
            continue
        prior = nxt.get(old)
        if prior is not None and prior != new:
            problems[old] = f"replaced by both Patient/{prior} and Patient/{new}; not merged"
            del nxt[old]
            continue
        nxt[old] = new
    into: dict[str, str] = {}
    for start in sorted(nxt):
        if start in into or start in problems:
            continue
        chain, seen, cur = [start], {start}, start
        while cur in nxt:
            cur = nxt[cur]
            if cur in seen or cur in problems:
                break
            chain.append(cur)
            seen.add(cur)
        else:  # the chain ends at a Patient that is replaced by no other: the survivor
            survivor = chain[-1]
            for old in chain[:-1]:
                into[old] = survivor
            continue
        path = " -> ".join(f"Patient/{p}" for p in [*chain, cur])
        why = "a loop" if cur in seen else f"Patient/{cur}, whose links are not followed"
        for p in chain:
            problems.setdefault(p, f"replaced-by links run into {why} ({path}); not merged")
    return Merges(into, problems)


def groups(pids: Collection[str], merges: Merges, has_patient: Callable[[str], bool]
           ) -> tuple[list[tuple[str, list[str]]], list[tuple[str, str]]]:
    """Of the patients ``pids`` a source grouped resources by: ``(pid, [replaced pids read with it])`` to assemble,
    in id order, and ``(pid, note)`` for the links not followed here. A replaced Patient whose survivor has no
    Patient resource in the source (``has_patient``: readable or not) is read on its own, and so is every one it
    replaced."""
    out: list[tuple[str, list[str]]] = []
    notes: list[tuple[str, str]] = []
    members = merges.members() if merges else {}
    for pid in sorted(pids):
        survivor = merges.into.get(pid)
        if survivor is not None:
            if survivor not in pids:
                notes.append((pid, f"Patient/{pid} is replaced by Patient/{survivor}, which is not in the source: "
                                   "read on its own"))
                out.append((pid, []))
            continue  # else read with its survivor
        olds = [o for o in members.get(pid, ()) if o in pids]
        if olds and not has_patient(pid):
            notes.append((pid, f"Patient/{pid} replaces {', '.join('Patient/' + o for o in olds)} but is not "
                               "in the source: each read on its own"))
            out.extend((o, []) for o in olds)
            olds = []
        out.append((pid, olds))
    return out, notes


def combine(survivor: PatientRecord, replaced: Iterable[PatientRecord]) -> PatientRecord:
    """The survivor's record with the resources of the records it replaces (a source that assembles each patient
    on its own). References to a replaced Patient resolve to the survivor. Duplicate resources are not merged
    (a file source merges before assembling, where duplicate ids are handled)."""
    extra: dict[str, str] = {}
    for old in replaced:
        for rtype, resources in old.resources.items():
            survivor.resources.setdefault(rtype, []).extend(resources)
        survivor.set_aside.extend(old.set_aside)
        survivor.unreadable.extend(old.unreadable)
        survivor.merged.append(old.reference)
        extra[old.reference] = survivor.reference
    if extra:
        survivor.aliases = ChainMap(extra, survivor.aliases)  # type: ignore[arg-type]
        survivor._index = None
    return survivor
