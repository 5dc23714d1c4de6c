"""The crawl pipeline: feeds -> fetch -> extract -> store -> classify. The only module that calls several stages."""

from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

import sqlite_utils
import trafilatura

from . import store
from .config import Config, Feed, Outlet
from .errors import ExtractError, FeedError, FetchError
from .extract import extract_article
from .feeds import parse_feed
from .fetch import Fetcher, decode_body
from .models import Article, Classification, Fetched

LOGGER = logging.getLogger(__name__)
EXTRACTOR = f"trafilatura {trafilatura.__version__}"
HTML_TYPES = ("text/html", "application/xhtml+xml", "text/plain", "")


class Classifier(Protocol):
    """What the pipeline needs from a classifier."""

    model_id: str
    model_version: str

    def classify(self, texts: list[str]) -> list[Classification]:
        """Classify texts, one result per text, same order."""
        ...


@dataclass
class CrawlSummary:
    """Counters of one crawl run (also written to the ``runs`` row)."""

    run_id: int = 0
    feeds_ok: int = 0
    feeds_failed: int = 0
    new_entries: int = 0
    new_articles: int = 0
    new_captures: int = 0
    classified: int = 0
    flagged: int = 0
    errors: int = 0
    failed_feeds: list[str] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        """The counters stored in ``runs``."""
        return {k: getattr(self, k) for k in
                ("feeds_ok", "feeds_failed", "new_entries", "new_articles", "new_captures", "classified", "errors")}

    def line(self) -> str:
        """The one-line summary printed after a run."""
        return (f"run {self.run_id}: feeds ok {self.feeds_ok}, failed {self.feeds_failed}; "
                f"new entries {self.new_entries}, new articles {self.new_articles}, captures {self.new_captures}; "
                f"classified {self.classified}, flagged {self.flagged}; errors {self.errors}")


ProgressFn = Callable[[str, int, int], None]


def _no_progress(stage: str, done: int, total: int) -> None:
    return None


def crawl_once(db: sqlite_utils.Database, config: Config, classifier: Classifier | None = None,
               fetcher: Fetcher | None = None, progress: ProgressFn = _no_progress) -> CrawlSummary:
    """Poll every enabled feed once, fetch new entries, extract, store and classify them.

    Network work runs in a thread pool; every database write happens on this thread, one
    transaction per page, so a crash loses at most the pages in flight (they stay pending).
    """
    store.sync_config(db, config)
    summary = CrawlSummary(run_id=store.start_run(db, "crawl"))
    own_fetcher = fetcher is None
    fetcher = fetcher or Fetcher(config.fetch)
    status = "interrupted"
    try:
        feeds = config.enabled_feeds()
        with ThreadPoolExecutor(max_workers=config.fetch.concurrency, thread_name_prefix="crawl") as pool:
            _poll_feeds(db, pool, fetcher, feeds, config, summary, progress)
            _fetch_pages(db, pool, fetcher, config, summary, progress)
        if classifier is not None:
            classify_pending(db, classifier, summary, progress)
        status = "ok"
    finally:
        summary.errors = db.execute("SELECT count(*) FROM failures WHERE run_id = ?", [summary.run_id]).fetchone()[0]
        store.finish_run(db, summary.run_id, status, summary.counts())
        if own_fetcher:
            fetcher.close()
    return summary


def _poll_feeds(db: sqlite_utils.Database, pool: ThreadPoolExecutor, fetcher: Fetcher,
                feeds: list[tuple[Outlet, Feed]], config: Config, summary: CrawlSummary,
                progress: ProgressFn) -> None:
    futures: dict[Future[Any], Feed] = {}
    for _outlet, feed in feeds:
        state = store.feed_state(db, feed.id)
        headers = {}
        if state.get("etag"):
            headers["If-None-Match"] = state["etag"]
        if state.get("last_modified"):
            headers["If-Modified-Since"] = state["last_modified"]
        futures[pool.submit(_poll_one, fetcher, feed, headers)] = feed
    done = 0
    for future in as_completed(futures):
        feed = futures[future]
        done += 1
        progress("feeds", done, len(futures))
        try:
            fetched, parsed = future.result()
        except (FetchError, FeedError) as e:
            kind = e.kind if isinstance(e, FetchError) else "not_a_feed"
            status = e.status if isinstance(e, FetchError) else None
            store.record_feed_failure(db, summary.run_id, feed.id, feed.url, kind, str(e), status)
            summary.feeds_failed += 1
            summary.failed_feeds.append(feed.id)
            LOGGER.warning("feed %s failed: %s", feed.id, e)
            continue
        except Exception as e:  # a bug or an unexpected library error: record it, keep going
            LOGGER.exception("feed %s: unexpected error", feed.id)
            store.record_feed_failure(db, summary.run_id, feed.id, feed.url, "internal", f"{type(e).__name__}: {e}")
            summary.feeds_failed += 1
            summary.failed_feeds.append(feed.id)
            continue
        entries = list(parsed.entries)[: config.fetch.max_entries_per_feed] if parsed else []
        if parsed and parsed.warning:
            store.record_failure(db, summary.run_id, "feed", "ill_formed", f"{feed.url}: {parsed.warning}",
                                 url=feed.url, feed_id=feed.id)
        summary.new_entries += store.add_entries(db, feed.id, entries)
        store.record_feed_ok(db, feed.id, fetched, len(entries), parsed.warning if parsed else None)
        summary.feeds_ok += 1


def _poll_one(fetcher: Fetcher, feed: Feed, headers: dict[str, str]) -> tuple[Fetched, Any]:
    fetched = fetcher.fetch(feed.url, headers=headers)
    if fetched.status == 304:
        return fetched, None
    body = decode_body(fetched)
    return fetched, parse_feed(body, fetched.final_url, dict(fetched.headers))


def _fetch_pages(db: sqlite_utils.Database, pool: ThreadPoolExecutor, fetcher: Fetcher, config: Config,
                 summary: CrawlSummary, progress: ProgressFn) -> None:
    pending = store.pending_entries(db)
    futures = {pool.submit(_fetch_and_extract, fetcher, entry["url"]): entry for entry in pending}
    done = 0
    for future in as_completed(futures):
        entry = futures[future]
        done += 1
        progress("pages", done, len(futures))
        try:
            fetched, article, extract_error = future.result()
        except FetchError as e:
            store.entry_failed(db, summary.run_id, entry, "fetch", e.kind, str(e))
            continue
        except Exception as e:
            LOGGER.exception("page %s: unexpected error", entry["url"])
            store.entry_failed(db, summary.run_id, entry, "fetch", "internal", f"{type(e).__name__}: {e}")
            continue
        _capture_id, stored = store.store_page(db, summary.run_id, entry, fetched, article, extract_error, EXTRACTOR)
        summary.new_captures += 1
        summary.new_articles += int(stored)


def _fetch_and_extract(fetcher: Fetcher, url: str) -> tuple[Fetched, Article | None, str | None]:
    """Fetch a page; extract it when it is HTML. Extraction problems do not lose the capture."""
    fetched = fetcher.fetch(url)
    ctype = fetched.header("Content-Type").split(";")[0].strip().lower()
    if ctype not in HTML_TYPES:
        return fetched, None, f"{url}: not an HTML page (Content-Type {ctype})"
    try:
        body = decode_body(fetched)
        return fetched, extract_article(body, fetched.final_url), None
    except (ExtractError, FetchError) as e:
        return fetched, None, str(e)


def classify_pending(db: sqlite_utils.Database, classifier: Classifier, summary: CrawlSummary | None = None,
                     progress: ProgressFn = _no_progress, batch_size: int = 16) -> CrawlSummary:
    """Classify every stored article that has no classification by this model version."""
    summary = summary or CrawlSummary()
    rows = list(store.articles_to_classify(db, classifier.model_id, classifier.model_version))
    for start in range(0, len(rows), batch_size):
        batch = rows[start:start + batch_size]
        texts = [_article_text(r) for r in batch]
        try:
            results = classifier.classify(texts)
        except Exception as e:
            LOGGER.exception("classification batch failed")
            for r in batch:  # one failure row per article left unclassified; a later run retries them
                store.record_failure(db, summary.run_id or None, "classify", "classify",
                                     f"article {r['id']}: {type(e).__name__}: {e}")
            continue
        for row, result in zip(batch, results):
            store.store_classification(db, row["id"], row["text_sha256"], _shift_to_text(result, row))
            summary.classified += 1
            summary.flagged += int(result.stigmatising)
        progress("classify", min(start + batch_size, len(rows)), len(rows))
    return summary


def _article_text(row: dict[str, Any]) -> str:
    # The title is scored with the body: headlines carry smears too. Offsets are shifted back below.
    title = (row.get("title") or "").strip()
    return f"{title}\n\n{row['text']}" if title else row["text"]


def _shift_to_text(result: Classification, row: dict[str, Any]) -> Classification:
    """Make passage offsets point into ``articles.text`` (the title prefix is dropped)."""
    title = (row.get("title") or "").strip()
    if not title:
        return result
    shift = len(title) + 2
    passages = tuple(
        replace(p, start=p.start - shift, end=p.end - shift) if p.start >= shift else replace(p, start=-1, end=-1)
        for p in result.passages
    )
    return replace(result, passages=passages)
