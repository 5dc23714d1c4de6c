"""CPU work on one fetched page (decode, extract, fingerprint), run in worker processes.

Extraction is pure Python (lxml + trafilatura) and holds the GIL: fetching threads cannot
overlap it. A small process pool does it beside the threads; with one core, or for a handful
of pages, it runs in the calling thread instead.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import threading
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass

from . import dedup
from .errors import ExtractError, FetchError
from .extract import extract_article
from .fetch import decode_body
from .models import Article, Fetched

HTML_TYPES = ("text/html", "application/xhtml+xml", "text/plain", "")
MIN_PAGES_FOR_POOL = 8
HASHER = dedup.MinHasher()   # the story signatures' scheme (dedup.py); stored signatures depend on it

_pool: ProcessPoolExecutor | None = None
_pool_size = 0
_pool_lock = threading.Lock()


@dataclass(frozen=True, slots=True)
class PageResult:
    """What the CPU stage learnt about a page: the article, or why there is none, and its fingerprints."""

    article: Article | None
    error: str | None = None
    fingerprint: str = ""          # sha256 of the normalised text (exact copies)
    signature: bytes = b""         # MinHash signature (near copies)
    bands: tuple[str, ...] = ()    # LSH band keys of the signature
    body_gz: bytes | None = None   # the raw bytes gzip-compressed for the captures table
    warc: tuple[bytes, bytes, bytes, str] | None = None  # the capture's WARC records, built and compressed


def process_page(fetched: Fetched, warc_software: str | None = None, pack: bool = True,
                 author_hint: str = "") -> PageResult:
    """Decode and extract a fetched page, fingerprint its text, compress the capture for storage.

    With ``warc_software`` the capture's WARC records are built too. All of it is CPU work that
    would otherwise queue on the crawler's single writing thread. ``pack=False`` skips the
    compression, for callers that store only some pages (re-checks). ``author_hint``: the feed
    item's author (extraction then skips its byline search). Never raises for bad pages.
    """
    from .evidence.warc import capture_records
    from .store import compress

    packed = {"body_gz": compress(fetched.body) if pack else None,
              "warc": capture_records(fetched, warc_software) if pack and warc_software is not None else None}
    url = fetched.url
    ctype = fetched.header("Content-Type").split(";")[0].strip().lower()
    if ctype not in HTML_TYPES:
        return PageResult(None, f"{url}: not an HTML page (Content-Type {ctype})", **packed)
    try:
        article = extract_article(decode_body(fetched), fetched.final_url, author_hint)
    except (ExtractError, FetchError) as e:
        return PageResult(None, str(e), **packed)
    return PageResult(article, None, *fingerprints(article), **packed)


def fingerprints(article: Article) -> tuple[str, bytes, tuple[str, ...]]:
    """The dedup keys of an article: exact-copy fingerprint, MinHash signature, LSH band keys."""
    body = body_without_headline(article.text, article.title)
    signature = HASHER.signature(body)
    return dedup.content_fingerprint(body), HASHER.to_bytes(signature), tuple(HASHER.band_keys(signature))


def body_without_headline(text: str, title: str) -> str:
    """The text to compare copies on: headlines are what syndicating outlets rewrite first."""
    first, _, rest = text.partition("\n")
    return rest if title and first.strip() == title.strip() and rest.strip() else text


def _worker_init() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)   # the parent decides when to stop
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def worker_count(configured: int) -> int:
    """Processes to use: ``configured``, or one per CPU core when 0."""
    return configured if configured > 0 else (os.cpu_count() or 1)


def extraction_pool(workers: int) -> ProcessPoolExecutor | None:
    """The shared extraction pool (created on first use, reused by later crawls); None for 1 worker."""
    global _pool, _pool_size
    if workers <= 1:
        return None
    with _pool_lock:
        if _pool is None or _pool_size != workers:
            if _pool is not None:
                _pool.shutdown(wait=False, cancel_futures=True)
            # spawn, not fork: the parent has threads (httpx, torch) that fork would copy mid-lock
            _pool = ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"),
                                        initializer=_worker_init)
            _pool_size = workers
        return _pool


def discard_pool(pool: ProcessPoolExecutor) -> None:
    """Forget a broken pool (a worker died) so that the next crawl creates a new one."""
    global _pool
    with _pool_lock:
        if _pool is pool:
            _pool = None
    pool.shutdown(wait=False, cancel_futures=True)


def shutdown_pool() -> None:
    """Stop the extraction processes (at exit, or before a fork)."""
    global _pool
    with _pool_lock:
        if _pool is not None:
            _pool.shutdown(wait=True, cancel_futures=True)
            _pool = None
