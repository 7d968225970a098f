"""Benchmark: the default screen (entry cohort) beside DuckDB's 10-criterion SQL subset, same run.

For a rheumatology-like population (``gen_population.py``'s default: 20% with dermatomyositis) and a whole-hospital
one (``--dm-fraction 0.001``), at each size: ``../shared/bench/peers.py`` times DuckDB (2 threads) and the default
``fhir-adapter screen --study NCT07377058`` as whole processes, best of ``--repeat``; then ``screen --all-criteria``
is timed the same way; one more run of each outside ``peers.py`` gives the bytes written per patient and the
peak memory of the whole process tree. Goals (the README's Benchmarks):
the default screen at least as fast as DuckDB on the rheumatology population and at least 1.5x on the hospital
one, peak memory under 300 MB.

    python benchmarks/cohort.py [--patients 2000 20000] [--repeat 3]

Needs duckdb (in the test extra: ``make install`` installs it).
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from measure import ROOT, TreePeak, population, ref_date

PEERS = ROOT.parent / "shared" / "bench" / "peers.py"
POPULATIONS = (("rheumatology", 0.20), ("hospital", 0.001))


def screen_command(extra: str = "") -> str:
    return (f"{shlex.quote(sys.executable)} -m fhir_adapter.cli.main -q screen --study NCT07377058 --source {{dir}} "
            f"--as-of {{as_of}} {extra}").strip()


def peers(folder: Path, as_of: str, repeat: int, cmd: str, name: str, engines: str) -> dict:
    """``peers.py`` on ``folder``: its JSON summary (DuckDB and the command, each best of ``repeat``)."""
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as tf:
        out = Path(tf.name)
    subprocess.run([sys.executable, str(PEERS), str(folder), "--as-of", as_of, "--engines", engines,
                    "--repeat", str(repeat), "--cmd", cmd, "--cmd-name", name, "--json", str(out)],
                   check=True, stdout=subprocess.DEVNULL)
    try:
        return json.loads(out.read_text())
    finally:
        out.unlink(missing_ok=True)


def measured(folder: Path, as_of: str, extra: str) -> dict[str, float]:
    """One run of the screen outside ``peers.py``: bytes written and peak memory of the whole process tree.

    ``peers.py``'s ``ru_maxrss`` of a child it forks after holding a previous run's output reports at least
    that parent's size, so memory is sampled here from /proc (``measure.TreePeak``) instead."""
    args = [*shlex.split(screen_command(extra).format(dir=shlex.quote(str(folder)), as_of=as_of))]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    with TreePeak(proc.pid) as peak:
        size = sum(len(chunk) for chunk in iter(lambda: proc.stdout.read(1 << 20), b""))  # type: ignore[union-attr]
        status = proc.wait()
    if status != 0:
        sys.exit(f"{' '.join(args)} failed with status {status}")
    return {"bytes": size, "tree_mb": peak.bytes / 2**20}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--patients", type=int, nargs="+", default=[2000, 20000])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--cache", type=Path, default=Path("/tmp/fhir-adapter-bench"))
    a = ap.parse_args()
    if not PEERS.exists():
        sys.exit(f"peers not found: {PEERS}")
    print(f"{'population':<13} {'patients':>9} {'DuckDB/s':>9} {'screen/s':>9} {'x DuckDB':>8} {'all/s':>7} "
          f"{'tree MB':>8} {'B/patient':>10} {'all B/patient':>14}", flush=True)
    for kind, fraction in POPULATIONS:
        for n in a.patients:
            folder = population(n, a.cache, fraction)
            as_of = ref_date(folder)
            started = time.perf_counter()
            default = peers(folder, as_of, a.repeat, screen_command(), "screen", "duckdb")
            every = peers(folder, as_of, a.repeat, screen_command("--all-criteria"), "all", "")
            duck, screen, all_ = default["summary"]["duckdb"], default["summary"]["screen"], every["summary"]["all"]
            for name, s in (("screen", screen), ("all", all_)):
                if s.get("output_lines") != n:
                    sys.exit(f"{kind} {n}: {name} wrote {s.get('output_lines')} lines, expected {n}")
            duck_s, screen_s, all_s = n / duck["process_s"], n / screen["process_s"], n / all_["process_s"]
            one, one_all = measured(folder, as_of, ""), measured(folder, as_of, "--all-criteria")
            print(f"{kind:<13} {n:>9,} {duck_s:>9,.0f} {screen_s:>9,.0f} {screen_s / duck_s:>8.2f} {all_s:>7,.0f} "
                  f"{max(one['tree_mb'], one_all['tree_mb']):>8.0f} "
                  f"{one['bytes'] / n:>10,.0f} "
                  f"{one_all['bytes'] / n:>14,.0f}"
                  f"   ({time.perf_counter() - started:.0f} s)", flush=True)


if __name__ == "__main__":
    main()
