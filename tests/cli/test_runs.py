"""``-o FILE``, the manifest, ``--resume``, Ctrl-C and progress: runs that can be trusted and resumed.

A ``screen -o`` run is killed (SIGINT as Ctrl-C sends it to the whole process group, and SIGKILL) at random
points of a generated population's screen: no manifest is left, ``--resume`` completes the file, and the file
then holds the same lines as an uninterrupted run's, each patient once.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
GENERATOR = ROOT.parent / "shared" / "bench" / "gen_population.py"
STUDY = "NCT07377058"
SAMPLE_PATIENTS = ROOT / "fhir_adapter" / "sample" / "data" / "Patient.ndjson"


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "fhir_adapter.cli.main", *args], capture_output=True, text=True,
                          timeout=600, cwd=ROOT, env={**os.environ, **(env or {})})


def start(*args: str) -> subprocess.Popen[str]:
    """The command in its own process group (as a shell runs it), so that a signal can go to all its processes."""
    return subprocess.Popen([sys.executable, "-m", "fhir_adapter.cli.main", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=ROOT, start_new_session=True)


def wait_for(path: Path, proc: subprocess.Popen[str], min_bytes: int = 0) -> None:
    """Until ``path`` exists with more than ``min_bytes`` bytes, or the process ended (no time limit but the
    process's own)."""
    while proc.poll() is None and not (path.exists() and path.stat().st_size > min_bytes):
        time.sleep(0.005)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def lines(path: Path) -> list[str]:
    return [x for x in path.read_text().splitlines() if x.strip()]


def patients(path: Path) -> Counter[str]:
    return Counter(json.loads(x)["patient"] for x in lines(path))


@pytest.fixture(scope="module")
def population(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """300 generated patients (two buckets: results come out in parts) and an uninterrupted run's file."""
    if not GENERATOR.exists():
        if os.environ.get("CI") == "true":
            pytest.fail(f"population generator not found: {GENERATOR}")
        pytest.skip(f"population generator not found: {GENERATOR}")
    tmp = tmp_path_factory.mktemp("runs")
    folder = tmp / "pop"
    subprocess.run([sys.executable, str(GENERATOR), "300", "--out", str(folder)], check=True, capture_output=True)
    as_of = json.loads((folder / "population.json").read_text())["ref_date"]
    args = ("screen", "--study", STUDY, "--source", str(folder), "--as-of", as_of)
    full = tmp / "full.jsonl"
    done = cli(*args, "-o", str(full))
    assert done.returncode == 0, done.stderr
    return {"folder": folder, "args": args, "full": full, "tmp": tmp}


def test_the_manifest_says_what_was_run_on_what(population: dict) -> None:
    full: Path = population["full"]
    assert not full.with_name("full.jsonl.partial").exists()
    assert not full.with_name("full.jsonl.partial.json").exists()
    manifest = json.loads(full.with_name("full.jsonl.manifest.json").read_text())
    got = [json.loads(x) for x in lines(full)]
    assert manifest["command"] == "screen" and manifest["exit_status"] == 0 and manifest["complete"] is True
    assert manifest["as_of"] == population["args"][-1] == manifest["options"]["as_of"]
    assert manifest["options"]["study"] == STUDY and manifest["options"]["all_criteria"] is False
    (study,) = manifest["study_files"]
    assert study["sha256"] == sha256(ROOT / "studies" / f"{STUDY}.json")
    files = {Path(f["path"]).name: f for f in manifest["inputs"]["files"]}
    assert set(files) == {p.name for p in population["folder"].glob("*.ndjson")}
    for f in manifest["inputs"]["files"]:
        assert (f["bytes"], f["sha256"]) == (Path(f["path"]).stat().st_size, sha256(Path(f["path"])))
    assert manifest["output_sha256"] == sha256(full) and manifest["lines"] == len(got) == 300
    assert manifest["counts"]["status"] == dict(Counter(r["status"] for r in got))
    assert manifest["counts"]["out_of_entry_cohort_by"] == dict(Counter(
        next(iter(r["criteria"])) for r in got if r.get("cohort") == "out"))
    assert manifest["source_report"]["read"]["Patient"] == 300
    for key in ("started", "finished"):
        assert manifest[key].endswith("Z") and manifest[key][:4].isdigit()
    assert manifest["started"] <= manifest["finished"]
    assert manifest["adapter_version"]
    assert "token" not in manifest["options"]


def check_resumed(population: dict, out: Path) -> None:
    """``--resume`` finishes ``out``: the same lines as the uninterrupted run, each patient once, a manifest."""
    done = cli(*population["args"], "-o", str(out), "--resume")
    assert done.returncode == 0, done.stderr
    assert sorted(lines(out)) == sorted(lines(population["full"]))
    assert set(patients(out).values()) == {1}
    assert not out.with_name(out.name + ".partial").exists()
    manifest = json.loads(out.with_name(out.name + ".manifest.json").read_text())
    assert manifest["exit_status"] == 0 and manifest["lines"] == 300 and len(manifest["resumed"]) == 1


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL])
@pytest.mark.parametrize(("when", "seed"), [("anywhere", 1), ("anywhere", 2), ("mid-stream", 3), ("mid-stream", 4)])
def test_a_run_killed_at_a_random_point_is_resumed(population: dict, sig: signal.Signals, when: str,
                                                   seed: int) -> None:
    """Killed at a random time after it started, or after it wrote its first lines (one worker: the second
    part of the population is screened while the first part's lines are in the file)."""
    out = population["tmp"] / f"killed-{sig.name}-{seed}.jsonl"
    partial = out.with_name(out.name + ".partial")
    proc = start(*population["args"], "-o", str(out), "--workers", "1")
    wait_for(out.with_name(out.name + ".partial.json"), proc)
    if when == "mid-stream":
        wait_for(partial, proc, min_bytes=0)
    time.sleep(random.Random(seed).uniform(0, 1.5 if when == "anywhere" else 0.3))
    if proc.poll() is None:
        os.killpg(proc.pid, sig)
    _, err = proc.communicate(timeout=600)
    if out.with_name(out.name + ".manifest.json").exists():  # finished before the signal: a whole run
        assert proc.returncode in (0, 130, -signal.SIGINT, -signal.SIGKILL)
        assert sorted(lines(out)) == sorted(lines(population["full"]))
        return
    assert proc.returncode == (130 if sig == signal.SIGINT else -signal.SIGKILL), err
    if sig == signal.SIGKILL and out.exists():  # killed between the rename and the manifest: --resume takes it back
        assert not partial.exists()
    else:
        assert not out.exists() and partial.exists()
    if sig == signal.SIGINT:
        assert "Traceback" not in err and "--resume" in err
        assert all(x.endswith("}") for x in partial.read_text().split("\n")[:-1])
    check_resumed(population, out)


def test_ctrl_c_while_the_workers_run_stops_cleanly(population: dict) -> None:
    out = population["tmp"] / "ctrl-c.jsonl"
    proc = start(*population["args"], "-o", str(out), "--workers", "2")
    wait_for(out.with_name(out.name + ".partial.json"), proc)
    assert proc.poll() is None
    os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C does: every process of the group gets it
    _, err = proc.communicate(timeout=600)
    if proc.returncode == 0 and out.with_name(out.name + ".manifest.json").exists():
        pytest.skip("the run was finishing when Ctrl-C came (ignored while the manifest is written)")
    assert proc.returncode == 130, err
    assert "Traceback" not in err and "KeyboardInterrupt" not in err
    assert "interrupted" in err and out.with_name(out.name + ".partial").exists()
    check_resumed(population, out)


def killed(population: dict, out: Path) -> Path:
    """``-o out`` started and killed (SIGKILL) once it has written its options: its ``FILE.partial`` (the test is
    skipped if the run ended first)."""
    proc = start(*population["args"], "-o", str(out))
    wait_for(out.with_name(out.name + ".partial.json"), proc)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=600)
    if proc.returncode == 0:
        pytest.skip("the run ended before it could be killed")
    return out.with_name(out.name + ".partial")


def test_resume_after_a_line_cut_short(population: dict) -> None:
    """A run killed in the middle of its output: the whole lines count as done, the cut one is dropped."""
    out = population["tmp"] / "cut.jsonl"
    partial = killed(population, out)
    full = lines(population["full"])
    partial.write_text("\n".join(full[:120]) + "\n" + full[120][:50])  # 120 whole lines and a cut one
    check_resumed(population, out)


def test_resume_takes_back_a_file_left_without_its_manifest(population: dict) -> None:
    """Killed after ``FILE.partial`` was renamed to ``FILE`` and before the manifest was written: the run did not
    finish (no manifest), and ``--resume`` continues it from ``FILE``."""
    out = population["tmp"] / "renamed.jsonl"
    partial = killed(population, out)
    full = lines(population["full"])
    partial.write_text("\n".join(full[:100]) + "\n")
    os.replace(partial, out)  # where the kill left it: FILE without FILE.manifest.json
    check_resumed(population, out)


def test_resume_refuses_other_options_and_a_fresh_run_refuses_a_partial(population: dict) -> None:
    out = population["tmp"] / "refused.jsonl"
    partial = killed(population, out)
    before = partial.read_bytes()
    args = list(population["args"])
    other = cli(*args, "--all-criteria", "-o", str(out), "--resume")
    assert other.returncode == 2 and "--all-criteria" in other.stderr and "differs" in other.stderr
    args[args.index("--as-of") + 1] = "2025-01-01"
    other = cli(*args, "-o", str(out), "--resume")
    assert other.returncode == 2 and "--as-of '2025-06-30' -> '2025-01-01'" in other.stderr
    fresh = cli(*population["args"], "-o", str(out))
    assert fresh.returncode == 2 and "--resume continues it" in fresh.stderr
    assert partial.read_bytes() == before and not out.exists()
    nothing = cli(*population["args"], "-o", str(population["tmp"] / "never.jsonl"), "--resume")
    assert nothing.returncode == 2 and "no never.jsonl.partial" in nothing.stderr
    table = cli(*population["args"], "--format", "table", "-o", str(out), "--resume")
    assert table.returncode == 2 and "JSON lines" in table.stderr


def test_an_incomplete_run_gets_its_file_and_a_manifest_that_says_so(population: dict, tmp_path: Path) -> None:
    folder = tmp_path / "pop"
    folder.mkdir()
    for f in population["folder"].glob("*.ndjson"):
        (folder / f.name).symlink_to(f)
    (folder / "Patient.more.ndjson").write_text('{"resourceType":"Patient","id":"cut-short","gender":\n')
    out = tmp_path / "incomplete.jsonl"
    args = ["screen", "--study", STUDY, "--source", str(folder), "--as-of", population["args"][-1], "-o", str(out)]
    done = cli(*args, "-q")
    assert done.returncode == 3
    assert "incomplete" in done.stderr and "codes that map to no concept" in done.stderr  # -q keeps the warnings
    assert "patient records" not in done.stderr and "as of" not in done.stderr  # but not the summaries
    manifest = json.loads((tmp_path / "incomplete.jsonl.manifest.json").read_text())
    assert (manifest["exit_status"], manifest["complete"], manifest["lines"]) == (3, False, 300)
    assert manifest["source_report"]["patients_not_read"] == {"Patient resource unreadable": 1}


def test_progress_lines_when_standard_error_is_not_a_terminal(population: dict) -> None:
    every = {"FHIR_ADAPTER_PROGRESS_SECONDS": "0"}
    done = cli(*population["args"], env=every)
    assert done.returncode == 0
    shown = [x for x in done.stderr.splitlines() if x.startswith("fhir-adapter: screen: ")]
    assert shown and all(" of 300 patients, " in x and "/s" in x for x in shown)
    assert shown[-1].startswith("fhir-adapter: screen: 300 of 300 patients")
    quiet = cli(*population["args"], "-q", env=every)
    assert quiet.returncode == 0 and quiet.stdout == done.stdout
    assert "fhir-adapter: screen: " not in quiet.stderr and "patient records" not in quiet.stderr
    default = cli("records", "--source", str(population["folder"]), "--patient", "nobody")
    assert "fhir-adapter: records: " not in default.stderr  # a run shorter than the interval shows none


def test_a_server_run_interrupted_mid_stream_is_resumed(fhir_base: str, tmp_path: Path) -> None:
    from fhir_adapter.client import FhirClient
    from fhir_adapter.sample.load import load_sample

    load_sample(FhirClient(fhir_base, strict=True), batch_size=1000)
    ids = [json.loads(x)["id"] for x in SAMPLE_PATIENTS.read_text().splitlines() if x.strip()]
    args = ["screen", "--study", STUDY, "--as-of", "2026-06-30", "--source", fhir_base,
            "--site", str(ROOT / "fhir_adapter" / "sample" / "site-mappings.json")]
    for pid in ids:
        args += ["--patient", pid]
    full = tmp_path / "full.jsonl"
    assert cli(*args, "-o", str(full)).returncode == 0
    out = tmp_path / "out.jsonl"
    proc = start(*args, "-o", str(out))
    wait_for(out.with_name("out.jsonl.partial"), proc)  # some lines written: the run is mid-stream
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGINT)
    _, err = proc.communicate(timeout=600)
    if proc.returncode == 0:
        pytest.skip("the run ended before it could be interrupted")
    assert proc.returncode == 130 and "Traceback" not in err
    written = lines(out.with_name("out.jsonl.partial"))
    assert 0 < len(written) < len(ids)
    manifest = json.loads((tmp_path / "full.jsonl.manifest.json").read_text())
    assert manifest["inputs"] == {"server": fhir_base}
    done = cli(*args, "-o", str(out), "--resume")
    assert done.returncode == 0, done.stderr
    assert sorted(lines(out)) == sorted(lines(full)) and len(lines(out)) == len(ids)
