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
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlite_utils

from . import __version__
from .config import Config
from .errors import DatabaseError
from .fetch import utc_now
from .models import Article, Classification, Entry, Fetched, WarcRef
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


APPEND_ONLY = ("captures", "warc_records", "custody", "timestamps")


@migration("evidence: WARC records, custody log, trusted timestamps; evidence tables append-only")
def _m003(db: sqlite_utils.Database) -> None:
    _run_script(db,
        """
        CREATE TABLE warc_records (
            capture_id INTEGER PRIMARY KEY REFERENCES captures(id), warc_dir TEXT NOT NULL, warc_file TEXT NOT NULL,
            record_offset INTEGER NOT NULL, record_length INTEGER NOT NULL, response_length INTEGER NOT NULL,
            record_id TEXT NOT NULL, payload_digest TEXT NOT NULL
        );
        CREATE INDEX warc_records_file ON warc_records(warc_file, record_offset);
        CREATE TABLE custody (
            id INTEGER PRIMARY KEY, at TEXT NOT NULL, action TEXT NOT NULL, actor TEXT NOT NULL,
            article_id TEXT, capture_id INTEGER, ref_id INTEGER, sha256 TEXT, input_sha256 TEXT, details TEXT
        );
        CREATE INDEX custody_article ON custody(article_id, id);
        CREATE INDEX custody_capture ON custody(capture_id);
        CREATE TABLE timestamps (
            id INTEGER PRIMARY KEY, capture_id INTEGER NOT NULL REFERENCES captures(id), sha256 TEXT NOT NULL,
            tsa_url TEXT NOT NULL, requested_at TEXT NOT NULL, gen_time TEXT, token BLOB NOT NULL, ca_pem TEXT
        );
        CREATE INDEX timestamps_capture ON timestamps(capture_id);
        -- every review decision, whichever way it is written (record_review, a canned query), in its transaction
        CREATE TRIGGER reviews_custody AFTER INSERT ON reviews BEGIN
            INSERT INTO custody (at, action, actor, article_id, ref_id, input_sha256, details)
            VALUES (NEW.created_at, 'review', NEW.reviewer, NEW.article_id, NEW.id,
                    (SELECT text_sha256 FROM articles WHERE id = NEW.article_id),
                    json_object('decision', NEW.decision, 'categories', NEW.categories, 'voice', NEW.voice,
                                'speaker', NEW.speaker, 'targets', NEW.targets, 'note', NEW.note,
                                'model_id', NEW.model_id, 'model_version', NEW.model_version));
        END;
        """
    )
    for table in APPEND_ONLY:
        for op, verb in (("UPDATE", "changed"), ("DELETE", "deleted")):
            db.execute(f"CREATE TRIGGER {table}_no_{op.lower()} BEFORE {op} ON {table} BEGIN "
                       f"SELECT RAISE(ABORT, '{table} is append-only evidence: rows are never {verb}'); END")


@migration("analytics: flagged targets by day")
def _m004(db: sqlite_utils.Database) -> None:
    # Targets live as JSON in classifications.targets; a per-target timeline over 100,000 flags
    # needs them as rows with an index. flag_targets holds the LATEST verdict of each article only
    # (a new verdict replaces its rows) and whether its latest review rejected it, both kept by
    # triggers however a verdict or a decision is written; the timeline then reads one index range.
    # Also: passages are looked up by classification (article pages, the flagged_articles view).
    _run_script(db,
        """
        CREATE INDEX passages_classification ON passages(classification_id);
        CREATE TABLE flag_targets (
            target TEXT NOT NULL, article_id TEXT NOT NULL, classification_id INTEGER NOT NULL REFERENCES classifications(id),
            day TEXT, rejected INTEGER NOT NULL DEFAULT 0, PRIMARY KEY (target, article_id)
        ) WITHOUT ROWID;
        CREATE INDEX flag_targets_timeline ON flag_targets(target, rejected, day);
        CREATE INDEX flag_targets_article ON flag_targets(article_id);
        CREATE TRIGGER classifications_flag_targets AFTER INSERT ON classifications BEGIN
            DELETE FROM flag_targets WHERE article_id = NEW.article_id;
            INSERT OR IGNORE INTO flag_targets (target, article_id, classification_id, day, rejected)
            SELECT t.value, NEW.article_id, NEW.id,
                   (SELECT substr(coalesce(a.published, a.first_seen_at), 1, 10) FROM articles a WHERE a.id = NEW.article_id),
                   coalesce((SELECT r.decision = 'reject' FROM reviews r WHERE r.article_id = NEW.article_id
                             ORDER BY r.id DESC LIMIT 1), 0)
            FROM json_each(coalesce(NEW.targets, '[]')) t WHERE NEW.stigmatising = 1;
        END;
        CREATE TRIGGER reviews_flag_targets AFTER INSERT ON reviews BEGIN
            UPDATE flag_targets SET rejected = (NEW.decision = 'reject') WHERE article_id = NEW.article_id;
        END;
        INSERT OR IGNORE INTO flag_targets (target, article_id, classification_id, day, rejected)
            SELECT t.value, c.article_id, c.id, substr(coalesce(a.published, a.first_seen_at), 1, 10),
                   coalesce((SELECT r.decision = 'reject' FROM reviews r WHERE r.article_id = c.article_id
                             ORDER BY r.id DESC LIMIT 1), 0)
            FROM classifications c JOIN articles a ON a.id = c.article_id, json_each(coalesce(c.targets, '[]')) t
            WHERE c.stigmatising = 1
              AND c.id = (SELECT max(c2.id) FROM classifications c2 WHERE c2.article_id = c.article_id);
        """
    )


@migration("campaigns and alerts: passage embeddings, campaign index, campaigns, alerts, deliveries")
def _m005(db: sqlite_utils.Database) -> None:
    # Watermarks start at the current passages/reviews: an existing database is not re-alerted about its
    # history; `monitor campaigns --rebuild` computes past campaigns (without alerting).
    _run_script(db,
        """
        ALTER TABLE passages ADD COLUMN embedding BLOB;
        CREATE TABLE monitor_state (name TEXT PRIMARY KEY, value TEXT NOT NULL);
        INSERT INTO monitor_state (name, value) SELECT 'campaigns.passage_id', coalesce(max(id), 0) FROM passages;
        INSERT INTO monitor_state (name, value) SELECT 'alerts.passage_id', coalesce(max(id), 0) FROM passages;
        INSERT INTO monitor_state (name, value) SELECT 'alerts.review_id', coalesce(max(id), 0) FROM reviews;
        CREATE TABLE campaign_items (
            passage_id INTEGER PRIMARY KEY REFERENCES passages(id), classification_id INTEGER NOT NULL,
            article_id TEXT NOT NULL, outlet_id TEXT, at TEXT NOT NULL, keys TEXT NOT NULL, signature BLOB
        );
        CREATE INDEX campaign_items_at ON campaign_items(at);
        CREATE TABLE campaign_keys (
            target TEXT NOT NULL, category TEXT NOT NULL, at TEXT NOT NULL, passage_id INTEGER NOT NULL,
            article_id TEXT NOT NULL, outlet_id TEXT, PRIMARY KEY (target, category, at, passage_id)
        ) WITHOUT ROWID;
        CREATE TABLE campaigns (
            id INTEGER PRIMARY KEY, key TEXT NOT NULL UNIQUE, target TEXT, category TEXT, via TEXT NOT NULL,
            status TEXT NOT NULL DEFAULT 'active', first_seen TEXT NOT NULL, last_seen TEXT NOT NULL,
            items INTEGER NOT NULL DEFAULT 0, articles INTEGER NOT NULL DEFAULT 0, n_outlets INTEGER NOT NULL DEFAULT 0,
            outlets TEXT, targets TEXT, categories TEXT, speakers TEXT, officials INTEGER NOT NULL DEFAULT 0,
            peak_articles INTEGER, baseline_per_window REAL, burst_z REAL, burst_score REAL,
            detected_at TEXT NOT NULL, updated_at TEXT NOT NULL
        );
        CREATE INDEX campaigns_target ON campaigns(target, category, last_seen);
        CREATE INDEX campaigns_updated ON campaigns(updated_at);
        CREATE TABLE campaign_members (
            campaign_id INTEGER NOT NULL REFERENCES campaigns(id), passage_id INTEGER NOT NULL REFERENCES passages(id),
            article_id TEXT NOT NULL, outlet_id TEXT, at TEXT NOT NULL,
            link TEXT NOT NULL CHECK (link IN ('target', 'copy', 'paraphrase')), similarity REAL, added_at TEXT NOT NULL,
            PRIMARY KEY (campaign_id, passage_id)
        );
        CREATE INDEX campaign_members_passage ON campaign_members(passage_id);
        CREATE TABLE alerts (
            id INTEGER PRIMARY KEY, key TEXT NOT NULL UNIQUE, rule TEXT NOT NULL, kind TEXT NOT NULL,
            created_at TEXT NOT NULL, title TEXT NOT NULL, summary TEXT NOT NULL, url TEXT,
            article_id TEXT, campaign_id INTEGER, target TEXT, payload TEXT NOT NULL
        );
        CREATE INDEX alerts_created ON alerts(created_at);
        CREATE TABLE deliveries (
            alert_id INTEGER NOT NULL REFERENCES alerts(id), channel TEXT NOT NULL,
            status TEXT NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'sent', 'failed')),
            attempts INTEGER NOT NULL DEFAULT 0, next_attempt_at TEXT NOT NULL, last_error TEXT, sent_at TEXT,
            updated_at TEXT NOT NULL, PRIMARY KEY (alert_id, channel)
        );
        CREATE INDEX deliveries_due ON deliveries(status, next_attempt_at);
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
    recorded = dict(db.execute("SELECT version, name FROM _migrations").fetchall())
    for version, name in sorted(recorded.items()):
        expected = MIGRATIONS[version - 1][0] if version <= len(MIGRATIONS) else None
        if expected != name:
            raise DatabaseError(
                f"database migration {version} is {name!r} but this version of the monitor expects "
                f"{expected!r}: the database was made by another (development or newer) version; "
                "use a matching version of the monitor or a fresh database")
    done = set(recorded)
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

# Level 3: half the CPU of level 6 for ~12 % more bytes (113 KB pages: 40 KB vs 35 KB). Compression
# runs once per capture and bounds crawl throughput (docs/benchmarks.md); disk is the cheaper resource.
GZIP_LEVEL = 3


def compress(body: bytes) -> bytes:
    """Deterministic gzip (mtime 0) of raw bytes for storage."""
    return gzip.compress(body, compresslevel=GZIP_LEVEL, mtime=0)


def capture_body(db: sqlite_utils.Database, capture_id: int) -> bytes:
    """The raw bytes of a capture, exactly as served."""
    row = db.execute("SELECT body_gz FROM captures WHERE id = ?", [capture_id]).fetchone()
    if row is None:
        raise KeyError(f"no capture {capture_id}")
    return gzip.decompress(row[0])


def _insert_capture(db: sqlite_utils.Database, aid: str, fetched: Fetched, run_id: int | None,
                    warc: WarcRef | None = None, body_gz: bytes | None = None) -> int:
    """Insert a capture, where its WARC copy is (written before this transaction) and its custody row."""
    cursor = db.execute(
        "INSERT INTO captures (article_id, url, final_url, status, headers, redirects, content_type, captured_at, "
        "sha256, size, body_gz, run_id, tool_version) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [aid, fetched.url, fetched.final_url, fetched.status, json.dumps(list(map(list, fetched.headers))),
         json.dumps(list(fetched.redirects)), fetched.header("Content-Type"), fetched.captured_at,
         fetched.sha256, len(fetched.body), body_gz if body_gz is not None else compress(fetched.body), run_id, TOOL],
    )
    cid = int(cursor.lastrowid)
    details: dict[str, Any] = {"url": fetched.url, "final_url": fetched.final_url, "status": fetched.status,
                               "size": len(fetched.body)}
    if warc is not None:
        db.execute("INSERT INTO warc_records (capture_id, warc_dir, warc_file, record_offset, record_length, "
                   "response_length, record_id, payload_digest) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                   [cid, warc.warc_dir, warc.warc_file, warc.offset, warc.length, warc.response_length,
                    warc.record_id, warc.payload_digest])
        details["warc"] = f"{warc.warc_file}@{warc.offset}"
    add_custody(db, "capture", article_id=aid, capture_id=cid, sha256=fetched.sha256, at=fetched.captured_at,
                details=details)
    return cid


def add_custody(db: sqlite_utils.Database, action: str, actor: str = TOOL, *, article_id: str | None = None,
                capture_id: int | None = None, ref_id: int | None = None, sha256: str | None = None,
                input_sha256: str | None = None, details: dict[str, Any] | None = None, at: str | None = None) -> int:
    """Append one row to the custody log (inside the caller's transaction); see docs/evidence.md."""
    cursor = db.execute(
        "INSERT INTO custody (at, action, actor, article_id, capture_id, ref_id, sha256, input_sha256, details) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [at or utc_now(), action, actor, article_id, capture_id, ref_id, sha256, input_sha256,
         json.dumps(details, sort_keys=True, ensure_ascii=False) if details else None])
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
               facts: PageFacts | None = None, warc: WarcRef | None = None,
               body_gz: bytes | None = None) -> tuple[int, bool]:
    """Store a fetched page in ONE transaction: capture (+ its WARC location), article (if extracted), entry done.

    A crash before the commit leaves nothing behind and the entry stays pending; after it,
    everything is there. A page that is an article already stored (``facts.same_as``) keeps its
    capture, attached to that article, and adds no article row. Returns ``(capture_id, article_stored)``.
    """
    facts = facts or PageFacts(section=entry.get("section") or "news", columnist=entry.get("feed_columnist") or "")
    aid = facts.same_as or entry["article_id"]
    now = utc_now()
    with db.conn:
        capture_id = _insert_capture(db, aid, fetched, run_id, warc, body_gz)
        stored = False
        if article is not None and not facts.same_as:
            text_sha = hashlib.sha256(article.text.encode("utf-8")).hexdigest()
            cursor = db.execute(
                "INSERT OR IGNORE INTO articles (id, url, canonical_url, outlet_id, feed_id, section, columnist, title, "
                "author, published, site_name, language, description, text, text_sha256, capture_id, first_seen_at, "
                "extracted_at, extractor, last_capture_id, content_fingerprint, story_id, duplicate_of) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [aid, entry["url"], canonical_url(article.canonical_url or fetched.final_url), entry["outlet_id"],
                 entry["feed_id"], facts.section, facts.columnist, article.title or entry.get("title") or "",
                 article.author or entry.get("author") or "", article.published or entry.get("published"),
                 article.site_name, article.language, article.description, article.text,
                 text_sha, capture_id, entry["first_seen_at"], now,
                 extractor, capture_id, facts.fingerprint or None, facts.story_id or aid, facts.duplicate_of],
            )
            stored = cursor.rowcount > 0
            if stored:
                add_custody(db, "extraction", article_id=aid, capture_id=capture_id, sha256=text_sha,
                            input_sha256=fetched.sha256, at=now, details={"extractor": extractor})
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
                 new_text: Article | None = None, diff: str = "", warc: WarcRef | None = None) -> int | None:
    """Record one re-check in ONE transaction; returns the new capture id for a changed page.

    ``changed``: a new capture and a new ``article_versions`` row with the diff (old captures
    and the original text stay); ``removed``: ``removed_at`` is set the first time the page is
    seen gone (and kept); ``restored``: the page answers again.
    """
    now = utc_now()
    capture_id = None
    with db.conn:
        if fetched is not None and outcome in ("changed", "restored") and new_text is not None:
            capture_id = _insert_capture(db, article["id"], fetched, run_id, warc)
            new_sha = hashlib.sha256(new_text.text.encode("utf-8")).hexdigest()
            if new_sha != article["text_sha256"]:
                add_custody(db, "extraction", article_id=article["id"], capture_id=capture_id, sha256=new_sha,
                            input_sha256=fetched.sha256, at=now,
                            details={"article_version": True, "previous_text_sha256": article["text_sha256"]})
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
        if outcome == "restored" or (outcome == "removed" and not article.get("removed_at")):
            add_custody(db, "removal" if outcome == "removed" else "restoration", article_id=article["id"],
                        capture_id=capture_id, at=now, details={"http_status": http_status, "message": message})
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
        add_custody(db, "classification", article_id=aid, ref_id=cid, input_sha256=text_sha256,
                    details={"model_id": result.model_id, "model_version": result.model_version,
                             "stigmatising": bool(result.stigmatising), "score": result.score,
                             "targets": list(result.targets)})
        for p in result.passages:
            ptop = max(p.categories, key=lambda k: p.categories[k]) if p.categories else None
            db.execute(
                'INSERT INTO passages (classification_id, article_id, start, "end", text, score, categories, '
                "top_category, voice, speaker, speaker_is_official, targets, embedding) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [cid, aid, p.start, p.end, p.text, p.score, json.dumps(p.categories, sort_keys=True), ptop,
                 p.voice, p.speaker, int(p.speaker_is_official), json.dumps(list(p.targets), ensure_ascii=False),
                 p.embedding or None],
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


_LATEST_PER_REVIEWER = """
    WITH multi AS (SELECT article_id FROM reviews GROUP BY article_id HAVING count(DISTINCT reviewer) >= 2),
    latest AS (
        SELECT r.article_id, r.reviewer, r.decision, r.created_at FROM reviews r JOIN multi m ON m.article_id = r.article_id
        WHERE r.id = (SELECT max(r2.id) FROM reviews r2 WHERE r2.article_id = r.article_id AND r2.reviewer = r.reviewer)
    )
"""


def review_disagreements(db: sqlite_utils.Database, limit: int = 200) -> list[dict[str, Any]]:
    """Articles where reviewers' latest decisions differ (confirm/relabel vs reject), with who said what."""
    return list(db.query(
        _LATEST_PER_REVIEWER + """
        SELECT l.article_id, a.title, group_concat(l.reviewer || ': ' || l.decision, '; ') AS decisions,
               count(*) AS reviewers
        FROM latest l JOIN articles a ON a.id = l.article_id
        GROUP BY l.article_id HAVING min(l.decision = 'reject') != max(l.decision = 'reject')
        ORDER BY max(l.created_at) DESC LIMIT ?
        """, [int(limit)]))


def review_agreement(db: sqlite_utils.Database) -> dict[str, int]:
    """How many articles two or more reviewers decided, and on how many they disagree."""
    row = db.execute(
        _LATEST_PER_REVIEWER + """
        , per AS (SELECT article_id, min(decision = 'reject') AS lo, max(decision = 'reject') AS hi FROM latest
                  GROUP BY article_id)
        SELECT count(*), coalesce(sum(lo != hi), 0) FROM per
        """).fetchone()
    return {"double_reviewed": row[0], "disagreements": row[1]}


def not_rejected(article_column: str) -> str:
    """SQL condition: the article's latest review is not a rejection (reviewers can take a flag back)."""
    return (f"coalesce((SELECT r.decision FROM reviews r WHERE r.article_id = {article_column} "
            "ORDER BY r.id DESC LIMIT 1), '') != 'reject'")


# Flags that count for analysts: the latest verdict is stigmatising and no reviewer rejected it.
# Also the FROM/WHERE of the analysts' canned queries (monitor/serve.py): one definition.
COUNTED_FLAGS = f"""
    FROM classifications c JOIN articles a ON a.id = c.article_id LEFT JOIN outlets o ON o.id = a.outlet_id
    WHERE c.stigmatising = 1
      AND c.id = (SELECT max(c2.id) FROM classifications c2 WHERE c2.article_id = c.article_id)
      AND {not_rejected("c.article_id")}
"""
_DAY = "substr(coalesce(a.published, a.first_seen_at), 1, 10)"


def weekly_flags_by_category(db: sqlite_utils.Database, weeks: int = 26) -> list[dict[str, Any]]:
    """Counted flags per ISO-ish week (Monday start) and top category over the last ``weeks`` weeks."""
    return list(db.query(
        f"SELECT date({_DAY}, 'weekday 0', '-6 days') AS week, c.top_category AS category, count(*) AS n "
        f"{COUNTED_FLAGS} AND {_DAY} >= date('now', ?) GROUP BY week, category ORDER BY week, category",
        [f"-{int(weeks) * 7} days"]))


def top_outlets(db: sqlite_utils.Database, limit: int = 10) -> list[dict[str, Any]]:
    """Outlets with the most counted flags."""
    return list(db.query(f"SELECT coalesce(o.name, a.outlet_id) AS label, count(*) AS n {COUNTED_FLAGS} "
                         "GROUP BY label ORDER BY n DESC, label LIMIT ?", [int(limit)]))


def top_targets(db: sqlite_utils.Database, limit: int = 10) -> list[dict[str, Any]]:
    """Targets named in the most counted flags (from flag_targets: latest verdicts, not rejected)."""
    return list(db.query("SELECT target AS label, count(*) AS n FROM flag_targets WHERE rejected = 0 "
                         "GROUP BY target ORDER BY n DESC, target LIMIT ?", [int(limit)]))


def target_timeline(db: sqlite_utils.Database, target: str) -> list[dict[str, Any]]:
    """Counted flags naming ``target`` per week: one range of the flag_targets_timeline index."""
    return list(db.query(
        "SELECT date(day, 'weekday 0', '-6 days') AS week, count(*) AS n FROM flag_targets "
        "WHERE target = ? AND rejected = 0 GROUP BY week ORDER BY week", [target]))


def counts(db: sqlite_utils.Database) -> dict[str, int]:
    """Row counts of the main tables (for status and tests)."""
    names = ["outlets", "feeds", "entries", "captures", "articles", "classifications", "passages", "failures", "runs", "reviews"]
    return {n: db.execute(f"SELECT count(*) FROM {n}").fetchone()[0] for n in names}


# --- evidence: WARC locations, custody, trusted timestamps, dossier selections -----------------
# Lists of ids are passed as one JSON array parameter (``IN (SELECT value FROM json_each(?))``).

def database_file(db: sqlite_utils.Database) -> Path | None:
    """The file behind the main database (None for an in-memory one)."""
    row = db.execute("PRAGMA database_list").fetchone()
    return Path(row[2]) if row and row[2] else None


def captures_to_timestamp(db: sqlite_utils.Database, limit: int = 500) -> list[dict[str, Any]]:
    """Captures with no trusted timestamp yet, oldest first."""
    return list(db.query("SELECT c.id, c.article_id, c.sha256 FROM captures c WHERE NOT EXISTS "
                         "(SELECT 1 FROM timestamps t WHERE t.capture_id = c.id) ORDER BY c.id LIMIT ?", [int(limit)]))


def record_timestamp(db: sqlite_utils.Database, capture: dict[str, Any], tsa_url: str, requested_at: str,
                     gen_time: str | None, token: bytes, ca_pem: str | None) -> int:
    """Store an RFC 3161 token for a capture's SHA-256, with its custody row, in one transaction."""
    with db.conn:
        tid = int(db.execute(
            "INSERT INTO timestamps (capture_id, sha256, tsa_url, requested_at, gen_time, token, ca_pem) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            [capture["id"], capture["sha256"], tsa_url, requested_at, gen_time, token, ca_pem]).lastrowid)
        add_custody(db, "timestamp", article_id=capture["article_id"], capture_id=capture["id"], ref_id=tid,
                    sha256=capture["sha256"], input_sha256=hashlib.sha256(token).hexdigest(),
                    details={"tsa_url": tsa_url, "gen_time": gen_time})
    return tid


def evidence_candidates(db: sqlite_utils.Database) -> list[dict[str, Any]]:
    """Articles flagged by their latest verdict or reviewed, with outlet, latest verdict and latest review."""
    return list(db.query(
        """
        SELECT a.id AS article_id, a.url, a.canonical_url, a.title, a.author, a.published, a.first_seen_at,
               a.section, a.columnist, a.language, a.text_sha256, a.capture_id, a.edits, a.removed_at, a.story_id,
               a.duplicate_of, a.outlet_id, o.name AS outlet, o.state AS outlet_state, o.country AS outlet_country,
               o.scope AS outlet_scope,
               c.id AS classification_id, c.model_id, c.model_version, c.classified_at, c.stigmatising, c.score,
               c.categories, c.top_category, c.voice, c.speaker, c.speaker_is_official, c.targets,
               r.id AS review_id, r.reviewer, r.decision, r.created_at AS reviewed_at, r.categories AS review_categories,
               r.voice AS review_voice, r.speaker AS review_speaker, r.targets AS review_targets, r.note AS review_note
        FROM articles a
        LEFT JOIN latest_classifications c ON c.article_id = a.id
        LEFT JOIN latest_reviews r ON r.article_id = a.id
        LEFT JOIN outlets o ON o.id = a.outlet_id
        WHERE a.id IN (SELECT article_id FROM classifications WHERE stigmatising = 1 UNION SELECT article_id FROM reviews)
          AND (c.stigmatising = 1 OR r.id IS NOT NULL)
        ORDER BY coalesce(a.published, a.first_seen_at), a.id
        """))


def evidence_passages(db: sqlite_utils.Database, classification_ids: list[int]) -> list[dict[str, Any]]:
    """Flagged passages of these classifications, in text order."""
    return list(db.query(
        'SELECT classification_id, article_id, start, "end", text, score, categories, top_category, voice, speaker, '
        "speaker_is_official, targets FROM passages WHERE classification_id IN (SELECT value FROM json_each(?)) "
        "ORDER BY classification_id, start, id", [json.dumps(classification_ids)]))


def evidence_captures(db: sqlite_utils.Database, article_ids: list[str]) -> list[dict[str, Any]]:
    """Every capture of these articles (without bodies) with its WARC location, oldest first."""
    return list(db.query(
        "SELECT c.id, c.article_id, c.url, c.final_url, c.status, c.headers, c.redirects, c.content_type, c.captured_at, "
        "c.sha256, c.size, c.tool_version, w.warc_dir, w.warc_file, w.record_offset, w.record_length, "
        "w.response_length, w.record_id, w.payload_digest "
        "FROM captures c LEFT JOIN warc_records w ON w.capture_id = c.id "
        "WHERE c.article_id IN (SELECT value FROM json_each(?)) ORDER BY c.article_id, c.captured_at, c.id",
        [json.dumps(article_ids)]))


def evidence_history(db: sqlite_utils.Database, article_ids: list[str]) -> list[dict[str, Any]]:
    """Edits (``article_versions``) and removals/restorations (``article_checks``) of these articles, in order."""
    return list(db.query(
        "SELECT article_id, 'edited' AS event, detected_at AS at, capture_id, text_sha256, previous_text_sha256, "
        "NULL AS http_status FROM article_versions WHERE article_id IN (SELECT value FROM json_each(?1)) "
        "UNION ALL SELECT article_id, outcome, checked_at, capture_id, NULL, NULL, http_status FROM article_checks "
        "WHERE outcome IN ('removed', 'restored') AND article_id IN (SELECT value FROM json_each(?1)) "
        "ORDER BY article_id, at, event", [json.dumps(article_ids)]))


def evidence_timestamps(db: sqlite_utils.Database, capture_ids: list[int]) -> list[dict[str, Any]]:
    """RFC 3161 tokens of these captures."""
    return list(db.query("SELECT id, capture_id, sha256, tsa_url, requested_at, gen_time, token, ca_pem FROM timestamps "
                         "WHERE capture_id IN (SELECT value FROM json_each(?)) ORDER BY capture_id, id",
                         [json.dumps(capture_ids)]))


def evidence_custody(db: sqlite_utils.Database, article_ids: list[str], capture_ids: list[int]) -> list[dict[str, Any]]:
    """Custody rows of these articles and captures (exports, which name no article, are left out)."""
    return list(db.query(
        "SELECT id, at, action, actor, article_id, capture_id, ref_id, sha256, input_sha256, details FROM custody "
        "WHERE article_id IN (SELECT value FROM json_each(?)) OR capture_id IN (SELECT value FROM json_each(?)) "
        "ORDER BY id", [json.dumps(article_ids), json.dumps(capture_ids)]))


def record_export(db: sqlite_utils.Database, actor: str, zip_sha256: str, details: dict[str, Any]) -> int:
    """Log a dossier export (who, when, the zip's SHA-256, the selection) in the custody log."""
    with db.conn:
        return add_custody(db, "export", actor, sha256=zip_sha256, details=details)


# --- campaigns and alerts (monitor/campaigns.py, monitor/alerts/) --------------------------------
# Campaign and alert functions write inside the caller's transaction (``atomic``), so one
# incremental update, watermark included, commits or rolls back as a whole.

@contextmanager
def atomic(db: sqlite_utils.Database) -> Iterator[None]:
    """One transaction around several of the functions below (commit on success, roll back on error)."""
    with db.conn:
        yield


def state_get(db: sqlite_utils.Database, name: str, default: str = "0") -> str:
    """A named watermark or setting from ``monitor_state``."""
    row = db.execute("SELECT value FROM monitor_state WHERE name = ?", [name]).fetchone()
    return row[0] if row else default


def state_set(db: sqlite_utils.Database, name: str, value: str | int) -> None:
    """Set a named watermark (inside the caller's transaction)."""
    db.execute("INSERT INTO monitor_state (name, value) VALUES (?, ?) "
               "ON CONFLICT(name) DO UPDATE SET value = excluded.value", [name, str(value)])


def flagged_passages_after(db: sqlite_utils.Database, after_id: int, limit: int | None = None) -> list[dict[str, Any]]:
    """Flagged passages with id > ``after_id`` of each article's latest verdict, unless a reviewer rejected it.

    Each row carries what campaign detection and alert rules need: the article's outlet, section,
    dates and title, the classification's targets and score, and the passage's embedding.
    """
    return list(db.query(
        f"""
        SELECT p.id AS passage_id, p.classification_id, p.article_id, p.text, p.score, p.categories, p.top_category,
               p.voice, p.speaker, p.speaker_is_official, p.targets, p.embedding,
               c.targets AS article_targets, c.top_category AS article_category, c.score AS article_score,
               a.outlet_id, coalesce(o.name, a.outlet_id) AS outlet, a.section, a.published, a.first_seen_at,
               a.title, a.url, a.columnist
        FROM passages p
        JOIN classifications c ON c.id = p.classification_id
        JOIN articles a ON a.id = p.article_id
        LEFT JOIN outlets o ON o.id = a.outlet_id
        WHERE p.id > ?
          AND c.id = (SELECT max(c2.id) FROM classifications c2 WHERE c2.article_id = p.article_id)
          AND {not_rejected("p.article_id")}
        ORDER BY p.id {f'LIMIT {int(limit)}' if limit else ''}
        """, [int(after_id)]))


def max_passage_id(db: sqlite_utils.Database) -> int:
    """The highest passage id (0 when there is none)."""
    return int(db.execute("SELECT coalesce(max(id), 0) FROM passages").fetchone()[0])


def add_campaign_items(db: sqlite_utils.Database, items: list[dict[str, Any]]) -> None:
    """Index flagged passages for campaign detection: one ``campaign_items`` row each, one ``campaign_keys`` row per key."""
    db.conn.executemany(
        "INSERT OR REPLACE INTO campaign_items (passage_id, classification_id, article_id, outlet_id, at, keys, signature) "
        "VALUES (?, ?, ?, ?, ?, ?, ?)",
        [(i["passage_id"], i["classification_id"], i["article_id"], i["outlet_id"], i["at"],
          json.dumps(i["keys"], ensure_ascii=False), i["signature"]) for i in items])
    db.conn.executemany(
        "INSERT OR IGNORE INTO campaign_keys (target, category, at, passage_id, article_id, outlet_id) "
        "VALUES (?, ?, ?, ?, ?, ?)",
        [(t, c, i["at"], i["passage_id"], i["article_id"], i["outlet_id"]) for i in items for t, c in i["keys"]])


def campaign_items_between(db: sqlite_utils.Database, lo: str, hi: str) -> list[tuple[Any, ...]]:
    """Indexed passages dated in [lo, hi], not rejected by a reviewer: (passage_id, article_id, outlet_id, at,
    keys, signature, embedding)."""
    return db.execute(
        "SELECT i.passage_id, i.article_id, i.outlet_id, i.at, i.keys, i.signature, p.embedding "
        "FROM campaign_items i JOIN passages p ON p.id = i.passage_id WHERE i.at BETWEEN ? AND ? AND "
        + not_rejected("i.article_id") + " ORDER BY i.passage_id", [lo, hi]).fetchall()


def campaign_key_items(db: sqlite_utils.Database, target: str, category: str, lo: str, hi: str,
                       max_passage_id: int) -> list[dict[str, Any]]:
    """Indexed passages naming ``target`` in ``category`` dated in [lo, hi], up to a passage id, by date
    (not those of articles a reviewer rejected)."""
    return list(db.query(
        "SELECT passage_id, article_id, outlet_id, at FROM campaign_keys k WHERE target = ? AND category = ? "
        "AND at BETWEEN ? AND ? AND passage_id <= ? AND " + not_rejected("k.article_id") + " ORDER BY at, passage_id",
        [target, category, lo, hi, int(max_passage_id)]))


def campaign_for_key(db: sqlite_utils.Database, target: str, category: str, lo: str, hi: str,
                     started_after: str = "") -> int | None:
    """The campaign on (target, category) whose span comes within [lo, hi] and that started at or after
    ``started_after`` (most outlets first)."""
    row = db.execute("SELECT id FROM campaigns WHERE target = ? AND category = ? AND last_seen >= ? AND first_seen <= ? "
                     "AND first_seen >= ? ORDER BY n_outlets DESC, id LIMIT 1",
                     [target, category, lo, hi, started_after]).fetchone()
    return int(row[0]) if row else None


def campaigns_of_passages(db: sqlite_utils.Database, passage_ids: list[int], lo: str,
                          started_after: str = "") -> list[int]:
    """Campaigns (last seen at or after ``lo``, started at or after ``started_after``) holding any of these
    passages, oldest first."""
    if not passage_ids:
        return []
    return [int(r[0]) for r in db.execute(
        "SELECT DISTINCT c.id FROM campaign_members m JOIN campaigns c ON c.id = m.campaign_id "
        "WHERE m.passage_id IN (SELECT value FROM json_each(?)) AND c.last_seen >= ? AND c.first_seen >= ? ORDER BY c.id",
        [json.dumps(passage_ids), lo, started_after])]


def campaigns_of_articles(db: sqlite_utils.Database, article_ids: list[str]) -> list[int]:
    """Campaigns with a member passage from any of these articles."""
    if not article_ids:
        return []
    return [int(r[0]) for r in db.execute(
        "SELECT DISTINCT campaign_id FROM campaign_members WHERE article_id IN (SELECT value FROM json_each(?)) "
        "ORDER BY campaign_id", [json.dumps(article_ids)])]


def reviewed_articles_after(db: sqlite_utils.Database, after_id: int) -> tuple[int, list[str]]:
    """The highest review id and the articles reviewed after review ``after_id``."""
    rows = db.execute("SELECT id, article_id FROM reviews WHERE id > ? ORDER BY id", [after_id]).fetchall()
    return (int(rows[-1][0]) if rows else after_id), sorted({r[1] for r in rows})


def campaign_by_key(db: sqlite_utils.Database, key: str) -> int | None:
    """The id of the campaign with this key."""
    row = db.execute("SELECT id FROM campaigns WHERE key = ?", [key]).fetchone()
    return int(row[0]) if row else None


def campaign_member_ids(db: sqlite_utils.Database, campaign_id: int) -> set[int]:
    """Passage ids of a campaign's members."""
    return {int(r[0]) for r in db.execute("SELECT passage_id FROM campaign_members WHERE campaign_id = ?", [campaign_id])}


def create_campaign(db: sqlite_utils.Database, key: str, target: str | None, category: str | None, via: str,
                    first_seen: str, last_seen: str, now: str) -> int:
    """Insert a campaign (its members and figures come next, in the same transaction)."""
    return int(db.execute(
        "INSERT INTO campaigns (key, target, category, via, first_seen, last_seen, detected_at, updated_at) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?)", [key, target, category, via, first_seen, last_seen, now, now]).lastrowid)


def add_campaign_members(db: sqlite_utils.Database, campaign_id: int, members: list[dict[str, Any]], now: str) -> int:
    """Add passages to a campaign (already members are kept as they were); returns how many were new."""
    before = db.conn.total_changes
    db.conn.executemany(
        "INSERT OR IGNORE INTO campaign_members (campaign_id, passage_id, article_id, outlet_id, at, link, similarity, "
        "added_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        [(campaign_id, m["passage_id"], m["article_id"], m["outlet_id"], m["at"], m["link"], m.get("similarity"), now)
         for m in members])
    return db.conn.total_changes - before


def campaign_member_rows(db: sqlite_utils.Database, campaign_id: int) -> list[dict[str, Any]]:
    """A campaign's members with their passage, article and outlet, by date (not those reviewers rejected)."""
    return list(db.query(
        """
        SELECT m.passage_id, m.article_id, m.outlet_id, coalesce(o.name, m.outlet_id) AS outlet, m.at, m.link,
               m.similarity, p.text, p.score, p.categories, p.top_category, p.voice, p.speaker, p.speaker_is_official,
               p.targets, a.title, a.url, a.section, a.columnist
        FROM campaign_members m JOIN passages p ON p.id = m.passage_id JOIN articles a ON a.id = m.article_id
        LEFT JOIN outlets o ON o.id = m.outlet_id
        WHERE m.campaign_id = ? AND """ + not_rejected("m.article_id") + """ ORDER BY m.at, m.passage_id
        """, [campaign_id]))


def campaign_member_facts(db: sqlite_utils.Database, campaign_id: int) -> list[tuple[Any, ...]]:
    """What a campaign's figures are computed from, per member (no text): (article_id, at, outlet, targets,
    categories, top_category, speaker, speaker_is_official). Members whose article a reviewer rejected
    do not count (their rows stay: a later confirmation counts them again)."""
    return db.execute(
        "SELECT m.article_id, m.at, coalesce(o.name, m.outlet_id), p.targets, p.categories, p.top_category, p.speaker, "
        "p.speaker_is_official FROM campaign_members m JOIN passages p ON p.id = m.passage_id "
        "LEFT JOIN outlets o ON o.id = m.outlet_id WHERE m.campaign_id = ? AND " + not_rejected("m.article_id"),
        [campaign_id]).fetchall()


def update_campaign(db: sqlite_utils.Database, campaign_id: int, fields: dict[str, Any]) -> None:
    """Write a campaign's recomputed figures."""
    allowed = {"first_seen", "last_seen", "items", "articles", "n_outlets", "outlets", "targets", "categories",
               "speakers", "officials", "peak_articles", "baseline_per_window", "burst_z", "burst_score", "updated_at",
               "status", "target", "category"}
    values = {k: v for k, v in fields.items() if k in allowed}
    sets = ", ".join(f"{k} = ?" for k in values)
    db.execute(f"UPDATE campaigns SET {sets} WHERE id = ?", [*values.values(), campaign_id])


def set_campaign_status(db: sqlite_utils.Database, active_since: str) -> None:
    """Campaigns last seen at or after ``active_since`` are 'active', older ones 'ended'; 'dismissed' ones
    (reviewers rejected enough of them) stay so."""
    db.execute("UPDATE campaigns SET status = CASE WHEN last_seen >= ? THEN 'active' ELSE 'ended' END "
               "WHERE status != 'dismissed' AND status != CASE WHEN last_seen >= ? THEN 'active' ELSE 'ended' END",
               [active_since, active_since])


def target_flag_count(db: sqlite_utils.Database, target: str, day_from: str, day_before: str) -> int:
    """Flagged articles naming ``target`` dated on days in [day_from, day_before) (flag_targets index)."""
    return int(db.execute("SELECT count(DISTINCT article_id) FROM flag_targets WHERE target = ? AND day >= ? AND day < ?",
                          [target, day_from, day_before]).fetchone()[0])


def reset_campaigns(db: sqlite_utils.Database) -> None:
    """Forget every campaign and the campaign index (``monitor campaigns --rebuild``); alerts stay."""
    for table in ("campaign_members", "campaigns", "campaign_keys", "campaign_items"):
        db.execute(f"DELETE FROM {table}")
    state_set(db, "campaigns.passage_id", 0)


def list_campaigns(db: sqlite_utils.Database, include_ended: bool = False, limit: int = 50) -> list[dict[str, Any]]:
    """Campaigns, most recent activity first (active ones only unless ``include_ended``)."""
    where = "" if include_ended else "WHERE status = 'active'"
    return list(db.query(f"SELECT * FROM campaigns {where} ORDER BY last_seen DESC, id DESC LIMIT ?", [int(limit)]))


def campaign_row(db: sqlite_utils.Database, campaign_id: int) -> dict[str, Any] | None:
    """One campaign."""
    rows = list(db.query("SELECT * FROM campaigns WHERE id = ?", [campaign_id]))
    return rows[0] if rows else None


def campaigns_updated_since(db: sqlite_utils.Database, since: str) -> list[dict[str, Any]]:
    """Campaigns created or changed at or after ``since`` (for alert rules)."""
    return list(db.query("SELECT * FROM campaigns WHERE updated_at >= ? ORDER BY id", [since]))


def reviews_after(db: sqlite_utils.Database, after_id: int) -> list[dict[str, Any]]:
    """Review decisions with id > ``after_id``, with the article and its latest verdict's targets and score."""
    return list(db.query(
        """
        SELECT r.id AS review_id, r.article_id, r.reviewer, r.decision, r.targets AS review_targets,
               r.categories AS review_categories, r.created_at, a.title, a.url, a.section, a.published,
               coalesce(o.name, a.outlet_id) AS outlet, c.targets, c.top_category, c.score
        FROM reviews r JOIN articles a ON a.id = r.article_id LEFT JOIN outlets o ON o.id = a.outlet_id
        LEFT JOIN latest_classifications c ON c.article_id = r.article_id
        WHERE r.id > ? ORDER BY r.id
        """, [int(after_id)]))


def max_review_id(db: sqlite_utils.Database) -> int:
    """The highest review id (0 when there is none)."""
    return int(db.execute("SELECT coalesce(max(id), 0) FROM reviews").fetchone()[0])


def add_alert(db: sqlite_utils.Database, alert: dict[str, Any], channels: list[str], now: str) -> int | None:
    """Insert an alert once (its ``key`` is unique) with one pending delivery per channel; None if it exists."""
    cursor = db.execute(
        "INSERT OR IGNORE INTO alerts (key, rule, kind, created_at, title, summary, url, article_id, campaign_id, target, "
        "payload) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [alert["key"], alert["rule"], alert["kind"], now, alert["title"], alert["summary"], alert.get("url"),
         alert.get("article_id"), alert.get("campaign_id"), alert.get("target"),
         json.dumps(alert.get("payload", {}), ensure_ascii=False, sort_keys=True)])
    if cursor.rowcount == 0:
        return None
    alert_id = int(cursor.lastrowid)
    db.conn.executemany("INSERT OR IGNORE INTO deliveries (alert_id, channel, next_attempt_at, updated_at) "
                        "VALUES (?, ?, ?, ?)", [(alert_id, ch, now, now) for ch in channels])
    return alert_id


def alert_exists(db: sqlite_utils.Database, key: str) -> bool:
    """Whether an alert with this key was ever created."""
    return db.execute("SELECT 1 FROM alerts WHERE key = ?", [key]).fetchone() is not None


def list_alerts(db: sqlite_utils.Database, limit: int = 50, since: str | None = None,
                kinds: tuple[str, ...] | None = None) -> list[dict[str, Any]]:
    """Alerts, newest first, with each delivery's channel and status (``deliveries``: "channel:status, ...")."""
    clauses, params = [], []
    if since:
        clauses.append("a.created_at >= ?")
        params.append(since)
    if kinds:
        clauses.append("a.kind IN (SELECT value FROM json_each(?))")
        params.append(json.dumps(list(kinds)))
    where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
    return list(db.query(
        f"SELECT a.*, (SELECT group_concat(d.channel || ':' || d.status, ', ') FROM deliveries d WHERE d.alert_id = a.id) "
        f"AS deliveries FROM alerts a {where} ORDER BY a.created_at DESC, a.id DESC LIMIT ?", [*params, int(limit)]))


def due_deliveries(db: sqlite_utils.Database, now: str) -> list[dict[str, Any]]:
    """Pending deliveries whose next attempt is due, oldest alert first, with their alert."""
    return list(db.query(
        "SELECT d.alert_id, d.channel, d.attempts, a.key, a.rule, a.kind, a.created_at, a.title, a.summary, a.url, "
        "a.article_id, a.campaign_id, a.target, a.payload FROM deliveries d JOIN alerts a ON a.id = d.alert_id "
        "WHERE d.status = 'pending' AND d.next_attempt_at <= ? ORDER BY d.alert_id, d.channel", [now]))


def record_delivery(db: sqlite_utils.Database, alert_id: int, channel: str, status: str, now: str,
                    error: str | None = None, next_attempt_at: str | None = None) -> None:
    """One delivery attempt's outcome: 'sent', 'failed' (given up) or 'pending' (retry at ``next_attempt_at``)."""
    with db.conn:
        db.execute(
            "UPDATE deliveries SET status = ?, attempts = attempts + 1, last_error = ?, updated_at = ?, "
            "sent_at = CASE WHEN ? = 'sent' THEN ? ELSE sent_at END, next_attempt_at = coalesce(?, next_attempt_at) "
            "WHERE alert_id = ? AND channel = ?",
            [status, (error or None) and error[:2000], now, status, now, next_attempt_at, alert_id, channel])


def delivery_rows(db: sqlite_utils.Database, alert_id: int | None = None) -> list[dict[str, Any]]:
    """Deliveries (of one alert, or all), in order."""
    where = "WHERE alert_id = ?" if alert_id is not None else ""
    return list(db.query(f"SELECT * FROM deliveries {where} ORDER BY alert_id, channel",
                         [alert_id] if alert_id is not None else []))


def digest_counts(db: sqlite_utils.Database, since: str) -> dict[str, Any]:
    """Flags (latest verdicts) of articles first seen since ``since``: total, per target and per outlet."""
    base = f"{COUNTED_FLAGS} AND a.first_seen_at >= ?"
    total = db.execute(f"SELECT count(*) {base}", [since]).fetchone()[0]
    targets = list(db.query(
        f"SELECT t.value AS label, count(*) AS n {base.replace('WHERE c.stigmatising', ', json_each(c.targets) t WHERE c.stigmatising')} "
        "GROUP BY label ORDER BY n DESC, label LIMIT 10", [since]))
    outlets = list(db.query(
        f"SELECT coalesce(o.name, a.outlet_id) AS label, count(*) AS n "
        f"{base} "
        "GROUP BY label ORDER BY n DESC, label LIMIT 10", [since]))
    return {"flagged": total, "targets": targets, "outlets": outlets}
