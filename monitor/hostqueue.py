"""Run network work concurrently across hosts, never more than N requests in flight per host.

A plain thread pool fed in list order lets one slow or rate-limited outlet occupy every
worker. This dispatcher hands each free worker the next item of the next host that has room
(round robin over hosts), so a stalled outlet holds at most ``per_host`` workers.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import TypeVar
from urllib.parse import urlsplit

T = TypeVar("T")
R = TypeVar("R")


def host_of(url: str) -> str:
    """The host (netloc, port included) politeness limits apply to."""
    return urlsplit(url).netloc.lower()


def run_by_host(items: Iterable[T], url_of: Callable[[T], str], work: Callable[[T], R], workers: int,
                per_host: int = 2, should_stop: Callable[[], bool] = lambda: False,
                thread_name: str = "crawl") -> Iterator[tuple[T, Future[R]]]:
    """Yield ``(item, finished future)`` as work completes, in completion order.

    Items whose host already has ``per_host`` requests in flight wait while other hosts go
    ahead. When ``should_stop()`` turns true no new item starts; those in flight finish and are
    yielded, the rest are dropped (the caller's queue still holds them).
    """
    queues: OrderedDict[str, deque[T]] = OrderedDict()
    for item in items:
        queues.setdefault(host_of(url_of(item)), deque()).append(item)
    in_flight: dict[str, int] = {}
    running: dict[Future[R], tuple[str, T]] = {}
    with ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix=thread_name) as pool:
        while running or (queues and not should_stop()):
            if not should_stop():
                _submit_ready(pool, queues, in_flight, running, work, max(1, workers), max(1, per_host))
            if not running:
                break
            done, _ = wait(list(running), return_when=FIRST_COMPLETED)
            for future in done:
                host, item = running.pop(future)
                in_flight[host] -= 1
                yield item, future


def _submit_ready(pool: ThreadPoolExecutor, queues: OrderedDict[str, deque[T]], in_flight: dict[str, int],
                  running: dict[Future[R], tuple[str, T]], work: Callable[[T], R], workers: int,
                  per_host: int) -> None:
    progressed = True
    while progressed and len(running) < workers:
        progressed = False
        for host in list(queues):  # one item per host per pass: round robin
            if len(running) >= workers:
                break
            if in_flight.get(host, 0) >= per_host:
                continue
            item = queues[host].popleft()
            if queues[host]:
                queues.move_to_end(host)  # next time, other hosts first
            else:
                del queues[host]
            in_flight[host] = in_flight.get(host, 0) + 1
            running[pool.submit(work, item)] = (host, item)
            progressed = True
