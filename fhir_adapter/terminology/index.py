"""The code index: ``system|code`` -> concepts by dict lookups, ICD-style prefixes by successive lookups.

A code ``M33.13`` of a system with prefix entries is looked up as ``M33.13`` and then as each prefix length
the system has (``M33.1``, ``M33`` ...): a handful of dict gets, never a scan of the entries. Codes of systems
marked ``icd`` in ``mappings/code-systems.json`` compare in upper case with dots ignored. The same keys hold
the codes a site reviewed as irrelevant (``ignore``), and ``check_conflicts`` finds one code given two meanings.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from fhir_adapter.terminology.concept import CodeSpec, Concept


def _icd(code: str) -> str:
    return code.strip().upper().replace(".", "")


def _upper(code: str) -> str:
    return code.strip().upper()


def _plain(code: str) -> str:
    return code.strip()


_NORMALIZERS = {"icd": _icd, "upper": _upper}


@dataclass(slots=True)
class _Table:
    exact: dict[tuple[str, str], tuple[Concept, ...]] = field(default_factory=dict)
    prefix: dict[str, dict[str, tuple[Concept, ...]]] = field(default_factory=dict)
    lengths: dict[str, tuple[int, ...]] = field(default_factory=dict)  # per system, longest first

    def add_exact(self, key: tuple[str, str], concept: Concept) -> None:
        hits = self.exact.get(key, ())
        if concept not in hits:
            self.exact[key] = (*hits, concept)

    def add_prefix(self, system: str, prefix: str, concept: Concept) -> None:
        table = self.prefix.setdefault(system, {})
        hits = table.get(prefix, ())
        if concept not in hits:
            table[prefix] = (*hits, concept)

    def freeze(self) -> None:
        self.lengths = {s: tuple(sorted({len(p) for p in t}, reverse=True)) for s, t in self.prefix.items()}

    def lookup(self, system: str, code: str, out: list[Concept]) -> None:
        for c in self.exact.get((system, code), ()):
            if c not in out:
                out.append(c)
        lengths = self.lengths.get(system)
        if lengths:
            table = self.prefix[system]
            n_code = len(code)
            for n in lengths:
                if n <= n_code:
                    for c in table.get(code[:n], ()):
                        if c not in out:
                            out.append(c)


class CodeIndex:
    """Maps codings to concepts. Built once per catalog; every lookup is a few dict gets."""

    def __init__(self, aliases: Mapping[str, str], normalize: Mapping[str, str]):
        self._aliases = dict(aliases)
        self._normalize = {s: _NORMALIZERS[n] for s, n in normalize.items()}
        self._primary = _Table()
        self._fallback = _Table()
        self._unit: dict[tuple[str, str], str] = {}
        self._scale: dict[tuple[str, str], tuple[float, float]] = {}
        self._ignore: dict[tuple[str, str], str] = {}  # key -> the site's note
        self._ignore_prefix: dict[str, dict[str, str]] = {}
        self._ignore_lengths: dict[str, tuple[int, ...]] = {}

    def key(self, system: str, code: str) -> tuple[str, str]:
        """The index key of a coding: the system with aliases resolved, the code normalized for it."""
        system = self._aliases.get(system, system)
        return system, self._normalize.get(system, _plain)(code)

    def add(self, concept: Concept, system: str, *, code: str | None = None, prefix: str | None = None,
            fallback: bool = False, unit: str | None = None, scale: tuple[float, float] | None = None) -> None:
        table = self._fallback if fallback else self._primary
        if code is not None:
            key = self.key(system, code)
            table.add_exact(key, concept)
            if unit:
                self._unit[key] = unit
            if scale:
                self._scale[key] = scale
        elif prefix is not None:
            s, p = self.key(system, prefix)
            table.add_prefix(s, p, concept)

    def ignore(self, system: str, *, code: str | None = None, prefix: str | None = None, note: str = "") -> None:
        """Mark ``system|code`` (or every code starting with ``prefix``) as reviewed and irrelevant."""
        if code is not None:
            self._ignore[self.key(system, code)] = note
        elif prefix is not None:
            s, p = self.key(system, prefix)
            self._ignore_prefix.setdefault(s, {})[p] = note

    def freeze(self) -> CodeIndex:
        self._primary.freeze()
        self._fallback.freeze()
        self._ignore_lengths = {s: tuple(sorted({len(p) for p in t}, reverse=True))
                                for s, t in self._ignore_prefix.items()}
        return self

    def ignored(self, system: str | None, code: str | None) -> str | None:
        """The site's note when ``system|code`` is on its ignore list (``""`` without a note), else None."""
        if not system or not code or not isinstance(system, str) or not isinstance(code, str):
            return None
        s, c = self.key(system, code)
        note = self._ignore.get((s, c))
        if note is not None:
            return note
        table = self._ignore_prefix.get(s)
        if table:
            for n in self._ignore_lengths[s]:
                if n <= len(c) and c[:n] in table:
                    return table[c[:n]]
        return None

    def lookup(self, system: str | None, code: str | None) -> tuple[Concept, ...]:
        """Concepts of one coding: exact code first, then prefixes longest first; catch-alls only if none."""
        if not system or not code:
            return ()
        s, c = self.key(system, code)
        out: list[Concept] = []
        self._primary.lookup(s, c, out)
        if not out:
            self._fallback.lookup(s, c, out)
        return tuple(out)

    def lookup_all(self, codings: Iterable[tuple[str | None, str | None]]) -> tuple[Concept, ...]:
        """Concepts of several codings (one CodeableConcept): the union; catch-alls only when none maps."""
        keys = [self.key(s, c) for s, c in codings if s and c and isinstance(s, str) and isinstance(c, str)]
        out: list[Concept] = []
        for s, c in keys:
            self._primary.lookup(s, c, out)
        if not out:
            for s, c in keys:
                self._fallback.lookup(s, c, out)
        return tuple(out)

    def unit(self, system: str, code: str) -> str | None:
        return self._unit.get(self.key(system, code))

    def scale(self, system: str, code: str) -> tuple[float, float] | None:
        return self._scale.get(self.key(system, code))


def check_conflicts(concepts: Mapping[str, Concept], specs: Iterable[CodeSpec], aliases: Mapping[str, str],
                    normalize: Mapping[str, str]) -> list[str]:
    """Errors for one ``system|code`` (or prefix) mapped to two concepts of the same kind without ``shared``."""
    keyer = CodeIndex(aliases, normalize)
    seen: dict[tuple[str, str, str, bool], list[CodeSpec]] = {}
    errors = []
    for spec in specs:
        e = spec.entry
        system, value = keyer.key(e.system, e.code if e.code is not None else e.prefix or "")
        key = ("code" if e.code is not None else "prefix", system, value, spec.fallback)
        group = seen.setdefault(key, [])
        for other in group:
            if other.concept_id == spec.concept_id:
                errors.append(f"{spec.where}: {e.system}|{e.code or e.prefix} is listed twice for "
                              f"{spec.concept_id!r} (also {other.where})")
            elif concepts[other.concept_id].kind == concepts[spec.concept_id].kind and not (
                    spec.shared and other.shared):
                errors.append(
                    f"{spec.where}: {key[0]} {e.system}|{e.code or e.prefix} also maps to {other.concept_id!r} "
                    f"({other.where}), a concept of the same kind; mark both entries \"shared\": true if that "
                    f"is on purpose")
        group.append(spec)
    return errors
