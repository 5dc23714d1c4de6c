"""SQLite storage through sqlite-utils: schema migrations and every read/write the pipeline does.

This is the only module that holds SQL. Captures and classifications are append-only: a new
capture or a new model version adds rows, never overwrites old ones.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlite_utils

from . import __version__
from .config import Config
from .fetch import utc_now
from .models import Article, Classification, Entry, Fetched
from .urls import article_id, canonical_url

LOGGER = logging.getLogger(__name__)
TOOL = f"smear-monitor/{__version__}"
MIGRATIONS: list[tuple[str, Callable[[sqlite_utils.Database], None]]] = []


def migration(name: str) -> Callable[[Callable[[sqlite_utils.Database], None]], Callable[[sqlite_utils.Database], None]]:
    """Register a schema migration; migrations run once each, in order, in a transaction."""

    def register(fn: Callable[[sqlite_utils.Database], None]) -> Callable[[sqlite_utils.Database], None]:
        MIGRATIONS.append((name, fn))
        return fn

    return register


def _run_script(db: sqlite_utils.Database, script: str) -> None:
    """Run SQL statements one by one inside the caller's transaction.

    ``executescript`` would COMMIT first, so a crash half-way through a migration could leave
    it applied but unrecorded; statement by statement it rolls back as a whole.
    """
    import sqlite3

    statement = ""
    for line in script.splitlines(keepends=True):
        statement += line
        if sqlite3.complete_statement(statement):
            db.execute(statement)
            statement = ""
    if statement.strip():
        raise ValueError(f"incomplete SQL statement in migration: {statement[:80]!r}")


@migration("initial schema")
def _m001(db: sqlite_utils.Database) -> None:
    _run_script(db,
        """
        CREATE TABLE outlets (
            id TEXT PRIMARY KEY, name TEXT NOT NULL, homepage TEXT, scope TEXT, state TEXT,
            country TEXT, language TEXT, tags TEXT, columnists TEXT, enabled INTEGER NOT NULL DEFAULT 1
        );
        CREATE TABLE feeds (
            id TEXT PRIMARY KEY, outlet_id TEXT NOT NULL REFERENCES outlets(id), url TEXT NOT NULL UNIQUE,
            section TEXT NOT NULL, kind TEXT NOT NULL DEFAULT 'feed', language TEXT, columnist TEXT,
            tags TEXT, enabled INTEGER NOT NULL DEFAULT 1, verified INTEGER NOT NULL DEFAULT 0, note TEXT,
            etag TEXT, last_modified TEXT, last_polled_at TEXT, last_ok_at TEXT, last_status INTEGER,
            last_error TEXT, last_error_at TEXT, consecutive_failures INTEGER NOT NULL DEFAULT 0,
            last_entries INTEGER, feed_warning TEXT
        );
        CREATE TABLE runs (
            id INTEGER PRIMARY KEY, kind TEXT NOT NULL, started_at TEXT NOT NULL, finished_at TEXT,
            status TEXT NOT NULL DEFAULT 'running', feeds_ok INTEGER DEFAULT 0, feeds_failed INTEGER DEFAULT 0,
            new_entries INTEGER DEFAULT 0, new_articles INTEGER DEFAULT 0, new_captures INTEGER DEFAULT 0,
            classified INTEGER DEFAULT 0, errors INTEGER DEFAULT 0, tool_version TEXT
        );
        CREATE TABLE entries (
            url TEXT PRIMARY KEY, article_id TEXT NOT NULL, feed_id TEXT NOT NULL REFERENCES feeds(id),
            title TEXT, author TEXT, published TEXT, summary TEXT, guid TEXT,
            first_seen_at TEXT NOT NULL, status TEXT NOT NULL DEFAULT 'pending',
            attempts INTEGER NOT NULL DEFAULT 0, last_error TEXT, done_at TEXT
        );
        CREATE INDEX entries_status ON entries(status, first_seen_at);
        CREATE TABLE captures (
            id INTEGER PRIMARY KEY, article_id TEXT NOT NULL, url TEXT NOT NULL, final_url TEXT NOT NULL,
            status INTEGER NOT NULL, headers TEXT NOT NULL, redirects TEXT, content_type TEXT,
            captured_at TEXT NOT NULL, sha256 TEXT NOT NULL, size INTEGER NOT NULL,
            body_gz BLOB NOT NULL, run_id INTEGER REFERENCES runs(id), tool_version TEXT NOT NULL
        );
        CREATE INDEX captures_article ON captures(article_id, captured_at);
        CREATE INDEX captures_sha256 ON captures(sha256);
        CREATE TABLE articles (
            id TEXT PRIMARY KEY, url TEXT NOT NULL, canonical_url TEXT NOT NULL,
            outlet_id TEXT REFERENCES outlets(id), feed_id TEXT REFERENCES feeds(id), section TEXT,
            columnist TEXT, title TEXT, author TEXT, published TEXT, site_name TEXT, language TEXT,
            description TEXT, text TEXT NOT NULL, text_sha256 TEXT NOT NULL,
            capture_id INTEGER NOT NULL REFERENCES captures(id), first_seen_at TEXT NOT NULL,
            extracted_at TEXT NOT NULL, extractor TEXT NOT NULL
        );
        CREATE INDEX articles_outlet ON articles(outlet_id, published);
        CREATE INDEX articles_published ON articles(published);
        CREATE TABLE classifications (
            id INTEGER PRIMARY KEY, article_id TEXT NOT NULL REFERENCES articles(id),
            model_id TEXT NOT NULL, model_version TEXT NOT NULL, classified_at TEXT NOT NULL,
            stigmatising INTEGER NOT NULL, score REAL NOT NULL, categories TEXT NOT NULL,
            top_category TEXT, voice TEXT, speaker TEXT, speaker_is_official INTEGER, targets TEXT,
            n_passages INTEGER, text_sha256 TEXT,
            UNIQUE (article_id, model_id, model_version)
        );
        CREATE INDEX classifications_flagged ON classifications(stigmatising, score);
        CREATE TABLE passages (
            id INTEGER PRIMARY KEY, classification_id INTEGER NOT NULL REFERENCES classifications(id),
            article_id TEXT NOT NULL REFERENCES articles(id), start INTEGER NOT NULL, "end" INTEGER NOT NULL,
            text TEXT NOT NULL, score REAL NOT NULL, categories TEXT NOT NULL, top_category TEXT,
            voice TEXT, speaker TEXT, speaker_is_official INTEGER, targets TEXT
        );
        CREATE INDEX passages_article ON passages(article_id);
        CREATE TABLE failures (
            id INTEGER PRIMARY KEY, run_id INTEGER REFERENCES runs(id), stage TEXT NOT NULL,
            feed_id TEXT, url TEXT, error_type TEXT NOT NULL, message TEXT NOT NULL, occurred_at TEXT NOT NULL
        );
        CREATE INDEX failures_run ON failures(run_id);
        CREATE TABLE reviews (
            id INTEGER PRIMARY KEY, article_id TEXT NOT NULL REFERENCES articles(id),
            reviewer TEXT NOT NULL, decision TEXT NOT NULL CHECK (decision IN ('confirm', 'reject', 'relabel')),
            categories TEXT, voice TEXT, speaker TEXT, targets TEXT, note TEXT,
            model_id TEXT, model_version TEXT, created_at TEXT NOT NULL
        );
        CREATE INDEX reviews_article ON reviews(article_id, id);
        CREATE VIEW latest_classifications AS
            SELECT c.* FROM classifications c
            WHERE c.id = (SELECT max(c2.id) FROM classifications c2 WHERE c2.article_id = c.article_id);
        CREATE VIEW latest_reviews AS
            SELECT r.* FROM reviews r
            WHERE r.id = (SELECT max(r2.id) FROM reviews r2 WHERE r2.article_id = r.article_id);
        CREATE VIEW flagged_articles AS
            SELECT a.id AS article_id, a.published, o.name AS outlet, a.section, a.columnist, a.author,
                   a.title, a.url, c.score, c.top_category, c.categories, c.voice, c.speaker,
                   c.speaker_is_official, c.targets, c.model_id, c.model_version,
                   (SELECT group_concat(p.text, ' […] ') FROM passages p WHERE p.classification_id = c.id) AS passages,
                   lr.decision AS review_decision, lr.reviewer, lr.created_at AS reviewed_at
            FROM latest_classifications c
            JOIN articles a ON a.id = c.article_id
            LEFT JOIN outlets o ON o.id = a.outlet_id
            LEFT JOIN latest_reviews lr ON lr.article_id = a.id
            WHERE c.stigmatising = 1;
        """
    )
    db["articles"].enable_fts(["title", "text"], create_triggers=True, tokenize="unicode61 remove_diacritics 2")


@migration("crawl state: feed backoff, re-checks, edits, removals, stories")
def _m002(db: sqlite_utils.Database) -> None:
    _run_script(db,
        """
        ALTER TABLE feeds ADD COLUMN next_poll_after TEXT;
        ALTER TABLE runs ADD COLUMN schedule_id TEXT;
        ALTER TABLE articles ADD COLUMN last_capture_id INTEGER REFERENCES captures(id);
        ALTER TABLE articles ADD COLUMN last_checked_at TEXT;
        ALTER TABLE articles ADD COLUMN removed_at TEXT;
        ALTER TABLE articles ADD COLUMN edits INTEGER NOT NULL DEFAULT 0;
        ALTER TABLE articles ADD COLUMN content_fingerprint TEXT;
        ALTER TABLE articles ADD COLUMN story_id TEXT;
        ALTER TABLE articles ADD COLUMN duplicate_of TEXT;
        UPDATE articles SET story_id = id, last_capture_id = capture_id;
        CREATE INDEX articles_story ON articles(story_id);
        CREATE INDEX articles_fingerprint ON articles(content_fingerprint);
        CREATE INDEX articles_first_seen ON articles(first_seen_at);
        CREATE TABLE article_checks (
            id INTEGER PRIMARY KEY, article_id TEXT NOT NULL REFERENCES articles(id), run_id INTEGER REFERENCES runs(id),
            checked_at TEXT NOT NULL,
            outcome TEXT NOT NULL CHECK (outcome IN ('unchanged', 'changed', 'removed', 'restored', 'error')),
            http_status INTEGER, capture_id INTEGER REFERENCES captures(id), message TEXT
        );
        CREATE INDEX article_checks_article ON article_checks(article_id, id);
        CREATE TABLE article_versions (
            id INTEGER PRIMARY KEY, article_id TEXT NOT NULL REFERENCES articles(id),
            capture_id INTEGER NOT NULL REFERENCES captures(id), detected_at TEXT NOT NULL,
            title TEXT, text TEXT NOT NULL, text_sha256 TEXT NOT NULL, previous_text_sha256 TEXT NOT NULL,
            diff TEXT NOT NULL
        );
        CREATE INDEX article_versions_article ON article_versions(article_id, id);
        CREATE TABLE article_signatures (article_id TEXT PRIMARY KEY REFERENCES articles(id), signature BLOB NOT NULL);
        CREATE TABLE story_bands (
            band TEXT NOT NULL, article_id TEXT NOT NULL REFERENCES articles(id), PRIMARY KEY (band, article_id)
        ) WITHOUT ROWID;
        DROP VIEW flagged_articles;
        CREATE VIEW flagged_articles AS
            SELECT a.id AS article_id, a.published, o.name AS outlet, a.section, a.columnist, a.author,
                   a.title, a.url, c.score, c.top_category, c.categories, c.voice, c.speaker,
                   c.speaker_is_official, c.targets, c.model_id, c.model_version,
                   (SELECT group_concat(p.text, ' […] ') FROM passages p WHERE p.classification_id = c.id) AS passages,
                   lr.decision AS review_decision, lr.reviewer, lr.created_at AS reviewed_at,
                   a.story_id, (SELECT count(*) - 1 FROM articles s WHERE s.story_id = a.story_id) AS copies,
                   a.edits, a.removed_at
            FROM latest_classifications c
            JOIN articles a ON a.id = c.article_id
            LEFT JOIN outlets o ON o.id = a.outlet_id
            LEFT JOIN latest_reviews lr ON lr.article_id = a.id
            WHERE c.stigmatising = 1;
        """
    )


def connect(path: str | Path, migrate: bool = True) -> sqlite_utils.Database:
    """Open (creating if needed) the monitor database with WAL and foreign keys on.

    Args:
        path: SQLite file path.
        migrate: apply pending schema migrations.
    """
    db = sqlite_utils.Database(str(path))
    db.execute("PRAGMA journal_mode = WAL")
    db.execute("PRAGMA foreign_keys = ON")
    db.execute("PRAGMA busy_timeout = 10000")
    db.execute("PRAGMA synchronous = NORMAL")
    if migrate:
        apply_migrations(db)
    return db


def apply_migrations(db: sqlite_utils.Database) -> list[str]:
    """Apply every migration not yet recorded in ``_migrations``; return the names applied."""
    db.execute(
        "CREATE TABLE IF NOT EXISTS _migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL)"
    )
    done = {row[0] for row in db.execute("SELECT version FROM _migrations").fetchall()}
    applied = []
    for version, (name, fn) in enumerate(MIGRATIONS, start=1):
        if version in done:
            continue
        with db.conn:
            db.execute("SAVEPOINT migration")
            try:
                fn(db)
                db.execute("INSERT INTO _migrations VALUES (?, ?, ?)", [version, name, utc_now()])
                db.execute("RELEASE migration")
            except Exception:
                db.execute("ROLLBACK TO migration")
                raise
        LOGGER.info("applied migration %s: %s", version, name)
        applied.append(name)
    return applied


def schema_version(db: sqlite_utils.Database) -> int:
    """Highest applied migration number."""
    return db.execute("SELECT coalesce(max(version), 0) FROM _migrations").fetchone()[0]


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


# --- captures and articles -------------------------------------------------------------------

def compress(body: bytes) -> bytes:
    """Deterministic gzip (mtime 0) of raw bytes for storage."""
    return gzip.compress(body, compresslevel=6, mtime=0)


def capture_body(db: sqlite_utils.Database, capture_id: int) -> bytes:
    """The raw bytes of a capture, exactly as served."""
    row = db.execute("SELECT body_gz FROM captures WHERE id = ?", [capture_id]).fetchone()
    if row is None:
        raise KeyError(f"no capture {capture_id}")
    return gzip.decompress(row[0])


def _insert_capture(db: sqlite_utils.Database, aid: str, fetched: Fetched, run_id: int | None) -> int:
    cursor = db.execute(
        "INSERT INTO captures (article_id, url, final_url, status, headers, redirects, content_type, captured_at, "
        "sha256, size, body_gz, run_id, tool_version) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [aid, fetched.url, fetched.final_url, fetched.status, json.dumps(list(map(list, fetched.headers))),
         json.dumps(list(fetched.redirects)), fetched.header("Content-Type"), fetched.captured_at,
         fetched.sha256, len(fetched.body), compress(fetched.body), run_id, TOOL],
    )
    return int(cursor.lastrowid)


@dataclass(frozen=True, slots=True)
class PageFacts:
    """What the pipeline decided about a page before storing it (section, dedup, story)."""

    section: str = "news"
    columnist: str = ""
    fingerprint: str = ""
    signature: bytes = b""
    bands: tuple[str, ...] = ()
    story_id: str | None = None        # None: the article starts its own story
    duplicate_of: str | None = None    # same text already stored for another outlet's article
    same_as: str | None = None         # the SAME article already stored (canonical URL / same outlet copy)


def store_page(db: sqlite_utils.Database, run_id: int, entry: dict[str, Any], fetched: Fetched,
               article: Article | None, extract_error: str | None, extractor: str,
               facts: PageFacts | None = None) -> tuple[int, bool]:
    """Store a fetched page in ONE transaction: capture, article (if extracted), entry done.

    A crash before the commit leaves nothing behind and the entry stays pending; after it,
    everything is there. A page that is an article already stored (``facts.same_as``) keeps its
    capture, attached to that article, and adds no article row. Returns ``(capture_id, article_stored)``.
    """
    facts = facts or PageFacts(section=entry.get("section") or "news", columnist=entry.get("feed_columnist") or "")
    aid = facts.same_as or entry["article_id"]
    now = utc_now()
    with db.conn:
        capture_id = _insert_capture(db, aid, fetched, run_id)
        stored = False
        if article is not None and not facts.same_as:
            cursor = db.execute(
                "INSERT OR IGNORE INTO articles (id, url, canonical_url, outlet_id, feed_id, section, columnist, title, "
                "author, published, site_name, language, description, text, text_sha256, capture_id, first_seen_at, "
                "extracted_at, extractor, last_capture_id, content_fingerprint, story_id, duplicate_of) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [aid, entry["url"], canonical_url(article.canonical_url or fetched.final_url), entry["outlet_id"],
                 entry["feed_id"], facts.section, facts.columnist, article.title or entry.get("title") or "",
                 article.author or entry.get("author") or "", article.published or entry.get("published"),
                 article.site_name, article.language, article.description, article.text,
                 hashlib.sha256(article.text.encode("utf-8")).hexdigest(), capture_id, entry["first_seen_at"], now,
                 extractor, capture_id, facts.fingerprint or None, facts.story_id or aid, facts.duplicate_of],
            )
            stored = cursor.rowcount > 0
            if stored and facts.signature:
                db.execute("INSERT OR REPLACE INTO article_signatures VALUES (?, ?)", [aid, facts.signature])
                db.conn.executemany("INSERT OR IGNORE INTO story_bands VALUES (?, ?)", [(b, aid) for b in facts.bands])
        status = "duplicate" if facts.same_as else ("stored" if article is not None else "unextracted")
        db.execute(
            "UPDATE entries SET status = ?, done_at = ?, attempts = attempts + 1, last_error = ? WHERE url = ?",
            [status, now, extract_error, entry["url"]],
        )
        if extract_error:
            db["failures"].insert({
                "run_id": run_id, "stage": "extract", "feed_id": entry["feed_id"], "url": entry["url"],
                "error_type": "extract", "message": extract_error[:2000], "occurred_at": now,
            })
    return capture_id, stored


def article_by_canonical_url(db: sqlite_utils.Database, url: str) -> str | None:
    """Id of a stored article whose canonical URL is ``url``."""
    row = db.execute("SELECT id FROM articles WHERE canonical_url = ? ORDER BY first_seen_at LIMIT 1", [url]).fetchone()
    return row[0] if row else None


def articles_with_fingerprint(db: sqlite_utils.Database, fingerprint: str) -> list[dict[str, Any]]:
    """Stored articles with exactly this normalised text (earliest first)."""
    return list(db.query("SELECT id, outlet_id, story_id FROM articles WHERE content_fingerprint = ? "
                         "ORDER BY first_seen_at, id", [fingerprint]))


def story_candidates(db: sqlite_utils.Database, bands: tuple[str, ...] | list[str],
                     window_days: int = 14) -> list[dict[str, Any]]:
    """Articles of the last ``window_days`` sharing an LSH band with a signature, with signature and story.

    The window keeps daily template pieces (exchange rates, crime tallies) from joining one
    endless story. Earliest first.
    """
    if not bands:
        return []
    marks = ",".join("?" * len(bands))
    return list(db.query(
        f"SELECT a.id, a.story_id, a.outlet_id, s.signature FROM articles a JOIN article_signatures s ON s.article_id = a.id "
        f"WHERE a.id IN (SELECT DISTINCT article_id FROM story_bands WHERE band IN ({marks})) "
        "AND a.first_seen_at >= strftime('%Y-%m-%dT%H:%M:%fZ', 'now', ?) "
        "ORDER BY a.first_seen_at, a.id", [*bands, f"-{int(window_days)} days"]))


# --- re-checks: edits and removals -------------------------------------------------------------

def articles_to_recheck(db: sqlite_utils.Database, days: int, flagged_days: int,
                        limit: int = 5000) -> list[dict[str, Any]]:
    """Articles first seen in the last ``days`` (flagged ones: ``flagged_days``), least recently checked first.

    Each row carries the latest capture's hash and the current text's hash to compare with.
    """
    return list(db.query(
        """
        SELECT a.id, a.url, a.feed_id, a.outlet_id, a.removed_at, a.edits,
               c.sha256 AS capture_sha256, c.id AS capture_id,
               coalesce((SELECT v.text_sha256 FROM article_versions v WHERE v.article_id = a.id ORDER BY v.id DESC LIMIT 1),
                        a.text_sha256) AS text_sha256,
               coalesce((SELECT v.text FROM article_versions v WHERE v.article_id = a.id ORDER BY v.id DESC LIMIT 1),
                        a.text) AS text
        FROM articles a JOIN captures c ON c.id = coalesce(a.last_capture_id, a.capture_id)
        WHERE a.first_seen_at >= strftime('%Y-%m-%dT%H:%M:%fZ', 'now', ?)
           OR (a.first_seen_at >= strftime('%Y-%m-%dT%H:%M:%fZ', 'now', ?)
               AND EXISTS (SELECT 1 FROM latest_classifications lc WHERE lc.article_id = a.id AND lc.stigmatising = 1))
        ORDER BY coalesce(a.last_checked_at, ''), a.first_seen_at LIMIT ?
        """, [f"-{int(days)} days", f"-{int(flagged_days)} days", int(limit)]))


def record_check(db: sqlite_utils.Database, run_id: int, article: dict[str, Any], outcome: str,
                 http_status: int | None = None, message: str | None = None, fetched: Fetched | None = None,
                 new_text: Article | None = None, diff: str = "") -> int | None:
    """Record one re-check in ONE transaction; returns the new capture id for a changed page.

    ``changed``: a new capture and a new ``article_versions`` row with the diff (old captures
    and the original text stay); ``removed``: ``removed_at`` is set the first time the page is
    seen gone (and kept); ``restored``: the page answers again.
    """
    now = utc_now()
    capture_id = None
    with db.conn:
        if fetched is not None and outcome in ("changed", "restored") and new_text is not None:
            capture_id = _insert_capture(db, article["id"], fetched, run_id)
            new_sha = hashlib.sha256(new_text.text.encode("utf-8")).hexdigest()
            if new_sha != article["text_sha256"]:
                db.execute(
                    "INSERT INTO article_versions (article_id, capture_id, detected_at, title, text, text_sha256, "
                    "previous_text_sha256, diff) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    [article["id"], capture_id, now, new_text.title, new_text.text, new_sha, article["text_sha256"], diff])
                db.execute("UPDATE articles SET edits = edits + 1 WHERE id = ?", [article["id"]])
            db.execute("UPDATE articles SET last_capture_id = ? WHERE id = ?", [capture_id, article["id"]])
        if outcome == "removed":
            db.execute("UPDATE articles SET removed_at = coalesce(removed_at, ?) WHERE id = ?", [now, article["id"]])
        if outcome == "restored":
            db.execute("UPDATE articles SET removed_at = NULL WHERE id = ?", [article["id"]])
        db.execute("UPDATE articles SET last_checked_at = ? WHERE id = ?", [now, article["id"]])
        db.execute(
            "INSERT INTO article_checks (article_id, run_id, checked_at, outcome, http_status, capture_id, message) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)", [article["id"], run_id, now, outcome, http_status, capture_id, message])
    return capture_id


# --- classifications -------------------------------------------------------------------------

def articles_to_classify(db: sqlite_utils.Database, model_id: str, model_version: str,
                         limit: int | None = None) -> Iterator[dict[str, Any]]:
    """Articles with no classification by this model version."""
    sql = (
        "SELECT a.id, a.title, a.text, a.text_sha256 FROM articles a WHERE NOT EXISTS ("
        "SELECT 1 FROM classifications c WHERE c.article_id = a.id AND c.model_id = ? AND c.model_version = ?) "
        "ORDER BY a.first_seen_at, a.id"
    )
    if limit:
        sql += f" LIMIT {int(limit)}"
    yield from db.query(sql, [model_id, model_version])


def store_classification(db: sqlite_utils.Database, aid: str, text_sha256: str, result: Classification) -> int:
    """Insert one classification and its flagged passages in a transaction (never overwrites)."""
    top = max(result.categories, key=lambda k: result.categories[k]) if result.categories else None
    with db.conn:
        cursor = db.execute(
            "INSERT OR IGNORE INTO classifications (article_id, model_id, model_version, classified_at, stigmatising, "
            "score, categories, top_category, voice, speaker, speaker_is_official, targets, n_passages, text_sha256) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [aid, result.model_id, result.model_version, utc_now(), int(result.stigmatising), result.score,
             json.dumps(result.categories, sort_keys=True), top if result.stigmatising else None, result.voice,
             result.speaker, int(result.speaker_is_official), json.dumps(list(result.targets), ensure_ascii=False),
             result.n_passages, text_sha256],
        )
        if cursor.rowcount == 0:
            return 0
        cid = int(cursor.lastrowid)
        for p in result.passages:
            ptop = max(p.categories, key=lambda k: p.categories[k]) if p.categories else None
            db.execute(
                'INSERT INTO passages (classification_id, article_id, start, "end", text, score, categories, '
                "top_category, voice, speaker, speaker_is_official, targets) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [cid, aid, p.start, p.end, p.text, p.score, json.dumps(p.categories, sort_keys=True), ptop,
                 p.voice, p.speaker, int(p.speaker_is_official), json.dumps(list(p.targets), ensure_ascii=False)],
            )
    return cid


# --- accounts, reviews and the triage queue ---------------------------------------------------

ACCOUNTS_SCHEMA = """
CREATE TABLE IF NOT EXISTS users (
    name TEXT PRIMARY KEY, role TEXT NOT NULL CHECK (role IN ('reviewer', 'analyst', 'admin')),
    password_hash TEXT NOT NULL, created_at TEXT NOT NULL, disabled_at TEXT
);
CREATE TABLE IF NOT EXISTS api_tokens (
    id INTEGER PRIMARY KEY, user TEXT NOT NULL REFERENCES users(name), token_sha256 TEXT NOT NULL UNIQUE,
    label TEXT, created_at TEXT NOT NULL, revoked_at TEXT
);
"""


def accounts_path(db_path: str | Path) -> Path:
    """The accounts file beside a monitor database.

    Accounts live in their own SQLite file, never served by Datasette: analysts may run any
    SQL on the monitor database, and must not read password hashes.
    """
    p = Path(db_path)
    return p.with_name(p.name + ".accounts.sqlite")


def connect_accounts(db_path: str | Path) -> sqlite_utils.Database:
    """Open (creating if needed) the accounts database of the monitor database ``db_path``."""
    db = sqlite_utils.Database(str(accounts_path(db_path)))
    db.execute("PRAGMA journal_mode = WAL")
    db.execute("PRAGMA foreign_keys = ON")
    db.execute("PRAGMA busy_timeout = 10000")
    with db.conn:
        _run_script(db, ACCOUNTS_SCHEMA)
    return db


def add_user(db: sqlite_utils.Database, name: str, role: str, password_hash: str) -> None:
    """Create a user, or change the role and password of an existing one."""
    with db.conn:
        db.execute("INSERT INTO users (name, role, password_hash, created_at) VALUES (?, ?, ?, ?) "
                   "ON CONFLICT(name) DO UPDATE SET role = excluded.role, password_hash = excluded.password_hash, "
                   "disabled_at = NULL", [name, role, password_hash, utc_now()])


def get_user(db: sqlite_utils.Database, name: str) -> dict[str, Any] | None:
    """An active user's row (None when unknown or removed)."""
    rows = list(db.query("SELECT name, role, password_hash, created_at FROM users WHERE name = ? AND disabled_at IS NULL",
                         [name]))
    return rows[0] if rows else None


def list_users(db: sqlite_utils.Database) -> list[dict[str, Any]]:
    """Active users with their number of review decisions and live API tokens."""
    return list(db.query(
        "SELECT u.name, u.role, u.created_at, (SELECT count(*) FROM reviews r WHERE r.reviewer = u.name) AS decisions, "
        "(SELECT count(*) FROM api_tokens t WHERE t.user = u.name AND t.revoked_at IS NULL) AS tokens "
        "FROM users u WHERE u.disabled_at IS NULL ORDER BY u.name"))


def remove_user(db: sqlite_utils.Database, name: str) -> bool:
    """Disable a user and revoke their tokens (their past decisions stay, attributed to them)."""
    now = utc_now()
    with db.conn:
        cursor = db.execute("UPDATE users SET disabled_at = ? WHERE name = ? AND disabled_at IS NULL", [now, name])
        db.execute("UPDATE api_tokens SET revoked_at = ? WHERE user = ? AND revoked_at IS NULL", [now, name])
    return cursor.rowcount > 0


def add_token(db: sqlite_utils.Database, user: str, token_sha256: str, label: str = "") -> None:
    """Store the hash of a new API token for ``user``."""
    with db.conn:
        db.execute("INSERT INTO api_tokens (user, token_sha256, label, created_at) VALUES (?, ?, ?, ?)",
                   [user, token_sha256, label, utc_now()])


def user_for_token(db: sqlite_utils.Database, token_sha256: str) -> dict[str, Any] | None:
    """The active user owning a live token."""
    rows = list(db.query(
        "SELECT u.name, u.role FROM api_tokens t JOIN users u ON u.name = t.user "
        "WHERE t.token_sha256 = ? AND t.revoked_at IS NULL AND u.disabled_at IS NULL", [token_sha256]))
    return rows[0] if rows else None


def record_review(db: sqlite_utils.Database, article_id: str, reviewer: str, decision: str,
                  categories: list[str] | None = None, voice: str | None = None, speaker: str | None = None,
                  targets: list[str] | None = None, note: str = "") -> int:
    """Append a reviewer's decision (never updates an earlier one); the model version seen is recorded.

    Raises:
        KeyError: no such article.
    """
    with db.conn:
        seen = db.execute("SELECT model_id, model_version FROM classifications WHERE article_id = ? ORDER BY id DESC LIMIT 1",
                          [article_id]).fetchone()
        if db.execute("SELECT 1 FROM articles WHERE id = ?", [article_id]).fetchone() is None:
            raise KeyError(article_id)
        cursor = db.execute(
            "INSERT INTO reviews (article_id, reviewer, decision, categories, voice, speaker, targets, note, model_id, "
            "model_version, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [article_id, reviewer, decision, json.dumps(categories) if categories is not None else None, voice, speaker,
             json.dumps(targets, ensure_ascii=False) if targets is not None else None, note or None,
             seen[0] if seen else None, seen[1] if seen else None, utc_now()])
    return int(cursor.lastrowid)


QUEUE_ORDERS = {"score": "c.score DESC, a.published DESC", "uncertain": "c.score ASC, a.published DESC"}


def queue(db: sqlite_utils.Database, order: str = "score", limit: int = 50, reviewed: bool = False) -> list[dict[str, Any]]:
    """Flagged articles (latest verdict) not yet reviewed, best first or most uncertain first.

    "uncertain" ranks the flags closest to the threshold first: the decisions that teach the
    model most. Walks the (stigmatising, score) index, so it stays fast on large databases.
    """
    reviewed_clause = "" if reviewed else "AND NOT EXISTS (SELECT 1 FROM reviews r WHERE r.article_id = c.article_id)"
    return list(db.query(
        f"""
        SELECT c.id AS classification_id, c.article_id, c.score, c.categories, c.top_category, c.voice, c.speaker,
               c.speaker_is_official, c.targets, c.model_id, c.model_version, a.title, a.url, a.published, a.section,
               a.columnist, a.story_id, a.outlet_id, o.name AS outlet, a.removed_at, a.edits
        FROM classifications c
        JOIN articles a ON a.id = c.article_id
        LEFT JOIN outlets o ON o.id = a.outlet_id
        WHERE c.stigmatising = 1
          AND c.id = (SELECT max(c2.id) FROM classifications c2 WHERE c2.article_id = c.article_id)
          {reviewed_clause}
        ORDER BY {QUEUE_ORDERS[order]} LIMIT ?
        """, [int(limit)]))


def story_members(db: sqlite_utils.Database, story_ids: list[str]) -> dict[str, list[dict[str, Any]]]:
    """Every article of each story (outlet, title, url, published), earliest first."""
    if not story_ids:
        return {}
    marks = ",".join("?" * len(story_ids))
    out: dict[str, list[dict[str, Any]]] = {}
    for r in db.query(f"SELECT a.story_id, a.id, a.title, a.url, a.published, o.name AS outlet FROM articles a "
                      f"LEFT JOIN outlets o ON o.id = a.outlet_id WHERE a.story_id IN ({marks}) "
                      "ORDER BY a.first_seen_at, a.id", story_ids):
        out.setdefault(r["story_id"], []).append(r)
    return out


def article_detail(db: sqlite_utils.Database, article_id: str) -> dict[str, Any] | None:
    """An article with its latest classification, flagged passages, captures, versions and reviews."""
    rows = list(db.query("SELECT a.*, o.name AS outlet FROM articles a LEFT JOIN outlets o ON o.id = a.outlet_id "
                         "WHERE a.id = ?", [article_id]))
    if not rows:
        return None
    art = rows[0]
    cls = list(db.query("SELECT * FROM classifications WHERE article_id = ? ORDER BY id DESC LIMIT 1", [article_id]))
    art["classification"] = cls[0] if cls else None
    art["passages"] = list(db.query('SELECT start, "end", text, score, categories, top_category, voice, speaker, '
                                    "speaker_is_official, targets FROM passages WHERE classification_id = ? ORDER BY start",
                                    [cls[0]["id"]])) if cls else []
    art["captures"] = list(db.query("SELECT id, url, final_url, status, captured_at, sha256, size, content_type "
                                    "FROM captures WHERE article_id = ? ORDER BY id", [article_id]))
    art["versions"] = list(db.query("SELECT id, capture_id, detected_at, diff FROM article_versions WHERE article_id = ? "
                                    "ORDER BY id", [article_id]))
    art["reviews"] = list(db.query("SELECT * FROM reviews WHERE article_id = ? ORDER BY id", [article_id]))
    return art


def capture_row(db: sqlite_utils.Database, capture_id: int) -> dict[str, Any] | None:
    """A capture's metadata and raw (gzip) body."""
    rows = list(db.query("SELECT * FROM captures WHERE id = ?", [capture_id]))
    return rows[0] if rows else None


def review_disagreements(db: sqlite_utils.Database, limit: int = 200) -> list[dict[str, Any]]:
    """Articles where reviewers' latest decisions differ (confirm vs reject), with who said what."""
    return list(db.query(
        """
        WITH latest AS (
            SELECT r.article_id, r.reviewer, r.decision, r.created_at FROM reviews r
            WHERE r.id = (SELECT max(r2.id) FROM reviews r2 WHERE r2.article_id = r.article_id AND r2.reviewer = r.reviewer)
        )
        SELECT l.article_id, a.title, group_concat(l.reviewer || ': ' || l.decision, '; ') AS decisions,
               count(*) AS reviewers
        FROM latest l JOIN articles a ON a.id = l.article_id
        GROUP BY l.article_id HAVING count(DISTINCT CASE WHEN l.decision = 'reject' THEN 'reject' ELSE 'confirm' END) > 1
        ORDER BY max(l.created_at) DESC LIMIT ?
        """, [int(limit)]))


def review_agreement(db: sqlite_utils.Database) -> dict[str, int]:
    """How many articles two or more reviewers decided, and on how many they disagree."""
    row = db.execute(
        """
        WITH latest AS (
            SELECT r.article_id, r.reviewer, CASE WHEN r.decision = 'reject' THEN 0 ELSE 1 END AS yes FROM reviews r
            WHERE r.id = (SELECT max(r2.id) FROM reviews r2 WHERE r2.article_id = r.article_id AND r2.reviewer = r.reviewer)
        ), per AS (SELECT article_id, count(*) AS n, min(yes) AS lo, max(yes) AS hi FROM latest GROUP BY article_id)
        SELECT coalesce(sum(n >= 2), 0), coalesce(sum(n >= 2 AND lo != hi), 0) FROM per
        """).fetchone()
    return {"double_reviewed": row[0], "disagreements": row[1]}


def counts(db: sqlite_utils.Database) -> dict[str, int]:
    """Row counts of the main tables (for status and tests)."""
    names = ["outlets", "feeds", "entries", "captures", "articles", "classifications", "passages", "failures", "runs", "reviews"]
    return {n: db.execute(f"SELECT count(*) FROM {n}").fetchone()[0] for n in names}
