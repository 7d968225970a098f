"""Several patients read at once from the real server (``--concurrency``), with either request plan.

The result lines are those of a one-at-a-time run, in the same order. Through the fault-injecting proxy (429 with
Retry-After, 503 with and without it, connection resets) no patient is lost, and the throttle's recorded history
shows the requests in flight halved and grown back. Retry waits are slept 1/20th as long (the policy is the real
one, only the clock is fast); nothing here asserts on time.
"""

from __future__ import annotations

import functools
import os
import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from fhir_adapter.cli.main import main
from fhir_adapter.client import FhirClient, RetryPolicy
from fhir_adapter.client import client as client_module
from fhir_adapter.sample.load import load_sample
from fhir_adapter.sources import server as server_module
from fhir_adapter.sources.server import ServerSource
from tests.fault_proxy import Edit, FaultProxy, Rule
from tests.test_cli import run_cli

pytestmark = pytest.mark.server
SCREEN = ("screen", "--study", "NCT07377058", "--as-of", "2026-06-30")
SPEEDUP = 20


@pytest.fixture(scope="module")
def loaded(fhir_base: str) -> str:
    with FhirClient(fhir_base) as client:
        load_sample(client, batch_size=1000)
    return fhir_base


def screen_lines(base: str, concurrency: int, plan: str) -> list[bytes]:
    done = run_cli(*SCREEN, "--source", base, "--concurrency", str(concurrency),
                   env={**os.environ, "FHIR_ADAPTER_SERVER_PLAN": plan})
    assert done.returncode == 0, done.stderr
    return done.stdout.encode().splitlines()


@pytest.fixture(scope="module")
def reference(loaded: str) -> list[bytes]:
    """The screen of the sample, one patient at a time, one search per type (the adapter's first way)."""
    lines = screen_lines(loaded, 1, "searches")
    assert len(lines) >= 100
    return lines


@pytest.mark.parametrize("plan", ["searches", "everything"])
def test_eight_at_once_gives_the_lines_of_one_at_a_time_in_the_same_order(
        loaded: str, reference: list[bytes], plan: str) -> None:
    assert screen_lines(loaded, 8, plan) == reference
    if plan == "everything":
        assert screen_lines(loaded, 1, plan) == reference


def test_the_plan_follows_the_capability_statement(loaded: str) -> None:
    """$everything where the CapabilityStatement offers it; one search per type (medications with _include) where
    it does not, or when asked for."""
    patient = requests.get(f"{loaded}/Patient", params={"_count": 1, "_elements": "id"}, timeout=10).json()
    pid = patient["entry"][0]["resource"]["id"]

    def sent(proxy: FaultProxy, plan: str | None) -> set[str]:
        with proxy.running(), ServerSource(proxy.base, plan=plan) as source:
            assert [r.patient_id for r in source.records([pid])] == [pid]
        return {path.split("?")[0].rsplit("/", 1)[-1] for _, path in proxy.sent}

    offered = sent(FaultProxy(loaded), None)
    assert "$everything" in offered and "Condition" not in offered
    hidden = FaultProxy(loaded, edits=(Edit("/metadata", b'"name":"everything"', b'"name":"not-offered"'),))
    searched = sent(hidden, None)
    assert hidden.edited["/metadata"] == 1
    assert "$everything" not in searched and {"Condition", "Observation", "MedicationStatement"} <= searched
    forced = FaultProxy(loaded)
    assert "$everything" not in sent(forced, "searches")
    assert any("_include=MedicationStatement:medication" in path for _, path in forced.sent)


@pytest.fixture
def screen(monkeypatch: pytest.MonkeyPatch, capsysbinary: pytest.CaptureFixture[bytes]) -> Iterator[Any]:
    """``screen(proxy, concurrency)``: the screen command run here through ``proxy``, the retry waits on a fast
    clock; (exit status, result lines, standard error, the history of each throttle the run made)."""
    monkeypatch.setattr(client_module, "RetryPolicy",
                        functools.partial(RetryPolicy, sleep=lambda s: time.sleep(s / SPEEDUP)))
    made: list[Any] = []

    class Recorded(server_module.Throttle):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            made.append(self)

    monkeypatch.setattr(server_module, "Throttle", Recorded)

    def run(proxy: FaultProxy, concurrency: int) -> tuple[int, list[bytes], str, list[list[tuple[str, int]]]]:
        made.clear()
        status = main([*SCREEN, "--source", proxy.base, "--concurrency", str(concurrency)])
        out, err = capsysbinary.readouterr()
        base = proxy.base.encode()
        lines = [line.replace(base, b"") for line in out.splitlines()]
        return status, lines, err.decode(), [t.history for t in made]

    yield run


def first_patients(base: str, n: int) -> list[str]:
    page = requests.get(f"{base}/Patient", params={"_count": 200, "_elements": "id"}, timeout=10).json()
    return [e["resource"]["id"] for e in page["entry"]][:n]


@pytest.mark.parametrize("plan", ["searches", "everything"])
def test_throttled_and_reset_requests_lose_nothing_and_the_concurrency_falls_and_recovers(
        loaded: str, reference: list[bytes], screen: Any, monkeypatch: pytest.MonkeyPatch, plan: str) -> None:
    """The first patients' requests answer 429 (Retry-After), 503 (with and without) or reset the connection; the
    rest of the run is clean: every line is the one-at-a-time run's, the limit of 8 falls, then climbs back to 8."""
    monkeypatch.setenv("FHIR_ADAPTER_SERVER_PLAN", plan)
    faults = ("429", "503-retry-after", "503", "reset", "429", "503")
    rules = tuple(Rule(f"Patient/{pid}" if plan == "everything" else f"subject=Patient/{pid}&", fault, times=1)
                  for pid, fault in zip(first_patients(loaded, len(faults)), faults, strict=True))
    proxy = FaultProxy(loaded, rules=rules)
    with proxy.running():
        status, lines, err, histories = screen(proxy, 8)
    assert status == 0, err
    assert lines == [line.replace(loaded.encode(), b"") for line in reference]
    assert proxy.injected["429"] >= 2 and proxy.injected["503"] >= 1 and proxy.injected["reset"] >= 1
    (history,) = histories
    limits = [limit for _, limit in history]
    assert history[0] == ("start", 8)
    lowest = limits.index(min(limits))
    assert min(limits) <= 4 and ("decrease", min(limits)) == history[lowest]
    assert limits[-1] == 8 and any(kind == "increase" for kind, _ in history[lowest:])


def test_a_tenth_of_requests_throttled_or_reset_loses_no_patient(
        loaded: str, reference: list[bytes], screen: Any) -> None:
    """Faults drawn over the whole run (the same faults whatever the thread timing): every patient gets the line
    of a clean one-at-a-time run, and the limit was lowered."""
    proxy = FaultProxy(loaded, rate=0.1, seed=7, faults=("429", "503", "503-retry-after", "reset"))
    with proxy.running():
        status, lines, err, histories = screen(proxy, 8)
    assert status == 0, err
    assert lines == [line.replace(loaded.encode(), b"") for line in reference]
    assert sum(proxy.injected.values()) >= 5
    (history,) = histories
    assert any(kind == "decrease" for kind, _ in history)


def test_concurrency_is_bounded(loaded: str) -> None:
    for bad in ("0", "33", "four"):
        done = run_cli(*SCREEN, "--source", loaded, "--concurrency", bad)
        assert done.returncode == 2 and "--concurrency" in done.stderr and "1 to 32" in done.stderr
    with pytest.raises(ValueError, match="concurrency"):
        ServerSource(loaded, concurrency=0)
