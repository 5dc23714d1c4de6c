"""The crawl pipeline: feeds -> fetch -> extract -> store -> classify. The only module that calls several stages."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field, replace
from typing import Any

import sqlite_utils
import trafilatura

from . import campaigns, dedup, pageworker, store
from .alerts import deliver as alert_delivery
from .alerts import rules as alert_rules
from .alerts.config import AlertingSettings
from .config import Config, Feed, Outlet
from .errors import FeedError, FetchError
from .evidence.recorder import Evidence
from .feeds import parse_feed
from .fetch import Fetcher, decode_body
from .hostqueue import run_by_host
from .listings import parse_listing, parse_sitemap
from .models import Fetched, ParsedFeed
from .scoring import Classifier, classify_articles
from .sections import classify_section
from .urls import canonical_url

LOGGER = logging.getLogger(__name__)
EXTRACTOR = f"trafilatura {trafilatura.__version__}"


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
    feeds_skipped: int = 0      # backing off after repeated failures
    duplicates: int = 0         # pages that were an article already stored
    campaigns: int = 0          # campaigns detected by this run
    alerts: int = 0             # alerts raised by this run
    failed_feeds: list[str] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        """The counters stored in ``runs``."""
        return {k: getattr(self, k) for k in
                ("feeds_ok", "feeds_failed", "new_entries", "new_articles", "new_captures", "classified", "errors")}

    def line(self) -> str:
        """The one-line summary printed after a run."""
        skipped = f", backing off {self.feeds_skipped}" if self.feeds_skipped else ""
        dups = f" ({self.duplicates} already stored)" if self.duplicates else ""
        return (f"run {self.run_id}: feeds ok {self.feeds_ok}, failed {self.feeds_failed}{skipped}; "
                f"new entries {self.new_entries}, new articles {self.new_articles}, captures {self.new_captures}{dups}; "
                f"classified {self.classified}, flagged {self.flagged}; errors {self.errors}"
                + (f"; new campaigns {self.campaigns}, alerts {self.alerts}" if self.campaigns or self.alerts else ""))


ProgressFn = Callable[[str, int, int], None]


def _no_progress(stage: str, done: int, total: int) -> None:
    return None


StopFn = Callable[[], bool]
MAX_CHILD_SITEMAPS = 5   # a sitemap index is followed into at most this many child sitemaps per poll


def _never() -> bool:
    return False


def crawl_once(db: sqlite_utils.Database, config: Config, classifier: Classifier | None = None,
               fetcher: Fetcher | None = None, progress: ProgressFn = _no_progress,
               feeds: list[tuple[Outlet, Feed]] | None = None, should_stop: StopFn = _never,
               schedule_id: str | None = None, alerting: AlertingSettings | None = None) -> CrawlSummary:
    """Poll feeds once, fetch new entries, extract, store and classify them; then campaigns and alerts.

    Args:
        feeds: the feeds to poll (default: every enabled feed); feeds backing off after
            repeated failures are skipped until their time comes.
        should_stop: polled between items; when it turns true no new request starts, the pages
            in flight are stored, and the run ends with status "stopped" (nothing half-written:
            each page is one transaction, unfetched entries stay queued).
        schedule_id: recorded on the ``runs`` row.
        alerting: alerts.yaml settings: after classification, update campaigns and raise alerts;
            after the run's writes, deliver them (neither can fail the crawl: see ``after_crawl``).

    Network work runs on a thread pool, at most ``per_host_concurrency`` requests per host;
    extraction runs in worker processes; every database write happens on this thread.
    """
    store.sync_config(db, config)
    summary = CrawlSummary(run_id=store.start_run(db, "crawl"))
    if schedule_id:
        store.set_run_schedule(db, summary.run_id, schedule_id)
    own_fetcher = fetcher is None
    fetcher = fetcher or Fetcher(config.fetch)
    evidence = Evidence(db, config.evidence, summary.run_id)
    status = "interrupted"
    try:
        selected = config.enabled_feeds() if feeds is None else feeds
        backing_off = store.feeds_backing_off(db)
        due = [(o, f) for o, f in selected if f.id not in backing_off]
        summary.feeds_skipped = len(selected) - len(due)
        for _o, f in selected:
            if f.id in backing_off:
                LOGGER.info("feed %s is backing off after repeated failures until %s", f.id, backing_off[f.id])
        _poll_feeds(db, fetcher, due, config, summary, progress, should_stop)
        if not should_stop():
            _fetch_pages(db, fetcher, config, summary, progress, should_stop, evidence)
        if classifier is not None and not should_stop():
            classify_pending(db, classifier, summary, progress)
        if alerting is not None and not should_stop():
            after_crawl(db, alerting, summary, generic_targets(classifier))
        if not should_stop():
            evidence.stamp()
        status = "stopped" if should_stop() else "ok"
    finally:
        summary.errors = db.execute("SELECT count(*) FROM failures WHERE run_id = ?", [summary.run_id]).fetchone()[0]
        store.finish_run(db, summary.run_id, status, summary.counts())
        if own_fetcher:
            fetcher.close()
    if alerting is not None and status == "ok":
        deliver_alerts(db, alerting, summary.run_id)
    return summary


def generic_targets(classifier: Any) -> set[str]:
    """Names of the generic targets ("defensores", "ONG") of the classifier's watchlist."""
    watchlist = getattr(classifier, "watchlist", None)
    return {t.name for t in watchlist.targets if t.kind == "generic"} if watchlist else set()


def after_crawl(db: sqlite_utils.Database, alerting: AlertingSettings, summary: CrawlSummary,
                generic: set[str]) -> None:
    """Update campaigns with the new flags, then raise alerts. A failure is recorded, never raised."""
    try:
        result = campaigns.update(db, alerting.campaigns, generic)
        summary.campaigns += len(result.created)
    except Exception as e:  # detection must never fail the crawl: the next run retries (watermark unchanged)
        LOGGER.exception("campaign detection failed")
        store.record_failure(db, summary.run_id, "campaigns", "internal", f"{type(e).__name__}: {e}")
    try:
        summary.alerts += len(alert_rules.generate(db, alerting, generic))
    except Exception as e:
        LOGGER.exception("alert rules failed")
        store.record_failure(db, summary.run_id, "alerts", "internal", f"{type(e).__name__}: {e}")


def deliver_alerts(db: sqlite_utils.Database, alerting: AlertingSettings, run_id: int | None = None) -> None:
    """Queue the daily digest when due, then send due deliveries (bounded; failures recorded, never raised)."""
    try:
        alert_delivery.queue_digest(db, alerting)
        report = alert_delivery.deliver_pending(db, alerting, run_id)
        if report.sent or report.retrying or report.failed:
            LOGGER.info("%s", report.line())
    except Exception as e:
        LOGGER.exception("alert delivery failed")
        store.record_failure(db, run_id, "alerts", "internal", f"{type(e).__name__}: {e}")


def _poll_feeds(db: sqlite_utils.Database, fetcher: Fetcher, feeds: list[tuple[Outlet, Feed]], config: Config,
                summary: CrawlSummary, progress: ProgressFn, should_stop: StopFn) -> None:
    jobs: list[tuple[Feed, dict[str, str]]] = []
    for _outlet, feed in feeds:
        state = store.feed_state(db, feed.id)
        headers = {}
        if state.get("etag"):
            headers["If-None-Match"] = state["etag"]
        if state.get("last_modified"):
            headers["If-Modified-Since"] = state["last_modified"]
        jobs.append((feed, headers))
    done = 0
    for (feed, _headers), future in run_by_host(jobs, lambda j: j[0].url, lambda j: _poll_one(fetcher, *j),
                                                config.fetch.concurrency, config.fetch.per_host_concurrency,
                                                should_stop, "poll"):
        done += 1
        progress("feeds", done, len(jobs))
        try:
            fetched, parsed = future.result()
        except (FetchError, FeedError) as e:
            kind = e.kind if isinstance(e, FetchError) else "not_a_feed"
            status = e.status if isinstance(e, FetchError) else None
            _feed_failed(db, config, summary, feed, kind, str(e), status)
            continue
        except Exception as e:  # a bug or an unexpected library error: record it, keep going
            LOGGER.exception("feed %s: unexpected error", feed.id)
            _feed_failed(db, config, summary, feed, "internal", f"{type(e).__name__}: {e}", None)
            continue
        entries = list(parsed.entries)[: config.fetch.max_entries_per_feed] if parsed else []
        if parsed and parsed.warning:
            store.record_failure(db, summary.run_id, "feed", "ill_formed", f"{feed.url}: {parsed.warning}",
                                 url=feed.url, feed_id=feed.id)
        summary.new_entries += store.add_entries(db, feed.id, entries)
        store.record_feed_ok(db, feed.id, fetched, len(entries), parsed.warning if parsed else None)
        summary.feeds_ok += 1


def _feed_failed(db: sqlite_utils.Database, config: Config, summary: CrawlSummary, feed: Feed, kind: str,
                 message: str, status: int | None) -> None:
    next_poll = store.record_feed_failure(db, summary.run_id, feed.id, feed.url, kind, message, status,
                                          config.fetch.failure_backoff_s, config.fetch.max_backoff_s)
    summary.feeds_failed += 1
    summary.failed_feeds.append(feed.id)
    LOGGER.warning("feed %s failed: %s%s", feed.id, message, f" (next poll after {next_poll})" if next_poll else "")


def _poll_one(fetcher: Fetcher, feed: Feed, headers: dict[str, str]) -> tuple[Fetched, ParsedFeed | None]:
    """Fetch and parse one source: an RSS/Atom feed, a (news) sitemap or an HTML listing page."""
    fetched = fetcher.fetch(feed.url, headers=headers)
    if fetched.status == 304:
        return fetched, None
    body = decode_body(fetched)
    if feed.kind == "html":
        return fetched, parse_listing(body, fetched.final_url, feed.link_pattern)
    if feed.kind == "sitemap":
        parsed, children = parse_sitemap(body, fetched.final_url)
        entries = {e.url: e for e in parsed.entries}
        problems = [parsed.warning] if parsed.warning else []
        for child in children[:MAX_CHILD_SITEMAPS]:
            try:  # one broken child sitemap does not lose the others
                child_fetched = fetcher.fetch(child)
                child_parsed, _ = parse_sitemap(decode_body(child_fetched), child_fetched.final_url)
            except (FetchError, FeedError) as e:
                problems.append(f"child sitemap skipped: {e}")
                continue
            for e in child_parsed.entries:
                entries.setdefault(e.url, e)
        if children and not entries and problems:
            raise FeedError(f"{feed.url}: sitemap index with no readable child sitemap ({'; '.join(problems)})")
        # newest first, so max_entries_per_feed keeps the newest
        ordered = sorted(entries.values(), key=lambda e: e.published or "", reverse=True)
        return fetched, replace(parsed, entries=tuple(ordered), warning="; ".join(problems) or None)
    return fetched, parse_feed(body, fetched.final_url, dict(fetched.headers))


ALLOW_PRIVATE_STATE = "fetch.allow_private"


def _requeue_if_allowed_now(db: sqlite_utils.Database, config: Config) -> None:
    """A refused entry stays failed until ``defaults.allow_private`` changes; then it is tried again.

    (Refusals are not retried run after run; an operator who allows an internal outlet expects its
    entries to be fetched by the next crawl, not to re-queue them by hand.)
    """
    current = json.dumps(sorted(config.fetch.allow_private))
    before = store.state_get(db, ALLOW_PRIVATE_STATE, "")
    if before == current:
        return
    if before:   # the first run only records the list
        n = store.requeue_refused_entries(db)
        if n:
            LOGGER.info("defaults.allow_private changed: %d refused entries queued again", n)
    with store.atomic(db):
        store.state_set(db, ALLOW_PRIVATE_STATE, current)


def _fetch_pages(db: sqlite_utils.Database, fetcher: Fetcher, config: Config, summary: CrawlSummary,
                 progress: ProgressFn, should_stop: StopFn, evidence: Evidence) -> None:
    _requeue_if_allowed_now(db, config)
    pending = store.pending_entries(db)
    workers = pageworker.worker_count(config.fetch.extract_workers)
    pool = pageworker.extraction_pool(workers) if len(pending) >= pageworker.MIN_PAGES_FOR_POOL else None
    done = 0
    software = evidence.software

    def work(e: dict[str, Any]) -> tuple[Fetched, pageworker.PageResult]:
        return _fetch_and_process(fetcher, e["url"], pool, software, e.get("author") or "")

    for entry, future in run_by_host(pending, lambda e: e["url"], work,
                                     config.fetch.concurrency, config.fetch.per_host_concurrency, should_stop, "page"):
        done += 1
        progress("pages", done, len(pending))
        try:
            fetched, result = future.result()
        except FetchError as e:
            # a refused address stays refused until allow_private changes: no attempt at the next run
            attempts = 1 if e.kind == "refused" else 3
            store.entry_failed(db, summary.run_id, entry, "fetch", e.kind, str(e), max_attempts=attempts)
            continue
        except Exception as e:
            LOGGER.exception("page %s: unexpected error", entry["url"])
            store.entry_failed(db, summary.run_id, entry, "fetch", "internal", f"{type(e).__name__}: {e}")
            continue
        facts = page_facts(db, entry, fetched.final_url, result)
        warc = evidence.write(fetched, result.warc)  # the WARC copy first: a record without a row is harmless
        _capture_id, stored = store.store_page(db, summary.run_id, entry, fetched, result.article, result.error,
                                               EXTRACTOR, facts, warc, body_gz=result.body_gz)
        summary.new_captures += 1
        summary.new_articles += int(stored)
        summary.duplicates += int(facts.same_as is not None)


def _fetch_and_process(fetcher: Fetcher, url: str, pool: Any, warc_software: str | None,
                       author: str = "") -> tuple[Fetched, pageworker.PageResult]:
    """Fetch a page (this thread), then extract and pack it (a worker process when there is a pool)."""
    fetched = fetcher.fetch(url)
    if pool is None:
        return fetched, pageworker.process_page(fetched, warc_software, author_hint=author)
    try:
        return fetched, pool.submit(pageworker.process_page, fetched, warc_software, author_hint=author).result()
    except BrokenProcessPool:  # a worker died (killed, out of memory): this page is done here instead
        LOGGER.warning("extraction worker died; extracting %s in the crawler process", url)
        pageworker.discard_pool(pool)  # the next crawl starts fresh workers
        return fetched, pageworker.process_page(fetched, warc_software, author_hint=author)


def page_facts(db: sqlite_utils.Database, entry: dict[str, Any], final_url: str,
               result: pageworker.PageResult) -> store.PageFacts:
    """Section and columnist, and whether the page repeats an article already stored.

    - the same canonical URL (``<link rel=canonical>``, tracking parameters and AMP removed) or
      the same text from the same outlet: the SAME article, no new row;
    - the same text from another outlet: a syndicated copy (``duplicate_of``), same story;
    - a near-duplicate text (MinHash, Jaccard >= dedup.DUPLICATE_JACCARD): same story.
    """
    article = result.article
    if article is None:
        return store.PageFacts(section=entry.get("section") or "news", columnist=entry.get("feed_columnist") or "")
    section, columnist = classify_section(entry.get("section") or "news", final_url, article.author,
                                          entry.get("feed_columnist") or "")
    base = store.PageFacts(section=section, columnist=columnist, fingerprint=result.fingerprint,
                           signature=result.signature, bands=result.bands)
    canonical = canonical_url(article.canonical_url or final_url)
    same = store.article_by_canonical_url(db, canonical)
    if same and same != entry["article_id"]:
        return replace(base, same_as=same)
    exact = store.articles_with_fingerprint(db, result.fingerprint) if result.fingerprint else []
    for row in exact:
        if row["outlet_id"] == entry["outlet_id"]:
            return replace(base, same_as=row["id"])
    if exact:
        return replace(base, story_id=exact[0]["story_id"], duplicate_of=exact[0]["id"])
    if result.signature:
        signature = pageworker.HASHER.from_bytes(result.signature)
        for row in store.story_candidates(db, result.bands):
            if dedup.is_near_duplicate(signature, pageworker.HASHER.from_bytes(row["signature"])):
                return replace(base, story_id=row["story_id"])
    return base


def classify_pending(db: sqlite_utils.Database, classifier: Classifier, summary: CrawlSummary | None = None,
                     progress: ProgressFn = _no_progress, batch_size: int = 16) -> CrawlSummary:
    """Classify every stored article text (first capture and every edit) with no verdict by this model version."""
    summary = summary or CrawlSummary()
    rows = list(store.articles_to_classify(db, classifier.model_id, classifier.model_version))
    for start in range(0, len(rows), batch_size):
        batch = rows[start:start + batch_size]
        try:
            results = classify_articles(classifier, [(r.get("title"), r["text"]) for r in batch])
        except Exception as e:
            LOGGER.exception("classification batch failed")
            for r in batch:  # one failure row per article left unclassified; a later run retries them
                store.record_failure(db, summary.run_id or None, "classify", "classify",
                                     f"article {r['id']}: {type(e).__name__}: {e}")
            continue
        for row, result in zip(batch, results):
            store.store_classification(db, row["id"], row["text_sha256"], result, row["version_id"])
            summary.classified += 1
            summary.flagged += int(result.stigmatising)
        progress("classify", min(start + batch_size, len(rows)), len(rows))
    return summary
