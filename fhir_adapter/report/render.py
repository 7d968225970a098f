"""Writing a report: HTML (self-contained: inline CSS and SVG, no script, nothing fetched), Markdown, JSON,
and the CSV rows (one per patient, written as the lines stream)."""

from __future__ import annotations

import csv
from typing import IO, Any

import orjson
from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape
from markupsafe import Markup, escape

FORMATS = ("html", "csv", "md", "json")
SCREEN_CSV = ("patient", "mrn", "study", "as_of", "status", "cohort", "failing", "unknown", "for_person",
              "passes_from")
RESPONSE_CSV = ("patient", "mrn", "study", "baseline", "follow_up", "tis", "tis_low", "tis_high", "category",
                "inactive_disease", "missing", "safety")


def _env() -> Environment:
    env = Environment(loader=PackageLoader("fhir_adapter.report", "templates"),
                      autoescape=select_autoescape(["html", "j2"], default_for_string=False),
                      undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    env.filters["pct"] = pct
    env.filters["num"] = num
    env.globals["funnel_svg"] = funnel_svg
    env.globals["bars_svg"] = bars_svg
    return env


def num(x: Any) -> str:
    """A count as shown: thousands separated; a hidden count's label as it is; None as a dash."""
    if x is None:
        return "\u2013"
    if isinstance(x, bool):
        return "yes" if x else "no"
    if isinstance(x, int):
        return f"{x:,}"
    if isinstance(x, float):
        return f"{x:g}"
    return str(x)


def pct(part: Any, whole: Any) -> str:
    """``part`` as a percentage of ``whole``, or nothing when either is hidden or the whole is zero."""
    if isinstance(part, int) and isinstance(whole, int) and whole > 0:
        return f"{100 * part / whole:.0f}%"
    return ""


def render_html(summary: dict[str, Any]) -> str:
    return _env().get_template("report.html.j2").render(r=summary)


def render_md(summary: dict[str, Any]) -> str:
    env = _env()
    env.autoescape = False
    return env.get_template("report.md.j2").render(r=summary)


def render_json(summary: dict[str, Any]) -> bytes:
    return orjson.dumps(summary, option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS) + b"\n"


class CsvRows:
    """Writes one CSV row per patient as the lines stream (screen and response rows in one file get a
    ``kind`` column)."""

    def __init__(self, out: IO[str]) -> None:
        self.writer = csv.writer(out, lineterminator="\n")
        self.header: tuple[str, ...] | None = None

    def __call__(self, kind: str, row: dict[str, Any]) -> None:
        cols = SCREEN_CSV if kind == "screen" else RESPONSE_CSV
        if self.header is None:
            self.header = cols
            self.writer.writerow(cols)
        elif self.header != cols:
            raise ValueError("screen and response lines in one CSV: make one report of each")
        if kind != "screen":
            low, high = (row.get("tis_range") or [None, None])[:2]
            row = {**row, "tis_low": low, "tis_high": high}
        self.writer.writerow([_cell(row.get(c)) for c in cols])


def _cell(x: Any) -> str:
    if x is None:
        return ""
    if isinstance(x, list):
        return " ".join(str(i) for i in x)
    return str(x)


# ---------------------------------------------------------------------------------------------------------
# charts: hand-made SVG, inline (no library, nothing fetched)

def funnel_svg(sec: dict[str, Any]) -> Markup:
    """The screening funnel as attrition bars: the population, out of the entry cohort, then each criterion
    (remaining after it: dark for no unknown so far, light for potential); a hidden count draws a hatched bar
    of no particular length. Every bar carries its numbers as ``data-`` attributes."""
    rows: list[dict[str, Any]] = [{"id": "population", "label": "population", "remaining": sec["population"],
                                   "excluded": None, "potential": 0}]
    rows.append({"id": "cohort", "label": "in the entry cohort", "remaining": sec["cohort"]["in"],
                 "excluded": sec["cohort"]["out"], "potential": 0})
    for f in sec["funnel"]:
        rows.append({"id": f["id"], "label": f"{f['id']} {f['text']}", "remaining": f["remaining"],
                     "excluded": f["excluded"], "potential": f["potential"],
                     "unknown_machine": f["unknown_machine"], "unknown_person": f["unknown_person"]})
    if sec["other"]:
        final = sec["final"]
        rest = final["candidate"] + final["potential-candidate"] \
            if all(isinstance(v, int) for v in final.values()) else None
        out = sum(o["patients"] for o in sec["other"]) \
            if all(isinstance(o["patients"], int) for o in sec["other"]) else "hidden"
        rows.append({"id": "other", "label": "not ineligible on a criterion: " +
                     ", ".join(o["reason"] for o in sec["other"]), "remaining": rest, "excluded": out,
                     "potential": final["potential-candidate"]})
    top = sec["population"] if isinstance(sec["population"], int) and sec["population"] > 0 else 1
    label_w, bar_w, row_h = 250, 330, 30
    width = label_w + bar_w + 170
    parts = [f'<svg class="funnel" role="img" viewBox="0 0 {width} {row_h * len(rows) + 10}" '
             f'xmlns="http://www.w3.org/2000/svg" aria-label="screening funnel">',
             '<defs><pattern id="hatch" width="6" height="6" patternUnits="userSpaceOnUse" '
             'patternTransform="rotate(45)"><rect width="6" height="6" fill="#eee"/>'
             '<line x1="0" y1="0" x2="0" y2="6" stroke="#999" stroke-width="2"/></pattern></defs>']
    for i, r in enumerate(rows):
        y = 5 + i * row_h
        rem, pot, exc = r["remaining"], r["potential"], r["excluded"]
        attrs = f'data-step="{escape(r["id"])}" data-remaining="{escape(num(rem))}" ' \
                f'data-excluded="{escape(num(exc))}" data-potential="{escape(num(pot))}"'
        parts.append(f'<g class="step" {attrs}>')
        label = r["label"] if len(r["label"]) <= 38 else r["label"][:37] + "…"
        parts.append(f'<text x="0" y="{y + 18}" class="lbl"><title>{escape(r["label"])}</title>'
                     f'{escape(label)}</text>')
        if isinstance(rem, int):
            w = max(1.0, bar_w * rem / top) if rem else 0.0
            pw = bar_w * pot / top if isinstance(pot, int) else 0.0
            parts.append(f'<rect x="{label_w}" y="{y + 4}" width="{w - pw:.1f}" height="20" class="sure"/>')
            if pw:
                parts.append(f'<rect x="{label_w + w - pw:.1f}" y="{y + 4}" width="{pw:.1f}" height="20" '
                             f'class="pot"/>')
        else:
            parts.append(f'<rect x="{label_w}" y="{y + 4}" width="{bar_w * 0.15:.1f}" height="20" '
                         f'fill="url(#hatch)"/>')
        text = num(rem) if rem is not None else ""
        if exc not in (None, 0):
            text += f"  (\u2212{num(exc)})"
        if isinstance(pot, int) and pot and r["id"] not in ("population", "cohort"):
            text += f"  {num(pot)} potential"
        parts.append(f'<text x="{label_w + bar_w + 6}" y="{y + 18}" class="val">{escape(text)}</text></g>')
    parts.append("</svg>")
    return Markup("".join(parts))


def bars_svg(items: list[tuple[str, Any]], name: str) -> Markup:
    """A small horizontal bar chart of counts (hidden counts hatched, of no particular length)."""
    known = [v for _, v in items if isinstance(v, int)]
    top = max(known) if known and max(known) > 0 else 1
    label_w, bar_w, row_h = 150, 260, 24
    parts = [f'<svg class="bars" role="img" aria-label="{escape(name)}" viewBox="0 0 {label_w + bar_w + 70} '
             f'{row_h * len(items) + 6}" xmlns="http://www.w3.org/2000/svg">']
    for i, (label, v) in enumerate(items):
        y = 3 + i * row_h
        parts.append(f'<g data-bar="{escape(label)}" data-value="{escape(num(v))}">'
                     f'<text x="0" y="{y + 16}" class="lbl">{escape(label)}</text>')
        if isinstance(v, int):
            parts.append(f'<rect x="{label_w}" y="{y + 3}" width="{bar_w * v / top:.1f}" height="17" class="sure"/>')
        else:
            parts.append(f'<rect x="{label_w}" y="{y + 3}" width="{bar_w * 0.15:.1f}" height="17" '
                         f'fill="#ddd" stroke="#999" stroke-dasharray="3 2"/>')
        parts.append(f'<text x="{label_w + bar_w + 6}" y="{y + 16}" class="val">{escape(num(v))}</text></g>')
    parts.append("</svg>")
    return Markup("".join(parts))
