"""robots.txt: fetched once per site, cached, and honoured before every request (RFC 9309)."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit
from urllib.robotparser import RobotFileParser

from .errors import FetchError
from .models import Fetched

LOGGER = logging.getLogger(__name__)
CACHE_S = 24 * 3600.0          # RFC 9309: a cached robots.txt should not be used for more than 24 h
UNREACHABLE_CACHE_S = 600.0    # an unreachable robots.txt is re-tried after 10 minutes
MAX_CRAWL_DELAY_S = 60.0       # a Crawl-delay above this is capped (and the outlet polled slowly)


@dataclass
class _Rules:
    parser: RobotFileParser | None   # None: everything allowed (no robots.txt) or disallowed (unreachable)
    allow_all: bool
    reason: str
    fetched_at: float
    ttl_s: float
    error_kind: str = "robots"       # for an unreachable site: why (connection, timeout ...)


def origin(url: str) -> str:
    """``scheme://host[:port]`` of ``url`` (robots.txt applies per origin)."""
    parts = urlsplit(url)
    return f"{parts.scheme.lower()}://{parts.netloc.lower()}"


class RobotsPolicy:
    """Answers "may we fetch this URL?" from each site's robots.txt, fetched once and cached.

    Following RFC 9309: a robots.txt answering 4xx means no restrictions; a 5xx or an
    unreachable server means full disallow until it can be read again (re-tried after 10 min).
    """

    def __init__(self, fetch_robots: Callable[[str], Fetched], user_agent: str):
        self._fetch = fetch_robots
        self.agent = user_agent.split("/")[0].strip() or "*"
        self._rules: dict[str, _Rules] = {}
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()

    def check(self, url: str) -> None:
        """Raise :class:`FetchError` (kind ``robots``) when robots.txt forbids ``url``."""
        rules = self._rules_for(origin(url))
        if rules.allow_all:
            return
        if rules.parser is None:
            raise FetchError(url, rules.error_kind, f"not fetched: {rules.reason}")
        if not rules.parser.can_fetch(self.agent, url):
            raise FetchError(url, "robots", "disallowed by robots.txt")

    def crawl_delay(self, url: str) -> float | None:
        """The site's Crawl-delay for our user agent, if it sets one (capped)."""
        rules = self._rules_for(origin(url))
        if rules.parser is None:
            return None
        delay = rules.parser.crawl_delay(self.agent)
        return min(float(delay), MAX_CRAWL_DELAY_S) if delay else None

    def _rules_for(self, site: str) -> _Rules:
        with self._guard:
            lock = self._locks.setdefault(site, threading.Lock())
        with lock:  # one fetch of robots.txt per site, even with many threads asking at once
            rules = self._rules.get(site)
            if rules is None or time.monotonic() - rules.fetched_at > rules.ttl_s:
                rules = self._load(site)
                self._rules[site] = rules
            return rules

    def _load(self, site: str) -> _Rules:
        url = f"{site}/robots.txt"
        now = time.monotonic()
        try:
            fetched = self._fetch(url)
        except FetchError as e:
            if e.status is not None and 400 <= e.status < 500:
                return _Rules(None, True, f"robots.txt HTTP {e.status}: no restrictions", now, CACHE_S)
            LOGGER.warning("robots.txt of %s unreachable (%s): not crawling it for now", site, e)
            kind = e.kind if e.kind in ("connection", "timeout", "refused", "deadline") else "robots"
            return _Rules(None, False, f"robots.txt unreachable ({e}); RFC 9309 says assume disallow",
                          now, UNREACHABLE_CACHE_S, kind)
        if 400 <= fetched.status < 500:
            return _Rules(None, True, f"robots.txt HTTP {fetched.status}: no restrictions", now, CACHE_S)
        if fetched.status >= 500:
            return _Rules(None, False, f"robots.txt HTTP {fetched.status}; RFC 9309 says assume disallow",
                          now, UNREACHABLE_CACHE_S)
        parser = RobotFileParser(url)
        text = fetched.body[:500_000].decode("utf-8", errors="replace")  # RFC 9309: parse at least 500 KiB
        parser.parse(text.splitlines())
        return _Rules(parser, False, "robots.txt", now, CACHE_S)
