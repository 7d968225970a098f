"""``in_order``: a function applied to a stream of items by a few threads, the results given in the items' order.

For I/O-bound work (a patient's requests to a FHIR server). At most ``2 * workers`` items are taken ahead of the
one given next (a bounded reorder buffer), so memory does not grow with the stream; the stream itself is read in
the calling thread. Closing the generator early cancels what has not started and waits for what has.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")


def in_order(items: Iterable[T], fn: Callable[[T], R], workers: int,
             name: str = "fhir-adapter-read") -> Iterator[tuple[T, R]]:
    """``(item, fn(item))`` for every item, in the items' order, ``fn`` run by ``workers`` threads (in this
    thread when ``workers`` is 1). An exception ``fn`` raises comes out where its item's result would."""
    if workers <= 1:
        for item in items:
            yield item, fn(item)
        return
    pool = ThreadPoolExecutor(workers, thread_name_prefix=name)
    pending: deque[tuple[T, Future[R]]] = deque()
    window = 2 * workers
    try:
        for item in items:
            pending.append((item, pool.submit(fn, item)))
            while len(pending) >= window or pending[0][1].done():
                head, future = pending.popleft()
                yield head, future.result()
                if not pending:
                    break
        while pending:
            head, future = pending.popleft()
            yield head, future.result()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
