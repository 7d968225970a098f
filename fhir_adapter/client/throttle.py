"""How many requests a client keeps in flight to one server: additive increase, multiplicative decrease (AIMD).

``Aimd`` is the arithmetic alone (no threads, no sleeping; the clock is passed in): ``limit`` starts at ``ceiling``;
every answer that is not a throttle adds ``1 / limit`` (about one more request in flight per round of answers, as
TCP's congestion avoidance); a 429 or 503 halves it (never below ``floor``) and, when the server sends
``Retry-After``, holds every new request back until then. One burst of throttles lowers the limit once: a throttle
of a request sent before the last decrease (an older ``epoch``) does not lower it again.

``Throttle`` puts it in front of the requests of several threads: ``slot()`` waits for room under the limit and
for the server's Retry-After to pass, and ``done()`` reports the answer. ``history`` records each change of the
whole-number limit (``(reason, limit)``), which is what tests assert on, never time.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

THROTTLE_STATUSES = frozenset({429, 503})


@dataclass
class Aimd:
    """The limit on requests in flight, between ``floor`` and ``ceiling``; ``max_wait`` caps a Retry-After."""

    ceiling: int
    floor: int = 1
    decrease: float = 0.5
    max_wait: float = 30.0
    limit: float = field(init=False)
    epoch: int = 0  # how many times the limit was lowered
    resume_at: float = 0.0  # no new request before this time (the server's Retry-After)
    history: list[tuple[str, int]] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not 1 <= self.floor <= self.ceiling:
            raise ValueError(f"AIMD needs 1 <= floor <= ceiling, not {self.floor} and {self.ceiling}")
        self.limit = float(self.ceiling)
        self.history.append(("start", self.ceiling))

    @property
    def allowed(self) -> int:
        """Requests that may be in flight now."""
        return max(self.floor, math.floor(self.limit + 1e-9))

    def answered(self) -> None:
        """An answer that is not a throttle (success or another error): additive increase."""
        if self.limit < self.ceiling:
            before = self.allowed
            self.limit = min(float(self.ceiling), self.limit + 1.0 / self.limit)
            if self.allowed != before:
                self.history.append(("increase", self.allowed))

    def throttled(self, epoch: int, now: float, retry_after: float | None = None) -> None:
        """A 429 or 503 to a request sent in ``epoch``: multiplicative decrease (once per epoch), and no new
        request before ``now + retry_after`` (capped by ``max_wait``)."""
        if retry_after is not None:
            self.resume_at = max(self.resume_at, now + min(max(retry_after, 0.0), self.max_wait))
        if epoch != self.epoch:
            return  # sent before the last decrease: that one answered for it
        self.epoch += 1
        self.limit = max(float(self.floor), self.limit * self.decrease)
        self.history.append(("decrease", self.allowed))

    def wait(self, now: float) -> float:
        """Seconds to hold a new request back (the server's Retry-After), 0 when it may go."""
        return max(0.0, self.resume_at - now)

    @property
    def lowest(self) -> int:
        return min(limit for _, limit in self.history)


class Throttle:
    """``Aimd`` shared by threads: at most ``aimd.allowed`` requests in flight, none before its ``resume_at``."""

    def __init__(self, ceiling: int, *, floor: int = 1, max_wait: float = 30.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.aimd = Aimd(ceiling, floor=floor, max_wait=max_wait)
        self._clock = clock
        self._cond = threading.Condition()
        self._active = 0

    @property
    def history(self) -> list[tuple[str, int]]:
        with self._cond:
            return list(self.aimd.history)

    @contextmanager
    def slot(self) -> Iterator[int]:
        """Wait for room under the limit (and for a Retry-After to pass); the epoch the request is sent in."""
        with self._cond:
            while True:
                pause = self.aimd.wait(self._clock())
                if pause <= 0 and self._active < self.aimd.allowed:
                    break
                self._cond.wait(pause if pause > 0 else None)
            self._active += 1
            epoch = self.aimd.epoch
        try:
            yield epoch
        finally:
            with self._cond:
                self._active -= 1
                self._cond.notify_all()

    def done(self, epoch: int, status: int | None, retry_after: float | None = None) -> None:
        """Report the answer to a request sent in ``epoch`` (``status`` None: no answer, e.g. a reset)."""
        with self._cond:
            if status in THROTTLE_STATUSES:
                self.aimd.throttled(epoch, self._clock(), retry_after)
            elif status is not None:
                self.aimd.answered()
            self._cond.notify_all()
