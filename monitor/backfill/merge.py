"""Load backfill shards into the SQLite store, each record keeping its archive provenance as its capture.

Every write goes through ``store`` and the crawl's own steps: ``pipeline.page_facts`` (same
article? syndicated copy? same story?), ``store.store_page`` (capture + article + custody in one
transaction, the WARC location in ``warc_records``: the archive's file, the record's offset and
length, its WARC-Record-ID and WARC-Payload-Digest; the capture time is the WARC-Date), then
``store.store_classification`` with the verdict computed by the backfill. A record already stored
(same URL, same payload SHA-256, same capture time) is skipped, so a merge can be rerun, or
resumed after a crash, without duplicates. Afterwards campaigns and alert rules are updated as
after a crawl.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import sqlite_utils

from .. import pipeline, store
from ..config import Config
from ..errors import MonitorError
from ..fetch import utc_now
from ..models import Article, Fetched, WarcRef
from ..pageworker import PageResult
from ..urls import article_id
from .shards import iter_rows, shard_files
from .stages import classification_from_json

LOGGER = logging.getLogger(__name__)


@dataclass
class MergeSummary:
    """Counters of one merge."""

    run_id: int = 0
    shards: int = 0
    rows: int = 0
    captures: int = 0              # new captures stored
    articles: int = 0              # new articles stored
    already: int = 0               # records stored by an earlier merge (or crawl)
    edits: int = 0                 # later captures of a stored article with another text (article_versions)
    classified: int = 0
    flagged: int = 0
    bad: int = 0                   # rows that were bad records (recorded in failures once)
    campaigns: int = 0
    alerts: int = 0
    problems: list[str] = field(default_factory=list)

    def line(self) -> str:
        """The summary printed at the end."""
        return (f"merge (run {self.run_id}): {self.shards} shard(s), {self.rows} rows; new captures {self.captures}, "
                f"new articles {self.articles}, edits {self.edits}, already stored {self.already}; classified {self.classified}, "
                f"flagged {self.flagged}; bad records {self.bad}"
                + (f"; new campaigns {self.campaigns}, alerts {self.alerts}" if self.campaigns or self.alerts else ""))


class OutletMatcher:
    """The configured outlet of a URL: the longest homepage/feed URL prefix, else the only outlet on that host."""

    def __init__(self, config: Config | None):
        self.prefixes: list[tuple[str, str]] = []
        hosts: dict[str, set[str]] = {}
        for outlet in config.outlets if config else ():
            urls = [outlet.homepage, *(f.url for f in outlet.feeds)]
            for url in filter(None, urls):
                parts = urlsplit(url)
                hosts.setdefault(parts.netloc.lower(), set()).add(outlet.id)
            if outlet.homepage:
                parts = urlsplit(outlet.homepage)
                self.prefixes.append((parts.netloc.lower() + (parts.path or "/"), outlet.id))
        self.prefixes.sort(key=lambda p: -len(p[0]))
        self.by_host = {h: next(iter(ids)) for h, ids in hosts.items() if len(ids) == 1}

    def __call__(self, url: str) -> str | None:
        parts = urlsplit(url)
        key = parts.netloc.lower() + (parts.path or "/")
        for prefix, outlet in self.prefixes:
            if key.startswith(prefix):
                return outlet
        host = parts.netloc.lower()
        return self.by_host.get(host) or self.by_host.get(host.removeprefix("www."))


def merge(db: sqlite_utils.Database, folder: Path, config: Config | None = None, alerting: Any = None,
          generic: set[str] | None = None, progress: Callable[[MergeSummary], None] | None = None) -> MergeSummary:
    """Store every row of the shards under ``folder``; then update campaigns and alert rules (with ``alerting``).

    Raises:
        MonitorError: the folder holds no shard, or a shard cannot be read (named).
    """
    files = shard_files(folder)
    if not files:
        raise MonitorError(f"{folder}: no backfill shard (*.parquet) here; run `monitor backfill SOURCE --out {folder}` first")
    if config is not None:
        store.sync_config(db, config)
    outlet_of = OutletMatcher(config)
    summary = MergeSummary(run_id=store.start_run(db, "backfill"), shards=len(files))
    status = "interrupted"
    try:
        for path in files:
            try:
                for row in iter_rows(path):
                    _merge_row(db, row, summary, outlet_of)
                    if progress is not None and summary.rows % 500 == 0:
                        progress(summary)
            except OSError as e:
                raise MonitorError(f"{path}: unreadable backfill shard ({e})") from None
            except Exception as e:
                if type(e).__module__.startswith("pyarrow"):
                    raise MonitorError(f"{path}: unreadable backfill shard ({e})") from None
                raise
        if alerting is not None:
            crawl = pipeline.CrawlSummary(run_id=summary.run_id)
            pipeline.after_crawl(db, alerting, crawl, generic or set())
            summary.campaigns, summary.alerts = crawl.campaigns, crawl.alerts
        status = "ok"
    finally:
        errors = db.execute("SELECT count(*) FROM failures WHERE run_id = ?", [summary.run_id]).fetchone()[0]
        store.finish_run(db, summary.run_id, status, {"new_articles": summary.articles, "new_captures": summary.captures,
                                                      "classified": summary.classified, "errors": errors})
    return summary


def _merge_row(db: sqlite_utils.Database, row: dict[str, Any], summary: MergeSummary, outlet_of: OutletMatcher) -> None:
    summary.rows += 1
    where = f"{row['source']}@{row['offset']}"
    if not row["text"]:   # a bad record: recorded once, whichever merge sees it first
        summary.bad += 1
        message = f"{Path(row['source']).name}@{row['offset']} ({row['error_kind']}): {row['error']}"
        if not store.failure_recorded(db, "backfill", where, message):
            store.record_failure(db, summary.run_id, "backfill", row["error_kind"] or "unknown", message, url=where)
        return
    text_sha = hashlib.sha256(row["text"].encode("utf-8")).hexdigest()
    verdict = classification_from_json(row["classification"]) if row["classification"] else None
    is_text = row["kind"] == "text"
    existing = store.capture_of(db, row["url"], row["sha256"], None if is_text else row["captured_at"])
    if existing is not None:
        summary.already += 1
        if verdict is not None and existing["text_sha256"] == text_sha:   # a merge cut between capture and verdict
            _classify(db, existing["article_id"], text_sha, verdict, summary, existing["version_id"])
        return
    body = gzip.decompress(row["body_gz"])
    captured_at = row["captured_at"] if row["captured_at"] and not is_text else utc_now()
    fetched = Fetched(url=row["url"], final_url=row["url"], status=row["status"] or 200,
                      headers=tuple((k, v) for k, v in json.loads(row["headers"])), body=body,
                      captured_at=captured_at, sha256=row["sha256"])
    article = Article(url=row["url"], title=row["title"], text=row["text"], author=row["author"],
                      published=row["published"], site_name=row["site_name"], language=row["language"],
                      canonical_url=row["canonical_url"], description=row["description"])
    result = PageResult(article, None, row["fingerprint"], row["signature"] or b"", tuple(json.loads(row["bands"])))
    entry = {"url": row["url"], "article_id": article_id(row["url"]), "outlet_id": outlet_of(row["url"]),
             "feed_id": None, "section": None, "feed_columnist": "", "first_seen_at": captured_at,
             "title": "", "author": "", "published": None}
    facts = pipeline.page_facts(db, entry, row["url"], result)
    warc = None
    if row["kind"] == "warc":
        source = Path(row["source"])
        warc = WarcRef(warc_dir=str(source.parent), warc_file=source.name, offset=row["offset"], length=row["length"],
                       response_length=row["length"], record_id=row["record_id"] or "",
                       payload_digest=row["payload_digest"] or _sha256_label(row["sha256"]))
    if _stored_as_edit(db, row, facts.same_as or entry["article_id"], fetched, article, text_sha, warc, verdict,
                       summary):
        return
    _capture_id, stored = store.store_page(db, summary.run_id, entry, fetched, article, None, pipeline.EXTRACTOR,
                                           facts, warc, body_gz=row["body_gz"])
    summary.captures += 1
    summary.articles += int(stored)
    if stored and verdict is not None:
        _classify(db, entry["article_id"], text_sha, verdict, summary)


def _stored_as_edit(db: sqlite_utils.Database, row: dict[str, Any], aid: str, fetched: Fetched, article: Article,
                    text_sha: str, warc: WarcRef | None, verdict: Any, summary: MergeSummary) -> bool:
    """A later capture of a stored article with another text is an edit, recorded as a re-check would.

    Archives often hold several captures of one page over time: a text that changed becomes an
    ``article_versions`` row (new capture, diff) with its own verdict, so stealth edits found in
    the past reach the desk, the alerts and dossiers like those a re-check finds. A capture older
    than the newest stored text is attached to the article as a capture only (no version).
    """
    latest = store.latest_text(db, aid)
    if latest is None or latest["text_sha256"] == text_sha or fetched.captured_at <= (latest["at"] or ""):
        return False
    from ..recheck import text_diff

    capture_id = store.record_check(db, summary.run_id, latest, "changed", fetched.status,
                                    f"backfill: {Path(row['source']).name}@{row['offset']}", fetched, article,
                                    text_diff(latest["text"], article.text), warc)
    summary.captures += 1
    summary.edits += 1
    if verdict is not None and capture_id is not None:
        _classify(db, aid, text_sha, verdict, summary, store.version_of_capture(db, capture_id))
    return True


def _classify(db: sqlite_utils.Database, aid: str, text_sha: str, verdict: Any, summary: MergeSummary,
              version_id: int | None = None) -> None:
    if store.store_classification(db, aid, text_sha, verdict, version_id):
        summary.classified += 1
        summary.flagged += int(verdict.stigmatising)


def _sha256_label(hex_digest: str) -> str:
    from ..evidence.warc import sha256_digest_label

    return sha256_digest_label(hex_digest)
