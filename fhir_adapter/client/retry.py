"""When a failed FHIR request may be sent again, and how long to wait first.

The rule (``may_retry``):

- Only transient failures are retried: HTTP 408, 429, 500, 502, 503, 504, connection errors and timeouts,
  and a 2xx answer whose body cannot be read as what was asked for (cut short, not JSON, an HTML page from
  a gateway, not the resource or Bundle expected): a proxy or a dropped connection made it, not the request.
  Any other 4xx is the client's fault and fails at once.
- Idempotent requests (GET, HEAD, PUT, DELETE) and *conditional* creates (``If-None-Exist``: a repeat finds
  the resource the first attempt made) are retried on every transient failure.
- A plain POST (create, transaction, batch) is never retried blindly: a repeat after a read timeout, a
  502 or an answer cut short could store everything twice. It is retried only when the server certainly did
  not act on it: the connection was never made (refused, DNS failure, connect timeout), or the server answered 429
  (RFC 6585: the request was not processed), or 503 *with* ``Retry-After`` (the server says "come back
  later", as Epic and Cerner do during throttling and maintenance). A bare 503 or 502/504 from a gateway
  may come after the backend committed, so it is not retried.

Waits are capped exponential backoff with full jitter (``random() * min(max_delay, base * 2**n)``), so
many adapter workers do not hammer a recovering server in step. A server's ``Retry-After`` (seconds or
an HTTP-date) replaces the backoff, capped by ``max_delay``.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

import requests
from urllib3.exceptions import NewConnectionError

RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "PUT", "DELETE", "OPTIONS"})


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how patiently to retry. ``sleep`` and ``random`` are injectable for tests."""

    max_attempts: int = 4  # attempts in all, the first one included
    base_delay: float = 0.5  # seconds
    max_delay: float = 30.0  # cap on any one wait, Retry-After included
    sleep: Callable[[float], None] = field(default=time.sleep, repr=False)
    random: Callable[[], float] = field(default=random.random, repr=False)

    def backoff(self, attempt: int) -> float:
        """Full-jitter wait after failed attempt number ``attempt`` (1-based)."""
        return self.random() * min(self.max_delay, self.base_delay * 2 ** (attempt - 1))

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        """The wait before the next attempt: the server's ``Retry-After`` when given, else the backoff."""
        if retry_after is not None:
            return min(max(retry_after, 0.0), self.max_delay)
        return self.backoff(attempt)


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or HTTP-date), or None."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(float(value), 0.0)
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max((when - (now or datetime.now(UTC))).total_seconds(), 0.0)


def never_reached_server(exc: BaseException) -> bool:
    """True when the request certainly was not sent: no connection was made (refused, DNS, connect timeout)."""
    if isinstance(exc, requests.exceptions.ConnectTimeout):
        return True
    seen: set[int] = set()
    stack: list[object] = [exc]
    while stack:
        e = stack.pop()
        if id(e) in seen or e is None:
            continue
        seen.add(id(e))
        if isinstance(e, NewConnectionError):  # includes NameResolutionError
            return True
        if isinstance(e, BaseException):
            stack.extend([*e.args, getattr(e, "reason", None), e.__cause__, e.__context__])
    return False


def transient(exc: BaseException) -> bool:
    """Connection errors, timeouts, and bodies cut off mid-way or garbled in transit (a compressed body that
    does not decompress) are worth another try."""
    return isinstance(exc, requests.exceptions.ConnectionError | requests.exceptions.Timeout
                      | requests.exceptions.ChunkedEncodingError | requests.exceptions.ContentDecodingError)


def may_retry(method: str, *, conditional: bool = False, status: int | None = None,
              exc: BaseException | None = None, retry_after: bool = False, unreadable_body: bool = False) -> bool:
    """Whether a request that failed with ``status`` (or ``exc``, or a 2xx answer whose body could not be read:
    ``unreadable_body``) may be sent again (see module docstring)."""
    safe = method.upper() in IDEMPOTENT_METHODS or conditional
    if unreadable_body:  # the server answered 2xx: it acted on the request
        return safe
    if exc is not None:
        return transient(exc) and (safe or never_reached_server(exc))
    if status not in RETRY_STATUSES:
        return False
    if safe:
        return True
    return status == 429 or (status == 503 and retry_after)
