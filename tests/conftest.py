"""Shared fixtures. The real FHIR server: ``FHIR_BASE`` when .ci/run (or a developer) started one, else
``../shared/fhir-server/start`` is run once for the whole test session and stopped at the end."""

from __future__ import annotations

import os
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from hypothesis import HealthCheck, Phase, settings

# Property-based tests: "ci" (the default) is derandomised with a capped number of examples and no per-example
# deadline (a loaded CI machine must not fail them); HYPOTHESIS_PROFILE=dev explores more, with new seeds.
settings.register_profile("ci", derandomize=True, max_examples=40, deadline=None, print_blob=True,
                          phases=[Phase.explicit, Phase.reuse, Phase.generate],  # shrinking a slow example: dev
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture,
                                                 HealthCheck.data_too_large])
settings.register_profile("dev", max_examples=300, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).resolve().parent / "fixtures"
SERVER_SCRIPTS = ROOT.parent / "shared" / "fhir-server"

# The run's own cache of validated mapping files: results never depend on a user's earlier runs.
os.environ["FHIR_ADAPTER_CACHE"] = tempfile.mkdtemp(prefix="fhir-adapter-test-cache-")


@pytest.fixture(scope="session")
def fhir_base() -> Iterator[str]:
    """Base URL of a real FHIR R4 server (SEKMET) on 127.0.0.1."""
    base = os.environ.get("FHIR_BASE")
    started = False
    if not base:
        default = f"http://127.0.0.1:{os.environ.get('FHIR_PORT', '8080')}/fhir"
        if _answers(default):
            base = default  # someone else's server: use it, never stop it
        else:
            start = SERVER_SCRIPTS / "start"
            if not start.exists():
                pytest.skip(f"no FHIR server: set FHIR_BASE or provide {start}")
            out = subprocess.run([str(start)], check=True, capture_output=True, text=True, timeout=600)
            base = out.stdout.strip().splitlines()[-1]
            started = True
    requests.get(f"{base}/metadata", timeout=10).raise_for_status()
    yield base
    if started:
        subprocess.run([str(SERVER_SCRIPTS / "stop")], check=False, capture_output=True, timeout=60)


def _answers(base: str) -> bool:
    try:
        return requests.get(f"{base}/metadata", timeout=2).status_code == 200
    except requests.RequestException:
        return False


@pytest.fixture
def tag() -> str:
    """A fresh token to keep one test's resources apart from another's on the shared server."""
    return uuid.uuid4().hex[:12]


@pytest.fixture(autouse=True)
def _restore_package_logger() -> Iterator[None]:
    """The command line (run in-process by some tests) configures the ``fhir_adapter`` logger for a terminal:
    its own handler, no propagation. Put it back after each test so ``caplog`` sees later tests' messages."""
    import logging

    logger = logging.getLogger("fhir_adapter")
    saved = (logger.handlers[:], logger.level, logger.propagate)
    yield
    logger.handlers[:], logger.level, logger.propagate = saved[0], saved[1], saved[2]


@pytest.fixture(scope="module")
def one_search_per_type() -> Iterator[None]:
    """Read a server with one search per clinical type, not ``Patient/$everything``: for tests that aim faults,
    edits or counts at those searches (also in the commands they run in their own processes)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("FHIR_ADAPTER_SERVER_PLAN", "searches")
        yield
