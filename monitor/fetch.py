"""Fetch URLs over HTTP(S) with httpx: raw bytes and headers, size cap, retries, politeness, no SSRF, a deadline."""

from __future__ import annotations

import hashlib
import logging
import threading
import time
import zlib
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urlsplit

import httpx

from .config import FetchSettings
from .errors import FetchError
from .models import Fetched
from .netguard import AddressPolicy, GuardedTransport, RefusedAddress, deadline_passed, request_deadline
from .robots import RobotsPolicy

LOGGER = logging.getLogger(__name__)
RETRY_STATUSES = {429, 500, 502, 503, 504}
MAX_RETRY_AFTER_S = 120.0
PACING_MARGIN = 0.05   # requests to one host are spaced (1 + margin) x delay + slack apart on the wire
PACING_SLACK_S = 0.015  # the server may read a request late (its own scheduling): seen 8 ms on loaded loopback


def utc_now() -> str:
    """Current UTC time as ISO 8601 with a trailing Z (microseconds kept)."""
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class HostPacer:
    """Keeps at least the delay between two requests to one host, measured on the wire.

    A request takes its host's slot only when the previous request to that host has been SENT
    (its headers written, reported by httpcore's trace hook) at least ``delay`` ago. Spacing the
    moments requests were merely let go is not enough: a thread that reaches the socket a few
    ms late (the GIL, a new connection) would arrive closer than the delay to the next one. A
    5 % margin plus 15 ms covers the time the request line takes to reach the server's parser,
    which on a busy server can read one request late and the next one on time.
    """

    def __init__(self, delay_s: float):
        self.delay_s = delay_s
        self._cond = threading.Condition()
        self._sending: set[str] = set()
        self._last_sent: dict[str, float] = {}

    def acquire(self, url: str, min_delay_s: float | None = None) -> Callable[[], None]:
        """Wait for this host's turn; returns ``sent()``, to call once the request is on the wire.

        ``min_delay_s`` raises the delay for this host (a robots.txt Crawl-delay). Calling
        ``sent()`` more than once is harmless; it must be called even when the request failed.
        """
        delay = max(self.delay_s, min_delay_s or 0.0)
        if delay <= 0:
            return _nothing
        delay = delay * (1 + PACING_MARGIN) + PACING_SLACK_S
        host = urlsplit(url).netloc.lower()
        with self._cond:
            while True:
                if host in self._sending:
                    self._cond.wait()
                    continue
                wait = self._last_sent.get(host, float("-inf")) + delay - time.monotonic()
                if wait <= 0:
                    self._sending.add(host)
                    break
                self._cond.wait(wait)
        done = False

        def sent() -> None:
            nonlocal done
            with self._cond:
                if not done:
                    done = True
                    self._last_sent[host] = time.monotonic()
                    self._sending.discard(host)
                    self._cond.notify_all()

        return sent


def _nothing() -> None:
    return None


class Fetcher:
    """A reusable HTTP client applying the configured timeouts, size cap, retries, address policy and deadline.

    Every connection goes through :class:`monitor.netguard.GuardedTransport`: a host that is or
    resolves to a loopback, private, link-local ... address is refused (``FetchError`` kind
    ``refused``, never retried) unless ``settings.allow_private`` allows it, for the first
    request, each redirect and robots.txt alike. Each request (redirects and body included) is
    abandoned after ``settings.max_request_s`` (kind ``deadline``, never retried).
    """

    def __init__(self, settings: FetchSettings):
        self.settings = settings
        self.pacer = HostPacer(settings.per_host_delay_s)
        self.policy = AddressPolicy.from_entries(settings.allow_private)
        self.transport = GuardedTransport(self.policy)
        self._hops = threading.local()   # the URLs of the current request's hops (redirects), per thread
        self.client = httpx.Client(
            timeout=httpx.Timeout(settings.read_timeout_s, connect=settings.connect_timeout_s),
            follow_redirects=True,
            max_redirects=10,
            headers={"User-Agent": settings.user_agent, "Accept-Language": "es-MX,es;q=0.9,en;q=0.5",
                     # only encodings decode_body() can undo, so the raw bytes stay readable
                     "Accept-Encoding": "gzip, deflate"},
            transport=self.transport,
            trust_env=False,
            event_hooks={"request": [self._before_hop]},
        )
        self.robots = RobotsPolicy(self._fetch_robots, settings.user_agent) if settings.respect_robots else None

    def close(self) -> None:
        """Close the underlying connection pool."""
        self.client.close()

    def __enter__(self) -> "Fetcher":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def fetch(self, url: str, headers: dict[str, str] | None = None) -> Fetched:
        """GET ``url`` and return the response as served, retrying transient failures.

        Args:
            url: absolute http(s) URL.
            headers: extra request headers (e.g. If-None-Match for conditional GET).

        Returns:
            The response; 304 responses come back with an empty body. 4xx/5xx raise.

        Raises:
            FetchError: refused/timeout/deadline/too large/HTTP error/disallowed by robots.txt, with ``kind`` set.
        """
        try:  # before robots.txt is asked: the refusal names the URL's own address
            self.policy.check_url(url)
        except RefusedAddress as e:
            raise FetchError(url, "refused", str(e)) from None
        crawl_delay = None
        if self.robots is not None:
            self.robots.check(url)
            crawl_delay = self.robots.crawl_delay(url)
        return self._fetch_with_retries(url, headers or {}, crawl_delay)

    def _fetch_robots(self, url: str) -> Fetched:
        fetched = self._fetch_with_retries(url, {}, None)
        return replace(fetched, body=decode_body(fetched, max_bytes=2_000_000))

    def _fetch_with_retries(self, url: str, headers: dict[str, str], crawl_delay: float | None) -> Fetched:
        attempts = self.settings.retries + 1
        for attempt in range(1, attempts + 1):
            try:
                result = self._fetch_once(url, headers, crawl_delay)
            except FetchError as e:
                if e.kind in ("timeout", "connection") and attempt < attempts:
                    self._backoff(url, attempt, e)
                    continue
                raise
            if result.status in RETRY_STATUSES and attempt < attempts:
                self._backoff(url, attempt, None, result.header("Retry-After"))
                continue
            if result.status >= 400:
                raise FetchError(url, "http", f"HTTP {result.status}", status=result.status)
            return result
        raise AssertionError("unreachable")  # pragma: no cover

    def _backoff(self, url: str, attempt: int, error: FetchError | None, retry_after: str = "") -> None:
        delay = min(2.0 ** (attempt - 1), 30.0)
        parsed = _parse_retry_after(retry_after)
        if parsed is not None:
            delay = min(parsed, MAX_RETRY_AFTER_S)
        LOGGER.info("retrying %s in %.1fs (attempt %s): %s", url, delay, attempt + 1, error or "server asked to retry")
        time.sleep(delay)

    def _before_hop(self, request: httpx.Request) -> None:
        """httpx request hook, run before the first request and every redirect: IP literals checked at once."""
        hops = getattr(self._hops, "urls", None)
        if hops is not None:
            hops.append(str(request.url))
        self.policy.check_url(str(request.url), resolve=False)  # names are checked where they are resolved

    def _fetch_once(self, url: str, headers: dict[str, str], crawl_delay: float | None = None) -> Fetched:
        sent = self.pacer.acquire(url, crawl_delay)
        try:
            with request_deadline(self.settings.max_request_s):
                return self._fetch_within_deadline(url, headers, sent)
        finally:
            sent()  # failed before sending (refused, DNS) or already sent: free the host either way

    def _fetch_within_deadline(self, url: str, headers: dict[str, str], sent: Callable[[], None]) -> Fetched:
        def trace(event: str, info: dict[str, Any]) -> None:
            if event.endswith("send_request_headers.complete"):
                sent()  # on the wire: the next request to this host may be timed from now

        captured_at = utc_now()
        started = time.monotonic()
        limit = self.settings.max_bytes
        size = 0
        self._hops.urls = hops = []
        try:
            with self.client.stream("GET", url, headers=headers, extensions={"trace": trace}) as response:
                declared = response.headers.get("Content-Length", "")
                if declared.isdigit() and int(declared) > limit:
                    raise FetchError(url, "too_large", f"response of {int(declared):,} bytes exceeds max_bytes={limit:,}")
                chunks: list[bytes] = []
                for chunk in response.iter_raw():  # bytes as served, content-encoding kept
                    size += len(chunk)
                    if size > limit:
                        raise FetchError(url, "too_large", f"response exceeds max_bytes={limit:,} (stopped reading)")
                    if deadline_passed():
                        raise FetchError(url, "deadline", self._deadline_message(size))
                    chunks.append(chunk)
        except RefusedAddress as e:
            hop = e.url or (hops[-1] if hops else url)
            where = f"redirected to {hop}: " if len(hops) > 1 else ""
            raise FetchError(url, "refused", f"refused: {where}{e.reason}") from None
        except httpx.TimeoutException as e:
            if deadline_passed():
                raise FetchError(url, "deadline", self._deadline_message(size)) from None
            raise FetchError(url, "timeout", f"timed out ({type(e).__name__}; connect {self.settings.connect_timeout_s}s, read {self.settings.read_timeout_s}s)") from None
        except httpx.TooManyRedirects:
            raise FetchError(url, "redirects", "too many redirects") from None
        except (httpx.ConnectError, httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError) as e:
            raise FetchError(url, "connection", f"connection failed: {_short(e)}") from None
        except httpx.InvalidURL as e:
            raise FetchError(url, "invalid_url", f"invalid URL: {e}") from None
        except httpx.HTTPError as e:
            raise FetchError(url, "http_error", f"{type(e).__name__}: {_short(e)}") from None
        finally:
            self._hops.urls = None
        body = b"".join(chunks)
        return Fetched(
            url=url,
            final_url=str(response.url),
            status=response.status_code,
            headers=tuple((k, v) for k, v in response.headers.multi_items()),
            body=body,
            captured_at=captured_at,
            sha256=hashlib.sha256(body).hexdigest(),
            redirects=tuple(str(r.url) for r in response.history),
            elapsed_ms=int((time.monotonic() - started) * 1000),
            request_headers=tuple((k, v) for k, v in response.request.headers.multi_items()),
            http_version=response.http_version, reason=response.reason_phrase,
        )

    def _deadline_message(self, size: int) -> str:
        return (f"abandoned at the total deadline max_request_s={self.settings.max_request_s:g}s "
                f"(redirects and body included; {size:,} bytes read); not retried")


def decode_body(fetched: Fetched, max_bytes: int = 50_000_000) -> bytes:
    """Undo the response's Content-Encoding (gzip/deflate) to get the document bytes.

    Raises:
        FetchError: unknown encoding, corrupt data, or a decompression bomb over ``max_bytes``.
    """
    encoding = fetched.header("Content-Encoding").strip().lower()
    if encoding in ("", "identity"):
        return fetched.body
    if encoding not in ("gzip", "x-gzip", "deflate"):
        raise FetchError(fetched.url, "encoding", f"unsupported Content-Encoding {encoding!r}")
    wbits = 31 if "gzip" in encoding else 15
    try:
        d = zlib.decompressobj(wbits)
        out = d.decompress(fetched.body, max_bytes + 1)
        if encoding == "deflate" and not out and fetched.body:
            d = zlib.decompressobj(-15)  # raw deflate, sent by some servers
            out = d.decompress(fetched.body, max_bytes + 1)
    except zlib.error as e:
        raise FetchError(fetched.url, "encoding", f"corrupt {encoding} body: {e}") from None
    if len(out) > max_bytes:
        raise FetchError(fetched.url, "too_large", f"decompressed body exceeds {max_bytes:,} bytes")
    return out


def _short(e: Exception) -> str:
    text = str(e) or type(e).__name__
    return text if len(text) < 200 else text[:200] + "…"


def _parse_retry_after(value: str) -> float | None:
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, (when - datetime.now(timezone.utc)).total_seconds())
