"""Regenerate tests/fixtures/clinosim/ and tests/fixtures/carebundle/ from generators nobody here wrote.

Run by hand, never by CI (CI installs neither generator). Both generators work offline; install them into a
throwaway venv, never into the project's:

    python3 -m venv /tmp/genvenv && /tmp/genvenv/bin/pip install clinosim==0.6.5 carebundle==0.5.0
    /tmp/genvenv/bin/python tools/make_external_fixtures.py            # both
    /tmp/genvenv/bin/python tools/make_external_fixtures.py clinosim   # only one

The NDJSON and Bundle files are deterministic for the pinned versions and seeds below (clinosim's
``manifest.json`` and ``_generator_metadata.json`` carry the generation time, so they change on every run).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures"
BIN = Path(sys.executable).parent

CLINOSIM_ARGS = ["simulate", "--country", "US", "--population", "15", "--seed", "3",
                 "--start", "2025-11-01", "--end", "2025-12-31", "--format", "fhir-r4"]
CAREBUNDLE_ARGS = ["generate", "--profile", "mixed", "--count", "6", "--seed", "42", "--sex", "mixed"]
HISTORY = {"profile": "hypertension", "seed": 7, "sex": "M", "visits": 4}
DEFECTS = {"profile": "type2_diabetes", "seed": 43, "sex": "F"}
DEFECT_RATES = {"missing_field": 0.15, "duplicate_entry": 0.1, "out_of_order_timestamp": 0.1,
                "unparseable_value": 0.15, "unknown_code_system": 0.1}
DEFECT_SEED = 5


def make_clinosim() -> None:
    """clinosim's FHIR R4 Bulk NDJSON output, as written, in tests/fixtures/clinosim/fhir_r4/."""
    target = FIXTURES / "clinosim" / "fhir_r4"
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([str(BIN / "clinosim"), *CLINOSIM_ARGS, "--output", tmp], check=True,
                       stdout=subprocess.DEVNULL)
        if target.exists():
            shutil.rmtree(target)
        shutil.copytree(Path(tmp) / "fhir_r4", target)
    print(f"clinosim: {sum(1 for _ in target.glob('*.ndjson'))} NDJSON files in {target}")


def make_carebundle() -> None:
    """carebundle's transaction Bundles: a mixed cohort (CLI), a multi-visit history, a deliberately dirty one."""
    from carebundle import Imperfection, generate_bundle, generate_history, inject_defects, to_json

    target = FIXTURES / "carebundle"
    for old in target.glob("*.json"):
        old.unlink()
    target.mkdir(parents=True, exist_ok=True)
    subprocess.run([str(BIN / "carebundle"), *CAREBUNDLE_ARGS, "--out", str(target)], check=True)

    history = generate_history(**HISTORY)
    (target / f"history-{HISTORY['profile']}-{HISTORY['seed']}.json").write_text(to_json(history), "utf-8")

    clean = json.loads(to_json(generate_bundle(**DEFECTS)))
    dirty, defects = inject_defects(clean, Imperfection(**DEFECT_RATES), seed=DEFECT_SEED)
    name = f"defects-{DEFECTS['profile']}-{DEFECTS['seed']}.json"
    (target / name).write_text(json.dumps(dirty, indent=2) + "\n", "utf-8")
    print(f"carebundle: {len(list(target.glob('*.json')))} bundles in {target}; defects in {name}:")
    for d in defects:
        print(f"  entry {d.entry_index} {d.resource_type}: {d.kind}: {d.detail}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("which", nargs="*", help="clinosim and/or carebundle (default: both)")
    which = parser.parse_args().which or ["clinosim", "carebundle"]
    unknown = set(which) - {"clinosim", "carebundle"}
    if unknown:
        parser.error(f"unknown generator(s): {sorted(unknown)}")
    if "clinosim" in which:
        make_clinosim()
    if "carebundle" in which:
        make_carebundle()


if __name__ == "__main__":
    main()
