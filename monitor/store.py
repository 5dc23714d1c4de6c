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


@migration("initial schema")
def _m001(db: sqlite_utils.Database) -> None:
    db.executescript(
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
        }
        if fetched.status != 304:
            updates.update({"etag": fetched.header("ETag") or None,
                            "last_modified": fetched.header("Last-Modified") or None,
                            "last_entries": n_entries})
        db["feeds"].update(feed_id, updates)


def record_feed_failure(db: sqlite_utils.Database, run_id: int, feed_id: str, url: str, error_type: str,
                        message: str, status: int | None = None) -> None:
    """Count a failed poll against the feed and append it to ``failures``."""
    now = utc_now()
    with db.conn:
        db.execute(
            "UPDATE feeds SET last_polled_at = ?, last_error = ?, last_error_at = ?, last_status = ?, "
            "consecutive_failures = consecutive_failures + 1 WHERE id = ?",
            [now, message[:2000], now, status, feed_id],
        )
    record_failure(db, run_id, "feed", error_type, message, url=url, feed_id=feed_id)


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


def store_page(db: sqlite_utils.Database, run_id: int, entry: dict[str, Any], fetched: Fetched,
               article: Article | None, extract_error: str | None, extractor: str) -> tuple[int, bool]:
    """Store a fetched page in ONE transaction: capture, article (if extracted), entry done.

    A crash before the commit leaves nothing behind and the entry stays pending; after it,
    everything is there. Returns ``(capture_id, article_stored)``.
    """
    aid = entry["article_id"]
    now = utc_now()
    with db.conn:
        capture_id = _insert_capture(db, aid, fetched, run_id)
        stored = False
        if article is not None:
            db["articles"].insert({
                "id": aid, "url": entry["url"], "canonical_url": canonical_url(article.canonical_url or fetched.final_url),
                "outlet_id": entry["outlet_id"], "feed_id": entry["feed_id"], "section": entry["section"],
                "columnist": entry.get("feed_columnist") or "",
                "title": article.title or entry.get("title") or "", "author": article.author or entry.get("author") or "",
                "published": article.published or entry.get("published"), "site_name": article.site_name,
                "language": article.language, "description": article.description, "text": article.text,
                "text_sha256": hashlib.sha256(article.text.encode("utf-8")).hexdigest(),
                "capture_id": capture_id, "first_seen_at": entry["first_seen_at"], "extracted_at": now,
                "extractor": extractor,
            }, pk="id", ignore=True)
            stored = True
        db.execute(
            "UPDATE entries SET status = ?, done_at = ?, attempts = attempts + 1, last_error = ? WHERE url = ?",
            ["stored" if stored else "unextracted", now, extract_error, entry["url"]],
        )
        if extract_error:
            db["failures"].insert({
                "run_id": run_id, "stage": "extract", "feed_id": entry["feed_id"], "url": entry["url"],
                "error_type": "extract", "message": extract_error[:2000], "occurred_at": now,
            })
    return capture_id, stored


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


def counts(db: sqlite_utils.Database) -> dict[str, int]:
    """Row counts of the main tables (for status and tests)."""
    names = ["outlets", "feeds", "entries", "captures", "articles", "classifications", "passages", "failures", "runs", "reviews"]
    return {n: db.execute(f"SELECT count(*) FROM {n}").fetchone()[0] for n in names}
