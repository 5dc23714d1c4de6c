"""Configuration sync, crawl runs, recorded failures, feed state and pending entries."""

from __future__ import annotations

import json
from typing import Any

import sqlite_utils

from ..config import Config
from ..fetch import utc_now
from ..models import Entry, Fetched
from ..urls import article_id, canonical_url
from .schema import TOOL

__all__ = ['requeue_refused_entries', 'add_entries',
           'entry_failed',
           'feed_health',
           'feed_state',
           'feeds_backing_off',
           'failure_recorded',
           'finish_run',
           'interrupted_schedules',
           'pending_entries',
           'record_failure',
           'record_feed_failure',
           'record_feed_ok',
           'set_run_schedule',
           'start_run',
           'sync_config']


# --- configuration ---------------------------------------------------------------------------

def sync_config(db: sqlite_utils.Database, config: Config) -> None:
    """Upsert outlets and feeds from the validated config; feed state columns are kept."""
    with db.conn:
        for outlet in config.outlets:
            db["outlets"].upsert({
                "id": outlet.id, "name": outlet.name, "homepage": outlet.homepage, "scope": outlet.scope,
                "state": outlet.state, "country": outlet.country, "language": outlet.language,
                "tags": json.dumps(list(outlet.tags)), "columnists": json.dumps(list(outlet.columnists)),
                "enabled": int(outlet.enabled),
            }, pk="id")
            for feed in outlet.feeds:
                existing = db.execute("SELECT id FROM feeds WHERE url = ? AND id != ?", [feed.url, feed.id]).fetchone()
                if existing:  # same URL moved to another id (section/outlet renamed): keep its history
                    db.execute("UPDATE feeds SET id = ? WHERE id = ?", [feed.id, existing[0]])
                db["feeds"].upsert({
                    "id": feed.id, "outlet_id": outlet.id, "url": feed.url, "section": feed.section,
                    "kind": feed.kind, "language": feed.language, "columnist": feed.columnist,
                    "tags": json.dumps(list(feed.tags)), "enabled": int(feed.enabled and outlet.enabled),
                    "verified": int(feed.verified), "note": feed.note,
                }, pk="id")


def feed_state(db: sqlite_utils.Database, feed_id: str) -> dict[str, Any]:
    """The stored state of a feed (etag, last_modified, failures...)."""
    rows = list(db.query("SELECT * FROM feeds WHERE id = ?", [feed_id]))
    return rows[0] if rows else {}


# --- runs and failures -----------------------------------------------------------------------

def start_run(db: sqlite_utils.Database, kind: str = "crawl") -> int:
    """Insert a ``runs`` row and return its id."""
    with db.conn:
        cursor = db.execute(
            "INSERT INTO runs (kind, started_at, tool_version) VALUES (?, ?, ?)", [kind, utc_now(), TOOL]
        )
    return int(cursor.lastrowid)


def set_run_schedule(db: sqlite_utils.Database, run_id: int, schedule_id: str) -> None:
    """Record which schedule started a run."""
    with db.conn:
        db.execute("UPDATE runs SET schedule_id = ? WHERE id = ?", [schedule_id, run_id])


def interrupted_schedules(db: sqlite_utils.Database) -> set[str]:
    """Schedules whose latest run did not finish (stopped, or still 'running' after a crash)."""
    return {r[0] for r in db.execute(
        "SELECT r.schedule_id FROM runs r WHERE r.schedule_id IS NOT NULL AND r.id = "
        "(SELECT max(r2.id) FROM runs r2 WHERE r2.schedule_id = r.schedule_id) "
        "AND r.status IN ('stopped', 'interrupted', 'running')")}


def finish_run(db: sqlite_utils.Database, run_id: int, status: str, counts: dict[str, int]) -> None:
    """Close a run with its final counters."""
    allowed = {"feeds_ok", "feeds_failed", "new_entries", "new_articles", "new_captures", "classified", "errors"}
    values = {k: v for k, v in counts.items() if k in allowed}
    with db.conn:
        db["runs"].update(run_id, {**values, "status": status, "finished_at": utc_now()})


def record_failure(db: sqlite_utils.Database, run_id: int | None, stage: str, error_type: str, message: str,
                   url: str | None = None, feed_id: str | None = None) -> None:
    """Append a failure (one bad item never stops a run; this is where it is kept)."""
    with db.conn:
        db["failures"].insert({
            "run_id": run_id, "stage": stage, "feed_id": feed_id, "url": url,
            "error_type": error_type, "message": message[:2000], "occurred_at": utc_now(),
        })


def failure_recorded(db: sqlite_utils.Database, stage: str, url: str, message: str) -> bool:
    """Whether this failure (stage, URL or ``file@offset``, message) is already recorded by any run."""
    return db.execute("SELECT 1 FROM failures WHERE stage = ? AND url = ? AND message = ? LIMIT 1",
                      [stage, url, message[:2000]]).fetchone() is not None


# --- feeds -----------------------------------------------------------------------------------

def record_feed_ok(db: sqlite_utils.Database, feed_id: str, fetched: Fetched, n_entries: int,
                   warning: str | None) -> None:
    """Remember a successful poll: validators for the next conditional GET, health counters."""
    with db.conn:
        updates: dict[str, Any] = {
            "last_polled_at": fetched.captured_at, "last_ok_at": fetched.captured_at,
            "last_status": fetched.status, "consecutive_failures": 0, "feed_warning": warning,
            "next_poll_after": None,
        }
        if fetched.status != 304:
            updates.update({"etag": fetched.header("ETag") or None,
                            "last_modified": fetched.header("Last-Modified") or None,
                            "last_entries": n_entries})
        db["feeds"].update(feed_id, updates)


def record_feed_failure(db: sqlite_utils.Database, run_id: int, feed_id: str, url: str, error_type: str,
                        message: str, status: int | None = None, backoff_s: float = 0.0,
                        max_backoff_s: float = 86_400.0) -> str | None:
    """Count a failed poll against the feed, append it to ``failures`` and back the feed off.

    The n-th consecutive failure holds the feed back ``backoff_s * 2**(n-1)`` seconds (at most
    ``max_backoff_s``); returns the time of the next allowed poll (None without backoff).
    """
    now = utc_now()
    with db.conn:
        db.execute(
            "UPDATE feeds SET last_polled_at = ?, last_error = ?, last_error_at = ?, last_status = ?, "
            "consecutive_failures = consecutive_failures + 1 WHERE id = ?",
            [now, message[:2000], now, status, feed_id],
        )
        failures = db.execute("SELECT consecutive_failures FROM feeds WHERE id = ?", [feed_id]).fetchone()
        next_poll = None
        if backoff_s > 0 and failures:
            delay = min(backoff_s * 2 ** (max(1, failures[0]) - 1), max_backoff_s)
            next_poll = db.execute("SELECT strftime('%Y-%m-%dT%H:%M:%fZ', 'now', ?)", [f"+{delay:.0f} seconds"]).fetchone()[0]
            db.execute("UPDATE feeds SET next_poll_after = ? WHERE id = ?", [next_poll, feed_id])
    record_failure(db, run_id, "feed", error_type, message, url=url, feed_id=feed_id)
    return next_poll


def feeds_backing_off(db: sqlite_utils.Database) -> dict[str, str]:
    """Feeds held back after repeated failures: id -> time of the next allowed poll."""
    return {r[0]: r[1] for r in db.execute(
        "SELECT id, next_poll_after FROM feeds WHERE next_poll_after > strftime('%Y-%m-%dT%H:%M:%fZ', 'now')")}


def feed_health(db: sqlite_utils.Database) -> list[dict[str, Any]]:
    """Per feed: last success and error, consecutive failures, backoff, articles (all, per day over 7 days)."""
    return [dict(r) for r in db.query(
        """
        SELECT f.id, f.url, f.kind, f.section, f.enabled, f.last_ok_at, f.last_status, f.consecutive_failures,
               f.last_error, f.last_error_at, f.last_entries, f.next_poll_after,
               f.next_poll_after > strftime('%Y-%m-%dT%H:%M:%fZ', 'now') AS backing_off,
               (SELECT count(*) FROM articles a WHERE a.feed_id = f.id) AS articles,
               round((SELECT count(*) FROM articles a WHERE a.feed_id = f.id
                      AND a.first_seen_at >= strftime('%Y-%m-%dT%H:%M:%fZ', 'now', '-7 days')) / 7.0, 2)
                   AS articles_per_day
        FROM feeds f ORDER BY f.id
        """)]


def add_entries(db: sqlite_utils.Database, feed_id: str, entries: list[Entry]) -> int:
    """Queue feed entries not seen before (by canonical URL); return how many were new."""
    now = utc_now()
    new = 0
    with db.conn:
        for e in entries:
            url = canonical_url(e.url)
            cursor = db.execute(
                "INSERT OR IGNORE INTO entries (url, article_id, feed_id, title, author, published, summary, guid, first_seen_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [url, article_id(url), feed_id, e.title, e.author, e.published, e.summary, e.guid, now],
            )
            new += cursor.rowcount
    return new


def pending_entries(db: sqlite_utils.Database, max_attempts: int = 3) -> list[dict[str, Any]]:
    """Entries still to fetch (new, or failed fewer than ``max_attempts`` times), oldest first."""
    return list(db.query(
        "SELECT e.*, f.section, f.outlet_id, f.columnist AS feed_columnist FROM entries e "
        "JOIN feeds f ON f.id = e.feed_id WHERE e.status = 'pending' AND e.attempts < ? "
        "ORDER BY e.first_seen_at, e.url",
        [max_attempts],
    ))


def requeue_refused_entries(db: sqlite_utils.Database) -> int:
    """Put entries refused by the address policy back in the queue (after ``allow_private`` changed)."""
    with db.conn:
        cursor = db.execute("UPDATE entries SET status = 'pending', attempts = 0 "
                            "WHERE status = 'failed' AND last_error LIKE '%: refused: %'")
    return cursor.rowcount


def entry_failed(db: sqlite_utils.Database, run_id: int, entry: dict[str, Any], stage: str, error_type: str,
                 message: str, max_attempts: int = 3) -> None:
    """Record a failed fetch/extract of an entry; it is retried until ``max_attempts``."""
    with db.conn:
        db.execute(
            "UPDATE entries SET attempts = attempts + 1, last_error = ?, "
            "status = CASE WHEN attempts + 1 >= ? THEN 'failed' ELSE 'pending' END WHERE url = ?",
            [message[:2000], max_attempts, entry["url"]],
        )
    record_failure(db, run_id, stage, error_type, message, url=entry["url"], feed_id=entry["feed_id"])


