"""Benchmark: codings classified per second and quantities converted per second.

Uses the codes and units of the built-in sample population (with its site file, so local codes map): every
CodeableConcept a criterion looks at (Observation code and value, Condition, medication, allergy, procedure
codes) is classified, and every Observation valueQuantity whose code maps to a quantity or score concept is
converted into that concept's canonical unit. Each is repeated until about a second has passed.

    python benchmarks/terminology.py [--seconds 1.0]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from typing import Any

from fhir_adapter.paths import sample_dir
from fhir_adapter.sources.ndjson import NdjsonSource
from fhir_adapter.terminology.catalog import Catalog
from fhir_adapter.terminology.units import quantity_of

CODE_FIELDS = ("code", "valueCodeableConcept", "medicationCodeableConcept")


def workload(catalog: Catalog) -> tuple[list[dict[str, Any]], list[tuple[dict[str, Any], Any]]]:
    """The sample's CodeableConcepts, and its (Observation, concept) pairs with a quantity to convert."""
    concepts, quantities = [], []
    with NdjsonSource(sample_dir(), workers=1) as source:
        for resource, _ in source.resources():
            for field in CODE_FIELDS:
                cc = resource.get(field)
                if isinstance(cc, dict):
                    concepts.append(cc)
            if resource["resourceType"] == "Observation" and isinstance(resource.get("valueQuantity"), dict):
                for concept in catalog.classify(resource.get("code")):
                    if concept.kind in ("quantity", "score"):
                        quantities.append((resource, concept))
                        break
    return concepts, quantities


def rate(fn: Callable[[], int], seconds: float) -> tuple[float, int]:
    """Operations per second of ``fn`` (which returns how many it did), repeated for about ``seconds``."""
    done, start = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds:
        done += fn()
    return done / elapsed, done


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=1.0)
    a = ap.parse_args()
    t0 = time.perf_counter()
    catalog = Catalog.load(sample_dir().parent / "site-mappings.json")
    load_s = time.perf_counter() - t0
    concepts, quantities = workload(catalog)
    mapped = sum(1 for cc in concepts if catalog.classify(cc))
    converted = sum(1 for obs, c in quantities if quantity_of(obs, c, synonyms=catalog.unit_synonyms).value is not None)

    def classify_all() -> int:
        for cc in concepts:
            catalog.classify(cc)
        return len(concepts)

    def convert_all() -> int:
        for obs, c in quantities:
            quantity_of(obs, c, synonyms=catalog.unit_synonyms)
        return len(quantities)

    classify_rate, _ = rate(classify_all, a.seconds)
    convert_rate, _ = rate(convert_all, a.seconds)
    print(f"catalog with site file loaded in {load_s * 1000:.0f} ms")
    print(f"{'workload':<34}{'items':>8}{'mapped':>8}{'per second':>14}{'us each':>9}")
    print(f"{'CodeableConcepts classified':<34}{len(concepts):>8,}{mapped:>8,}{classify_rate:>14,.0f}"
          f"{1e6 / classify_rate:>9.2f}")
    print(f"{'quantities converted':<34}{len(quantities):>8,}{converted:>8,}{convert_rate:>14,.0f}"
          f"{1e6 / convert_rate:>9.2f}")


if __name__ == "__main__":
    main()
