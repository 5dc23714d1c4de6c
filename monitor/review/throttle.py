"""Failed-login throttling for the review desk: slow down password guessing.

Each failed login counts against the user name tried and against the client address. After
``max_per_user`` failures for one name (or ``max_per_client`` from one address) within
``window_s``, further attempts are refused with 429 and a Retry-After until the oldest failure
leaves the window — without checking the password, so a flood of guesses does not cost a scrypt
hash each either. A successful login clears that name's failures. State lives in the serving
process (Datasette runs as one), so a restart forgets it.

Behind a reverse proxy every client has the proxy's address; the per-name limit still holds.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from typing import Callable

MAX_PER_USER = 5
MAX_PER_CLIENT = 20
WINDOW_S = 15 * 60.0


class LoginThrottle:
    """Sliding-window counters of failed logins per user name and per client address."""

    def __init__(self, max_per_user: int = MAX_PER_USER, max_per_client: int = MAX_PER_CLIENT,
                 window_s: float = WINDOW_S, clock: Callable[[], float] = time.monotonic):
        self.max_per_user = max_per_user
        self.max_per_client = max_per_client
        self.window_s = window_s
        self.clock = clock
        self._failures: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def _recent(self, key: str, now: float) -> deque[float]:
        times = self._failures.get(key)
        if times is None:
            return deque()
        while times and times[0] <= now - self.window_s:
            times.popleft()
        if not times:
            del self._failures[key]
        return times

    def retry_after(self, username: str, client: str) -> int:
        """Seconds until this name and address may try again; 0 when they may try now."""
        now = self.clock()
        wait = 0.0
        with self._lock:
            for key, limit in ((f"u:{username.casefold()}", self.max_per_user), (f"c:{client}", self.max_per_client)):
                times = self._recent(key, now)
                if len(times) >= limit:
                    wait = max(wait, times[len(times) - limit] + self.window_s - now)
        return int(wait) + 1 if wait > 0 else 0

    def failed(self, username: str, client: str) -> None:
        """Count one failed login."""
        now = self.clock()
        with self._lock:
            for key in (f"u:{username.casefold()}", f"c:{client}"):
                self._failures.setdefault(key, deque()).append(now)

    def succeeded(self, username: str) -> None:
        """Forget the failures of a name that has just logged in."""
        with self._lock:
            self._failures.pop(f"u:{username.casefold()}", None)
