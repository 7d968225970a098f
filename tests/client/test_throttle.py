"""The AIMD arithmetic of ``client/throttle.py``, on a fake clock: no sleeping, no timing."""

from __future__ import annotations

import pytest

from fhir_adapter.client.throttle import Aimd, Throttle


def test_starts_at_the_ceiling_and_a_throttle_halves_the_limit() -> None:
    aimd = Aimd(8)
    assert aimd.allowed == 8
    aimd.throttled(aimd.epoch, now=100.0)
    assert aimd.allowed == 4
    aimd.throttled(aimd.epoch, now=100.0)
    assert aimd.allowed == 2
    aimd.throttled(aimd.epoch, now=100.0)
    aimd.throttled(aimd.epoch, now=100.0)
    assert aimd.allowed == 1  # never below the floor
    assert aimd.history == [("start", 8), ("decrease", 4), ("decrease", 2), ("decrease", 1), ("decrease", 1)]


def test_one_burst_of_throttles_lowers_the_limit_once() -> None:
    """Eight requests sent together all get 429: the limit halves once, not eight times (they were all sent in the
    epoch before the decrease)."""
    aimd = Aimd(8)
    sent_in = aimd.epoch
    for _ in range(8):
        aimd.throttled(sent_in, now=0.0)
    assert aimd.allowed == 4
    aimd.throttled(aimd.epoch, now=0.0)  # a request sent after the decrease, throttled again
    assert aimd.allowed == 2


def test_answers_add_one_request_per_round_up_to_the_ceiling() -> None:
    """From 2, the limit grows by 1/limit per answer (2.5, 2.9, 3.24...): 3 answers to reach 3, 3 more (3.55, 3.83,
    4.09) to reach 4; never above 8."""
    aimd = Aimd(8)
    aimd.throttled(aimd.epoch, now=0.0)
    aimd.throttled(aimd.epoch, now=0.0)
    assert aimd.allowed == 2
    aimd.answered()
    aimd.answered()
    assert aimd.allowed == 2
    aimd.answered()
    assert aimd.allowed == 3
    for _ in range(3):
        aimd.answered()
    assert aimd.allowed == 4
    for _ in range(100):
        aimd.answered()
    assert aimd.allowed == 8 and aimd.limit == 8.0
    assert [h for h in aimd.history if h[0] == "increase"] == [("increase", n) for n in range(3, 9)]


def test_retry_after_holds_new_requests_back_until_then() -> None:
    aimd = Aimd(4, max_wait=30.0)
    assert aimd.wait(now=10.0) == 0.0
    aimd.throttled(aimd.epoch, now=10.0, retry_after=2.0)
    assert aimd.wait(now=10.0) == 2.0 and aimd.wait(now=11.5) == 0.5 and aimd.wait(now=12.0) == 0.0
    aimd.throttled(0, now=11.0, retry_after=0.5)  # a shorter one later does not cut the first short
    assert aimd.wait(now=11.0) == 1.0
    aimd.throttled(aimd.epoch, now=20.0, retry_after=3600.0)  # capped
    assert aimd.wait(now=20.0) == 30.0


def test_a_floor_above_the_ceiling_is_refused() -> None:
    with pytest.raises(ValueError):
        Aimd(2, floor=3)


def test_throttle_reports_answers_by_status() -> None:
    """429 and 503 lower the limit (with their Retry-After, on the throttle's clock); other answers raise it; no
    answer at all (a reset) does neither."""
    now = [50.0]
    throttle = Throttle(4, clock=lambda: now[0])
    with throttle.slot() as epoch:
        throttle.done(epoch, 503, 1.0)
    assert throttle.aimd.allowed == 2 and throttle.aimd.wait(now[0]) == 1.0
    now[0] = 51.0
    with throttle.slot() as epoch:
        throttle.done(epoch, None)
    assert throttle.aimd.allowed == 2
    for status in (200, 404, 200):
        with throttle.slot() as epoch:
            throttle.done(epoch, status)
    assert throttle.aimd.allowed == 3
    with throttle.slot() as epoch:
        throttle.done(epoch, 429)
    assert throttle.history == [("start", 4), ("decrease", 2), ("increase", 3), ("decrease", 1)]
