"""The sample read from a flaky server: the real FHIR server behind a fault-injecting proxy (``tests/fault_proxy``).

With 20 % of requests failing (429 and 503 with Retry-After, 500, 503, resets, answers cut mid-body, HTML from a
gateway), the screen loses at most 2 of the sample's patients and gives every other one exactly the line of a
fault-free run; a patient the server keeps failing on is counted, and the run exits 3; a patient it fails on
only during the run is read at its end, and the run exits 0. The retry waits the client asks for are slept
1/20th as long (``SPEEDUP``): the policy is the real one, only the clock is fast.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Iterator
from typing import Any

import orjson
import pytest

from fhir_adapter.cli.main import main
from fhir_adapter.client import FhirClient, RetryPolicy
from fhir_adapter.client import client as client_module
from fhir_adapter.paths import sample_dir
from fhir_adapter.sample.load import load_sample
from fhir_adapter.sources.bulk_export import ExportSource
from tests.fault_proxy import FAULTS, FaultProxy, Rule
from tests.test_cli import run_cli

pytestmark = [pytest.mark.server, pytest.mark.usefixtures("one_search_per_type")]
SCREEN = ("screen", "--study", "NCT07377058", "--as-of", "2026-06-30")
SPEEDUP = 20
PATIENT = "mda5-ild-01"  # a candidate: losing its Conditions would change its result


@pytest.fixture(scope="module")
def sample_ids() -> list[str]:
    return [orjson.loads(line)["id"] for line in (sample_dir() / "Patient.ndjson").read_bytes().splitlines()]


@pytest.fixture(scope="module")
def loaded(fhir_base: str) -> str:
    with FhirClient(fhir_base) as client:
        load_sample(client, batch_size=1000)
    return fhir_base


def lines_by_patient(stdout: bytes) -> dict[str, bytes]:
    return {orjson.loads(line)["patient"].removeprefix("Patient/"): line for line in stdout.splitlines()}


@pytest.fixture(scope="module")
def reference(loaded: str) -> dict[str, bytes]:
    """Every patient's screen line from the server itself, without faults (the command in its own process)."""
    done = run_cli(*SCREEN, "--source", loaded)
    assert done.returncode == 0, done.stderr
    return lines_by_patient(done.stdout.encode())


@pytest.fixture
def screen(monkeypatch: pytest.MonkeyPatch, capsysbinary: pytest.CaptureFixture[bytes]) -> Iterator[Any]:
    """``screen(proxy)``: the screen command run here, through ``proxy``, with the client's default retry policy
    on a fast clock; (exit status, lines by patient, standard error, the waits the policy asked for)."""
    waits: list[float] = []

    def sleep(seconds: float) -> None:
        waits.append(seconds)
        time.sleep(seconds / SPEEDUP)

    monkeypatch.setattr(client_module, "RetryPolicy", functools.partial(RetryPolicy, sleep=sleep))

    def run(proxy: FaultProxy) -> tuple[int, dict[str, bytes], str, list[float]]:
        waits.clear()
        status = main([*SCREEN, "--source", proxy.base])
        out, err = capsysbinary.readouterr()
        return status, lines_by_patient(out), err.decode(), list(waits)

    yield run


def test_a_fifth_of_requests_failing_loses_at_most_two_patients_and_changes_no_result(
        loaded: str, reference: dict[str, bytes], sample_ids: list[str], screen: Any) -> None:
    proxy = FaultProxy(loaded, rate=0.2, seed=1)
    with proxy.running():
        status, got, err, waits = screen(proxy)
    assert sum(proxy.injected.values()) >= 0.15 * proxy.requests and set(proxy.injected) == set(FAULTS)
    lost = [pid for pid in sample_ids if pid not in got]
    assert len(lost) <= 2, (lost, err[-3000:])
    changed = [pid for pid in sample_ids if pid in got and got[pid] != reference[pid]]
    assert changed == []
    assert status == (3 if "incomplete" in err else 0)
    assert status == 0 or lost  # when every sample patient got a result, only another test's could be missing
    assert {0.0, 1.0} <= set(waits)  # the proxy's Retry-After values, waited as given


@pytest.mark.parametrize("fault", ["500", "cut-close"])
def test_a_patient_the_server_keeps_failing_on_is_counted_and_the_run_exits_3(
        loaded: str, reference: dict[str, bytes], sample_ids: list[str], screen: Any, fault: str) -> None:
    proxy = FaultProxy(loaded, rules=(Rule(f"/Condition?subject=Patient/{PATIENT}&", fault),))
    with proxy.running():
        status, got, err, _ = screen(proxy)
    assert status == 3
    assert f"incomplete: 1 patient not read ({len(reference) - 1} got a result)" in err, err[-3000:]
    assert f"Patient/{PATIENT} not read" in err and "failed twice" in err
    assert PATIENT not in got
    assert {pid: got.get(pid) for pid in sample_ids if pid != PATIENT} == {
        pid: reference[pid] for pid in sample_ids if pid != PATIENT}
    assert proxy.sent[("GET", f"/fhir/Condition?subject=Patient/{PATIENT}&_count=200")] == 8  # 4 + 4 at the end


def test_a_patient_the_server_fails_on_only_during_the_run_gets_its_result_and_the_run_exits_0(
        loaded: str, reference: dict[str, bytes], sample_ids: list[str], screen: Any) -> None:
    # every attempt the client makes during the run gets a cut answer; the attempt at the end of the run succeeds
    proxy = FaultProxy(loaded, rules=(Rule(f"/Condition?subject=Patient/{PATIENT}&", "cut-close", times=4),))
    with proxy.running():
        status, got, err, _ = screen(proxy)
    assert status == 0, err[-2000:]
    assert f"Patient/{PATIENT} not read" in err and "tried again at the end of the run" in err
    assert list(got)[-1] == PATIENT  # read after every other patient
    assert got == reference


def test_a_server_failing_every_patient_stops_the_run_and_says_so(loaded: str, screen: Any) -> None:
    proxy = FaultProxy(loaded, rules=(Rule("/Condition?subject=", "503"),))
    with proxy.running():
        status, got, err, _ = screen(proxy)
    assert status == 1 and got == {}
    assert ("20 patients in a row could not be read; the server looks down, so the run stopped: 0 patients read, "
            "20 not read, any others not tried") in err
    # 4 sends each for the 20 patients, and for those already being read beside them (at most 2 x --concurrency)
    assert 20 * 4 <= sum(n for (_, path), n in proxy.sent.items() if "/Condition?" in path) <= (20 + 7) * 4


def test_a_bulk_export_through_a_flaky_proxy_reads_every_file_whole(loaded: str, tag: str) -> None:
    def exported(base: str) -> list[tuple[str, str]]:
        policy = RetryPolicy(base_delay=0.01, max_delay=0.05)
        with ExportSource(base, retry=policy, poll_interval=0.05, workers=1) as source:
            return sorted((r["resourceType"], r["id"]) for r, _ in source.resources())

    expected = exported(loaded)
    # each output file's first download is cut mid-way (the connection closed, no length declared), and a
    # tenth of all requests fail besides
    proxy = FaultProxy(loaded, rate=0.1, seed=3, rules=(Rule("/bulk-files/", "cut-close", times=1),))
    with proxy.running():
        got = exported(proxy.base)
    assert proxy.injected["cut-close"] >= 5
    assert got == expected and len(expected) >= 4900
