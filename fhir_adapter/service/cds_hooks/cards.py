"""CDS Hooks cards (CDS Hooks 2.0, "Card Attributes") from the screen and response results.

- PROMIS-MDA5 (a screening study): a card for a possible candidate (status ``candidate`` or
  ``potential-candidate``) and for a patient excluded only until a date (``passes_from``: every failing criterion
  ends by then); none for a patient out of the entry cohort (``"cohort": "out"``) or ineligible for good.
- NCT04966884 (a study with a response assessment): a TIS summary card for a patient in its entry cohort with a
  tofacitinib baseline; none otherwise.

The reasons are in ``detail`` (GitHub-flavoured Markdown, every text taken from a record escaped so it cannot
make a link or markup). A card names no patient (the EHR shows whose chart it is) and carries no link: the
service's own pages need an API key.
"""

from __future__ import annotations

import re
import uuid
from typing import Any

SOURCE_LABEL = "fhir-adapter trial pre-screening"
_MD = re.compile(r"([\\`*_{}\[\]<>()#+!|~])")


def md(text: Any) -> str:
    """Text for Markdown: special characters escaped, on one line."""
    return _MD.sub(r"\\\1", " ".join(str(text).split()))


def _card(summary: str, detail: str, study: str, title: str) -> dict[str, Any]:
    summary = summary if len(summary) < 140 else summary[:136] + "..."
    return {"uuid": str(uuid.uuid4()), "summary": summary, "indicator": "info", "detail": detail,
            "source": {"label": SOURCE_LABEL,
                       "topic": {"system": "https://clinicaltrials.gov", "code": study, "display": title}}}


def _read_line(read: str, complete: bool, notes: list[str]) -> str:
    if complete:
        return f"*Data read:* {md(read)}."
    lines = [f"*Data read:* {md(read)}, which is not a complete record: a criterion that rests on the absence of "
             "a record is unknown until the full record is read (the EHR sends fhirServer, on this service's "
             "allow-list, with fhirAuthorization)."]
    lines += [f"- {md(n)}" for n in notes[:10]]
    return "\n".join(lines)


def screening_card(result: dict[str, Any], study: Any, *, read: str, complete: bool,
                   notes: list[str]) -> dict[str, Any] | None:
    """The card for one screen result, or None (out of the entry cohort, or ineligible for good)."""
    if result.get("cohort") == "out" or not _points_at_cohort(result, study):
        return None
    status = result.get("status")
    criteria: dict[str, Any] = result.get("criteria") or {}
    ends = result.get("passes_from")
    name = f"{study.aliases[0].upper() if study.aliases else study.id} ({study.id})"
    if status == "candidate":
        summary = f"Possible {name} trial candidate: every criterion the record decides passes"
    elif status == "potential-candidate":
        unknown = [c.id for c in study.criteria if _unknown_by_data(criteria.get(c.id), c)]
        summary = (f"Possible {name} trial candidate: nothing fails; {len(unknown)} "
                   f"criteri{'on needs' if len(unknown) == 1 else 'a need'} data")
    elif status == "ineligible" and ends:
        summary = f"{name}: excluded until {ends}; a possible trial candidate from then"
    else:
        return None
    top = [(c, criteria[c.id]) for c in study.criteria if c.id in criteria]
    failing = [(c, r) for c, r in top if _fails(c, r)]
    met = [(c, r) for c, r in top if c.kind == "inclusion" and r.get("result") == "met"]
    missing = [(c, r) for c, r in top if _unknown_by_data(r, c)]
    person = [c.id for c, r in top if r.get("decided_by") == "person" and r.get("result") == "unknown"]
    parts = [f"**{md(study.title)}**  ", f"Screening date {md(result.get('as_of'))}: **{md(status)}** "
             "(a pre-screen; the study team decides eligibility)."]
    if failing:
        parts.append("\n**Exclusions that end**")
        parts += [f"- {c.id}: {md(r.get('reason'))}; passes from **{md(r.get('passes_from'))}**" for c, r in failing]
    if missing:
        parts.append("\n**Missing (unknown)**")
        parts += [f"- {c.id} ({md(c.text)}): {md(r.get('reason'))}"
                  + (f"; to resolve: {md(r['to_resolve'])}" if r.get("to_resolve") else "") for c, r in missing]
    if met:
        parts.append("\n**Met**")
        parts += [f"- {c.id} ({md(c.text)}): {md(r.get('reason'))}" for c, r in met]
    if person:
        parts.append(f"\n**For a person to decide:** {', '.join(person)}")
    if result.get("review"):
        parts.append(f"**To review:** {', '.join(md(x) for x in result['review'])}")
    parts.append("\n" + _read_line(read, complete, notes))
    return _card(summary, "\n".join(parts), study.id, study.title)


def _points_at_cohort(result: dict[str, Any], study: Any) -> bool:
    """No entry criterion is unknown without any evidence (see the module's docstring)."""
    criteria = result.get("criteria") or {}
    return not any((criteria.get(e) or {}).get("result") == "unknown" and not (criteria.get(e) or {}).get("evidence")
                   for e in study.entry)


def _fails(c: Any, r: dict[str, Any]) -> bool:
    res = r.get("result")
    return (c.kind == "inclusion" and res == "not-met") or (c.kind == "exclusion" and res == "met")


def _unknown_by_data(r: dict[str, Any] | None, c: Any) -> bool:
    """Unknown, and for want of data (not a criterion only a person decides)."""
    return bool(r) and r.get("result") == "unknown" and r.get("decided_by") != "person" and c.decided_by != "person"


def response_card(screen: dict[str, Any], response: dict[str, Any], study: Any, *, read: str, complete: bool,
                  notes: list[str]) -> dict[str, Any] | None:
    """The TIS summary card, or None (out of the entry cohort, ineligible, or no tofacitinib baseline)."""
    if (screen.get("cohort") == "out" or screen.get("status") == "ineligible" or not response.get("baseline")
            or not _points_at_cohort(screen, study)):
        return None
    tis, rng, cat = response.get("tis"), response.get("tis_range") or [None, None], response.get("category")
    score = f"TIS {tis:g}" if tis is not None else f"TIS {rng[0]:g}-{rng[1]:g}" if rng[0] is not None else "TIS unknown"
    klass = f"{cat} response" if cat else "response class undecided"
    fu = response.get("follow_up") or {}
    summary = f"{study.id} tofacitinib: {score}, {klass} at {fu.get('date', 'follow-up')}"
    base = response["baseline"]
    parts = [f"**{md(study.title)}**  ",
             f"Total Improvement Score (2016 ACR/EULAR) from baseline {md(base.get('date'))} "
             f"({md(base.get('from'))}) to {md(fu.get('date'))} ({md(fu.get('from'))}): **{md(score)}**, "
             f"**{md(klass)}**."]
    if response.get("missing"):
        parts.append(f"Missing measures: {', '.join(md(m) for m in response['missing'])} (the score is a range "
                     "until they are recorded).")
    measures = response.get("measures") or {}
    if measures:
        parts += ["", "| Measure | Baseline | Follow-up | Change % | Points |", "|---|---|---|---|---|"]
        for m in measures.values():
            b, f = m.get("baseline") or {}, m.get("follow_up") or {}
            pts = f"{m['points']:g} / {m.get('max_points', 0):g}" if m.get("points") is not None else "-"
            chg = f"{m['change_pct']:g}" if m.get("change_pct") is not None else "-"
            parts.append(f"| {md(m.get('display'))} | {md(b.get('reported', '-'))} | {md(f.get('reported', '-'))} "
                         f"| {chg} | {pts} |")
    inactive = response.get("inactive_disease")
    parts.append("\nInactive disease: " + ("yes" if inactive else "no" if inactive is False else "unknown") + ".")
    safety = response.get("safety") or []
    if safety:
        parts.append("\n**Safety signals**")
        parts += [f"- {md(s.get('signal'))}: {md(s.get('display') or s.get('concept'))} on {md(s.get('date'))}"
                  for s in safety]
    if response.get("problems"):
        parts.append("\n**Notes**")
        parts += [f"- {md(p)}" for p in response["problems"]]
    parts.append("\n" + _read_line(read, complete, notes))
    return _card(summary, "\n".join(parts), study.id, study.title)
