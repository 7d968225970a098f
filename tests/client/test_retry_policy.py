"""The retry rule and the Retry-After parser, on their own."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
import requests
from urllib3.exceptions import MaxRetryError, NewConnectionError

from fhir_adapter.client.retry import RetryPolicy, may_retry, never_reached_server, parse_retry_after


def test_parse_retry_after() -> None:
    now = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
    assert parse_retry_after("120") == 120.0
    assert parse_retry_after("Thu, 01 Jan 2026 12:00:30 GMT", now) == 30.0
    assert parse_retry_after("Thu, 01 Jan 2026 11:00:00 GMT", now) == 0.0  # in the past: go now
    assert parse_retry_after("soon") is None
    assert parse_retry_after(None) is None


def test_backoff_is_capped_full_jitter() -> None:
    top = RetryPolicy(base_delay=1, max_delay=10, random=lambda: 0.999999)
    assert [round(top.backoff(n)) for n in range(1, 7)] == [1, 2, 4, 8, 10, 10]
    assert RetryPolicy(random=lambda: 0.0).backoff(5) == 0.0
    assert top.delay(1, retry_after=99) == 10 and top.delay(1, retry_after=3) == 3


@pytest.mark.parametrize(("method", "status", "conditional", "retry_after", "expected"), [
    ("GET", 503, False, False, True),
    ("GET", 404, False, False, False),
    ("GET", 400, False, False, False),
    ("PUT", 504, False, False, True),
    ("POST", 500, False, False, False),
    ("POST", 502, False, False, False),
    ("POST", 503, False, False, False),
    ("POST", 503, False, True, True),
    ("POST", 429, False, False, True),
    ("POST", 500, True, False, True),
    ("POST", 409, True, False, False),
])
def test_may_retry_status(method: str, status: int, conditional: bool, retry_after: bool, expected: bool) -> None:
    assert may_retry(method, status=status, conditional=conditional, retry_after=retry_after) is expected


def test_may_retry_exceptions() -> None:
    refused = requests.exceptions.ConnectionError(MaxRetryError(None, "/", NewConnectionError(None, "refused")))  # type: ignore[arg-type]
    reset = requests.exceptions.ConnectionError("Connection reset by peer")
    assert never_reached_server(refused) and never_reached_server(requests.exceptions.ConnectTimeout())
    assert not never_reached_server(reset)
    assert may_retry("POST", exc=refused)
    assert not may_retry("POST", exc=reset)
    assert not may_retry("POST", exc=requests.exceptions.ReadTimeout())
    assert may_retry("GET", exc=reset) and may_retry("GET", exc=requests.exceptions.ReadTimeout())
    assert not may_retry("GET", exc=requests.exceptions.InvalidURL())
