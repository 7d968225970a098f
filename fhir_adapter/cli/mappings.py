"""Site mappings: check a site file, list the concepts a site can map to, find a source's unmapped codes and units.

  fhir-adapter mappings check [--site FILE]           validate the catalog and a site file (exit 0 valid, 1 not)
  fhir-adapter mappings concepts [--kind K]           every concept id a site can map to, with kind and unit
  fhir-adapter mappings unmapped --source SOURCE      codes and units of a source that map to nothing, with counts
      [--study ID --as-of YYYY-MM-DD]                 ranked by the criterion results they make unknown

Site file format: README "Site mappings"; schema mappings/schemas/site.schema.json.
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import orjson

from fhir_adapter.cli.common import (
    add_site_argument,
    add_source_arguments,
    catalog_from_args,
    iso_date,
    open_from_args,
)
from fhir_adapter.errors import ConfigError

KINDS = ("quantity", "qualitative", "score", "condition", "drug", "procedure", "finding")
UCUM = "http://unitsofmeasure.org"

# resource type -> the CodeableConcept elements whose codes the catalog should know
CODE_FIELDS: dict[str, tuple[str, ...]] = {
    "Observation": ("code",),
    "Condition": ("code",),
    "Procedure": ("code",),
    "AllergyIntolerance": ("code",),
    "DiagnosticReport": ("code",),
    "MedicationStatement": ("medicationCodeableConcept",),
    "MedicationRequest": ("medicationCodeableConcept",),
    "MedicationAdministration": ("medicationCodeableConcept",),
    "MedicationDispense": ("medicationCodeableConcept",),
    "Medication": ("code",),
}
DRUG_FIELDS = frozenset({"MedicationStatement", "MedicationRequest", "MedicationAdministration", "MedicationDispense",
                         "Medication"})


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    check = sub.add_parser("check", help="validate the package catalog and a site file; exit 1 with the errors",
                           description="Validate the concept catalog, the qualitative tables and (with --site) a "
                                       "site mappings file. Exit 0 when valid, 1 with every error otherwise.")
    add_site_argument(check)
    concepts = sub.add_parser("concepts", help="list every concept id a site can map to",
                              description="List the catalog's concepts: id, kind, canonical unit, display.")
    concepts.add_argument("--kind", choices=KINDS, help="only concepts of this kind")
    concepts.add_argument("--class", dest="class_id", metavar="CLASS", help="only members of this value set")
    concepts.add_argument("--format", choices=["table", "json"], default="table",
                          help="table (default): readable columns; json: one JSON document")
    add_site_argument(concepts)
    unmapped = sub.add_parser("unmapped", help="list a source's codes and units that map to nothing",
                              description="Read every resource of a source and list the codes (Observation, "
                                          "Condition, Procedure, AllergyIntolerance, DiagnosticReport and medication "
                                          "codes, Observation values) and the units that map to nothing, with "
                                          "counts, an example display and the concepts the display possibly "
                                          "names; codes the site file lists under 'ignore' are left out. With "
                                          "--study, the source is screened too and the codes are ranked by the "
                                          "criterion results their records made unknown (possible matches); "
                                          "without, codes that possibly name a concept come first. Exit 0 "
                                          "whenever the source was read.")
    unmapped.add_argument("--study", metavar="STUDY",
                          help="screen for this study and rank the codes by the criterion results they affect")
    unmapped.add_argument("--as-of", type=iso_date, metavar="YYYY-MM-DD",
                          help="with --study: the screening date (default: today)")
    add_source_arguments(unmapped)
    unmapped.add_argument("--format", choices=["table", "json"], default="table",
                          help="table (default): readable columns; json: one JSON document")
    unmapped.add_argument("--limit", type=int, default=0, metavar="N", help="show only the N most frequent rows")


def run(args: argparse.Namespace) -> int:
    return {"check": run_check, "concepts": run_concepts, "unmapped": run_unmapped}[args.action](args)


# -- check -----------------------------------------------------------------------------------------------------


def run_check(args: argparse.Namespace) -> int:
    from fhir_adapter.terminology.catalog import Catalog
    from fhir_adapter.terminology.qualitative import tables
    from fhir_adapter.terminology.site import check_site

    try:
        catalog = Catalog.load()
        tables()
        lines = [f"catalog: {len(catalog.concepts())} concepts, {len(catalog.specs())} codes "
                 f"({', '.join(catalog.files)})"]
        if args.site:
            site = check_site(args.site, catalog)
            lines.append(f"{args.site}: site {site.name!r}: {len(site.specs)} codes, {len(site.system_aliases)} "
                         f"system aliases, {len(site.units)} unit strings")
    except ConfigError as e:
        for line in str(e).splitlines():
            print(f"fhir-adapter: error: {line}", file=sys.stderr)
        return 1
    for line in lines:
        print(f"ok: {line}")
    return 0


# -- concepts --------------------------------------------------------------------------------------------------


def run_concepts(args: argparse.Namespace) -> int:
    catalog = catalog_from_args(args)
    concepts = catalog.members(args.class_id) if args.class_id else catalog.concepts(args.kind)
    if args.kind:
        concepts = tuple(c for c in concepts if c.kind == args.kind)
    if args.format == "json":
        rows = [{"id": c.id, "display": c.display, "kind": c.kind, "unit": c.unit,
                 "scale": list(c.scale) if c.scale else None, "classes": list(c.classes),
                 "codes": [f"{e.system}|{e.code if e.code is not None else e.prefix + '*'}" for e in c.codes]}
                for c in concepts]
        sys.stdout.buffer.write(orjson.dumps(rows, option=orjson.OPT_INDENT_2) + b"\n")
        return 0
    _table(["id", "kind", "unit", "display"],
           [[c.id, c.kind, c.unit or "", c.display + (f"  [{', '.join(c.classes)}]" if c.classes else "")]
            for c in concepts])
    return 0


# -- unmapped --------------------------------------------------------------------------------------------------


def _codings(cc: Any) -> Iterator[tuple[str, str, str]]:
    """(system, code, display) of each coding; ("", "", text) for a text-only CodeableConcept."""
    if not isinstance(cc, Mapping):
        return
    codings = [c for c in cc.get("coding") or () if isinstance(c, Mapping)]
    for c in codings:
        yield str(c.get("system") or ""), str(c.get("code") or ""), str(c.get("display") or cc.get("text") or "")
    if not codings and cc.get("text"):
        yield "", "", str(cc["text"])


def _read_as_drug(resource: Mapping[str, Any], cc: Any, catalog: Any) -> bool:
    """Whether an unmapped drug product is read all the same: its Medication's ingredients map, or its display is
    an RxNorm product name whose ingredients the catalog names (the screen reads those; nothing to map)."""
    if resource.get("resourceType") not in DRUG_FIELDS:
        return False
    from fhir_adapter.terminology.products import read_name

    if resource.get("resourceType") == "Medication":
        for ingredient in resource.get("ingredient") or ():
            if isinstance(ingredient, Mapping) and catalog.is_mapped(ingredient.get("itemCodeableConcept")):
                return True
    return any((found := read_name(catalog, display)) is not None and found.ingredients
               for _system, _code, display in _codings(cc))


def _unit_parser(catalog: Any) -> Callable[[str | None, str | None], str | None] | None:
    try:
        from fhir_adapter.terminology.units import parse_unit
    except ImportError:  # units.py not installed: units cannot be judged
        return None
    synonyms = catalog.unit_synonyms

    def parse(code: str | None, text: str | None) -> str | None:
        return parse_unit(code, text, synonyms)

    return parse


def scan(resources: Any, catalog: Any) -> dict[str, Any]:
    """Count the unmapped codes and units of ``(resource, where)`` pairs."""
    from fhir_adapter.terminology.qualitative import read_text, tables

    value_codes = tables().codes
    parse_unit = _unit_parser(catalog)
    codes: Counter[tuple[str, str, str, str]] = Counter()  # (field, system, code, text when there is no code)
    examples: dict[tuple[str, str, str, str], str] = {}
    units: Counter[tuple[str, str]] = Counter()
    unit_examples: dict[tuple[str, str], str] = {}
    n = 0

    def note(field: str, cc: Any, mapped: bool) -> None:
        if mapped or catalog.is_ignored(cc):
            return
        for system, code, display in _codings(cc):
            key = (field, system, code, "" if system or code else display)
            codes[key] += 1
            examples.setdefault(key, display)

    for resource, _where in resources:
        n += 1
        rtype = resource.get("resourceType", "")
        for name in CODE_FIELDS.get(rtype, ()):
            cc = resource.get(name)
            if cc:
                note(f"{rtype}.{name}", cc, catalog.is_mapped(cc) or _read_as_drug(resource, cc, catalog))
        if rtype != "Observation":
            continue
        for comp in resource.get("component") or ():
            if isinstance(comp, Mapping) and comp.get("code"):
                note("Observation.component.code", comp["code"], catalog.is_mapped(comp["code"]))
        vcc = resource.get("valueCodeableConcept")
        if isinstance(vcc, Mapping):
            mapped = any((s, c) in value_codes for s, c, _ in _codings(vcc)) or catalog.is_mapped(vcc) \
                or read_text(vcc.get("text"))[0] is not None
            note("Observation.valueCodeableConcept", vcc, mapped)
        vq = resource.get("valueQuantity")
        if parse_unit and isinstance(vq, Mapping) and (vq.get("unit") or vq.get("code")):
            code = vq.get("code") if vq.get("system") in (UCUM, None) else None
            if parse_unit(code, vq.get("unit")) is None:
                key = (str(vq.get("unit") or ""), str(vq.get("code") or ""))
                units[key] += 1
                if key not in unit_examples:
                    unit_examples[key] = next((d or f"{s}|{c}" for s, c, d in _codings(resource.get("code"))), "")
    return {
        "resources": n,
        "codes": [{"field": key[0], "system": key[1], "code": key[2], "count": k, "example": examples[key],
                   "possibly": possibly(catalog, examples[key])} for key, k in codes.most_common()],
        "units": [{"unit": u, "code": c, "count": k, "example": unit_examples[(u, c)]}
                  for (u, c), k in units.most_common()],
        "units_checked": parse_unit is not None,
    }


def possibly(catalog: Any, text: str) -> list[str]:
    """The concepts (and drug classes) a display or text names, by display (the name index)."""
    named = catalog.names.named(text)
    return sorted(catalog.concept(c).display for c in named.concepts) + sorted(named.classes)


def affected_results(source: Any, catalog: Any, study_id: str, as_of: Any, patients: Any,
                     step: Callable[[], None] | None = None) -> Counter[tuple[str, str]]:
    """(system, code) -> the criterion results that records with this code made unknown or flagged, screening
    every patient of the source for ``study_id`` on ``as_of`` (``step`` called after each patient)."""
    from fhir_adapter.studies.definition import load_study
    from fhir_adapter.studies.screen import screen
    from fhir_adapter.studies.unmapped import UnmappedTally

    study = load_study(study_id)

    def one(record: Any) -> Counter[tuple[str, str]]:
        tally = UnmappedTally()
        screen(record, study, catalog, as_of, as_of, None, tally)
        return tally.affected

    total: Counter[tuple[str, str]] = Counter()
    for found in source.map_records(one, patients):
        total.update(found)
        if step is not None:
            step()
    return total


def run_unmapped(args: argparse.Namespace) -> int:
    from datetime import date

    catalog = catalog_from_args(args)
    affected: Counter[tuple[str, str]] | None = None
    from fhir_adapter.cli.progress import Progress, counted, estimate_patients

    with open_from_args(args) as source:
        result = scan(counted(source.resources(), Progress("unmapped: reading", unit="resources",
                                                            quiet=args.quiet)), catalog)
        if args.study:
            progress = Progress(f"unmapped: screening for {args.study}", estimate_patients(source, args.patient),
                                quiet=args.quiet)
            affected = affected_results(source, catalog, args.study, args.as_of or date.today(), args.patient,
                                        progress.advance)
            progress.close()
    for row in result["codes"]:
        row["affected"] = affected.get((row["system"], row["code"] or row["example"]), 0) if affected is not None \
            else None
    result["codes"].sort(key=lambda r: (-(r["affected"] or 0), not r["possibly"], -r["count"]))
    result = {"source": args.source, "site": catalog.site, "study": args.study, **result}
    if args.limit:
        result["codes"], result["units"] = result["codes"][:args.limit], result["units"][:args.limit]
    if args.format == "json":
        sys.stdout.buffer.write(orjson.dumps(result, option=orjson.OPT_INDENT_2) + b"\n")
        return 0
    print(f"# {result['resources']:,} resources read from {args.source}"
          f"{' with site ' + repr(catalog.site) if catalog.site else ''}")
    order = (f"criterion results of {args.study} each made unknown or flagged" if affected is not None
             else "those that possibly name a concept first")
    print(f"\nunmapped codes ({len(result['codes'])}; {order}; map them in the site file, or list them under "
          "'ignore'):")
    head = (["affected"] if affected is not None else []) + ["count", "field", "system", "code", "possibly", "example"]
    _table(head, [([str(r["affected"])] if affected is not None else []) + [
        str(r["count"]), r["field"], r["system"] or "(text only)", r["code"], ", ".join(r["possibly"]) or "-",
        r["example"]] for r in result["codes"]])
    if not result["units_checked"]:
        print("\nunits: not checked (fhir_adapter.terminology.units is not available)")
    else:
        print(f"\nunmapped units ({len(result['units'])}):")
        _table(["count", "unit", "code", "example"],
               [[str(r["count"]), r["unit"], r["code"], r["example"]] for r in result["units"]])
    return 0


def _table(header: list[str], rows: list[list[str]]) -> None:
    if not rows:
        print("  (none)")
        return
    widths = [min(max(len(r[i]) for r in [header, *rows]), 60) for i in range(len(header) - 1)]
    for row in [header, *rows]:
        print("  " + "  ".join(v.ljust(w) for v, w in zip(row[:-1], widths, strict=True)) + "  " + row[-1])
