"""The name index: which catalog concepts (and drug classes) a free text names.

Used only for records whose codes map to nothing: such a record whose code display or text names a concept a
criterion looks for is a *possible match* (the criterion becomes unknown, with the code to map). A name never
makes a criterion met.

Names come from ``mappings/names.json`` (generic and brand names, abbreviations, Chinese names), from the
concepts' own displays and code displays in ``mappings/concepts/``, and from a site file's ``names``. Matching
(``normalize``): NFKC, casefold, punctuation and symbols to spaces, "%" to "pct", spaces next to CJK characters
dropped. A name in Latin script matches whole words only ("prednisone" never matches "prednisolone"); a name
with CJK characters matches as a substring (where one of its ends is a Latin letter or digit, that end still
falls on a word boundary). Where matches overlap, one inside a longer match is dropped ("泼尼松" inside
"泼尼松龙" names prednisolone only; "CK" inside "CK-MB" nothing, the phrase being listed as ``unrelated``).
Every text is matched once and cached: a population repeats a few hundred texts.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from fhir_adapter.terminology.concept import Concept

_CJK = "\u2e80-\u9fff\uac00-\ud7af\uf900-\ufaff"
_HAS_CJK = re.compile(f"[{_CJK}]")
_WORD = re.compile(f"[^\\W_{_CJK}]+")  # a run of letters and digits outside CJK: a Latin (Greek, ...) word
_NOT_WORD = re.compile(r"[\W_]+")
_POSSESSIVE = re.compile("(?<=\\w)['\u2019]s\\b")  # "Gottron's", "Gottron\u2019s" -> "Gottron"
_CJK_SPACE = re.compile(f"(?<=[{_CJK}]) | (?=[{_CJK}])")
_CACHE_MAX = 100_000


def normalize(text: str) -> str:
    """The form names and texts are compared in (see the module docstring)."""
    t = unicodedata.normalize("NFKC", text).casefold()
    t = _POSSESSIVE.sub("", t).replace("%", " pct ")
    t = _NOT_WORD.sub(" ", t).strip()
    return _CJK_SPACE.sub("", t)


def _word_char(ch: str) -> bool:
    return bool(_WORD.match(ch))


@dataclass(frozen=True, slots=True)
class Named:
    """The concept ids and class ids a text names."""

    concepts: frozenset[str] = frozenset()
    classes: frozenset[str] = frozenset()

    def __bool__(self) -> bool:
        return bool(self.concepts or self.classes)


NOTHING = Named()
# what one name stands for: ("concept", id), ("class", id) or ("unrelated", "") (a phrase naming nothing)
Target = tuple[str, str]


class NameIndex:
    """Names -> concepts and classes. Build once per catalog; ``named`` is cached per distinct text."""

    def __init__(self, names: Iterable[tuple[str, Target]]):
        self._latin: dict[tuple[str, ...], set[Target]] = {}
        self._cjk: dict[str, set[Target]] = {}
        for name, target in names:
            key = normalize(name)
            if not key:
                continue
            if _HAS_CJK.search(key):
                self._cjk.setdefault(key, set()).add(target)
            else:
                self._latin.setdefault(tuple(key.split(" ")), set()).add(target)
        self._longest = max((len(k) for k in self._latin), default=0)
        self._cjk_names = sorted(self._cjk, key=len, reverse=True)
        self._cache: dict[str, Named] = {}
        self._many: dict[tuple[str, ...], Named] = {}

    def __len__(self) -> int:
        return len(self._latin) + len(self._cjk)

    def names(self) -> list[tuple[str, frozenset[Target]]]:
        """Every normalized name with what it stands for (for ``mappings check`` and the tests)."""
        out = [(" ".join(k), frozenset(v)) for k, v in self._latin.items()]
        return out + [(k, frozenset(v)) for k, v in self._cjk.items()]

    def named(self, text: str | None) -> Named:
        """What ``text`` names (cached per text)."""
        if not text or not isinstance(text, str):
            return NOTHING
        hit = self._cache.get(text)
        if hit is None:
            hit = self._match(normalize(text))
            if len(self._cache) < _CACHE_MAX:
                self._cache[text] = hit
        return hit

    def named_any(self, texts: tuple[str, ...]) -> Named:
        """What any of ``texts`` (a CodeableConcept's text and displays) names: the union (cached per tuple)."""
        hit = self._many.get(texts)
        if hit is None:
            parts = [self.named(t) for t in texts]
            hit = Named(frozenset().union(*(p.concepts for p in parts)),
                        frozenset().union(*(p.classes for p in parts))) if parts else NOTHING
            if len(self._many) < _CACHE_MAX:
                self._many[texts] = hit
        return hit

    def _match(self, t: str) -> Named:
        if not t:
            return NOTHING
        found: list[tuple[int, int, set[Target]]] = []
        words = [(m.start(), m.end()) for m in _WORD.finditer(t)] if self._latin else []
        for i in range(len(words)):
            for n in range(1, min(self._longest, len(words) - i) + 1):
                last = words[i + n - 1]
                if n > 1 and t[words[i + n - 2][1]:last[0]] != " ":
                    break  # a name's words are separated by one space, nothing else
                targets = self._latin.get(tuple(t[a:b] for a, b in words[i:i + n]))
                if targets:
                    found.append((words[i][0], last[1], targets))
        if _HAS_CJK.search(t):
            for name in self._cjk_names:
                at = t.find(name)
                while at >= 0:
                    end = at + len(name)
                    if not ((at > 0 and _word_char(name[0]) and _word_char(t[at - 1]))
                            or (end < len(t) and _word_char(name[-1]) and _word_char(t[end]))):
                        found.append((at, end, self._cjk[name]))
                    at = t.find(name, at + 1)
        if not found:
            return NOTHING
        concepts: set[str] = set()
        classes: set[str] = set()
        for a, b, targets in found:
            if any(c <= a and b <= d and d - c > b - a for c, d, _ in found):
                continue  # inside a longer match: "泼尼松" in "泼尼松龙", "CK" in "CK-MB"
            for kind, ident in targets:
                if kind == "concept":
                    concepts.add(ident)
                elif kind == "class":
                    classes.add(ident)
        return Named(frozenset(concepts), frozenset(classes)) if concepts or classes else NOTHING


_BRACKETS = re.compile(r"\s*(\([^()]*\)|\[[^\[\]]*\])")


def display_names(display: str) -> list[str]:
    """A catalog display as names: itself and, when it has them, without its bracketed parts
    ("Dermatomyositis (disorder)" -> also "Dermatomyositis"; "Hemoglobin [Mass/volume] in Blood" -> also
    "Hemoglobin in Blood")."""
    out = [display]
    bare = _BRACKETS.sub("", display).strip(" ,;:")
    if bare and bare != display:
        out.append(bare)
    return out


def build(concepts: Iterable[Concept], concept_names: Mapping[str, Iterable[str]],
          class_names: Mapping[str, Iterable[str]], unrelated: Iterable[str]) -> NameIndex:
    """The index of a catalog: each concept's display and code displays, the names files' names (package and
    site), class names, and the unrelated phrases (which name nothing but hide the names inside them).

    A drug product's display ("tofacitinib 5 MG Oral Tablet [Xeljanz]") is not a name: ``products`` reads such
    names by their grammar, and a branded name without its brand would name every product sharing the rest."""
    from fhir_adapter.terminology.products import parse_name

    entries: list[tuple[str, Target]] = []
    for c in concepts:
        for display in (c.display, *(e.display for e in c.codes if e.display and not e.display.startswith("{")
                                     and parse_name(e.display) is None)):  # "{...} Pack": a product too
            entries += [(n, ("concept", c.id)) for n in display_names(display)]
    for cid, names in concept_names.items():
        entries += [(n, ("concept", cid)) for n in names]
    for cls, names in class_names.items():
        entries += [(n, ("class", cls)) for n in names]
    entries += [(n, ("unrelated", "")) for n in unrelated]
    return NameIndex(entries)
