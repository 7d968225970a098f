"""Progress on standard error: a bar on a terminal, plain lines otherwise, nothing when quiet."""

from __future__ import annotations

import fcntl
import io
import os
import pty
import struct
import termios

import pytest

from fhir_adapter.cli import progress as progress_module
from fhir_adapter.cli.progress import Progress


class Clock:
    """A clock the test moves: no timing in the assertions."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    c = Clock()
    monkeypatch.setattr(progress_module.time, "monotonic", c)
    return c


def test_plain_lines_every_interval_with_an_unknown_total(clock: Clock, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FHIR_ADAPTER_PROGRESS_SECONDS", "5")
    err = io.StringIO()
    p = Progress("screen", None, stream=err)
    for _ in range(10):
        clock.now += 1
        p.advance()
    p.close()
    shown = err.getvalue().splitlines()
    # at 5 s and 10 s: count and rate, no total and no time left
    assert shown == ["fhir-adapter: screen: 5 patients, 1.0/s, 0:05 elapsed",
                     "fhir-adapter: screen: 10 patients, 1.0/s, 0:10 elapsed"]


def test_time_left_with_a_total_and_the_last_count_at_the_end(clock: Clock, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FHIR_ADAPTER_PROGRESS_SECONDS", "4")
    err = io.StringIO()
    p = Progress("records", 100, stream=err)
    for _ in range(6):
        clock.now += 1
        p.advance(2)
    p.close()
    assert err.getvalue().splitlines() == [
        "fhir-adapter: records: 8 of 100 patients, 2.0/s, 0:04 elapsed, about 0:46 left",
        "fhir-adapter: records: 12 of 100 patients, 2.0/s, 0:06 elapsed, about 0:44 left"]


def test_quiet_shows_nothing(clock: Clock, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FHIR_ADAPTER_PROGRESS_SECONDS", "0")
    err = io.StringIO()
    p = Progress("screen", 10, stream=err, quiet=True)
    for _ in range(10):
        clock.now += 1
        p.advance()
    p.close()
    assert err.getvalue() == "" and p.n == 10


def test_a_bar_on_a_terminal(clock: Clock) -> None:
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 30, 120, 0, 0))
    with os.fdopen(slave, "w") as tty:
        p = Progress("screen", 100, stream=tty)
        assert p.bar is not None
        for _ in range(40):
            clock.now += 0.5
            p.advance()
        tty.flush()
        shown = os.read(master, 65536).decode()
        p.close()
    os.close(master)
    assert "fhir-adapter: screen:" in shown and "/100" in shown and "patients/s" in shown
