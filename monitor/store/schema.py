"""Schema migrations and opening the database (the package docstring says what the store holds)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import sqlite_utils

from .. import __version__
from ..errors import DatabaseError
from ..fetch import utc_now

__all__ = ["APPEND_ONLY", "LATEST_CLASSIFICATIONS", "MIGRATIONS", "TOOL", "apply_migrations", "connect", "migration", "schema_version"]

LOGGER = logging.getLogger(__name__)
TOOL = f"smear-monitor/{__version__}"
MIGRATIONS: list[tuple[str, Callable[[sqlite_utils.Database], None]]] = []


def migration(name: str, rebuilds_tables: tuple[str, ...] = ()
              ) -> Callable[[Callable[[sqlite_utils.Database], None]], Callable[[sqlite_utils.Database], None]]:
    """Register a schema migration; migrations run once each, in order, in a transaction.

    ``rebuilds_tables``: the tables the migration replaces (SQLite cannot drop a constraint in
    place). It runs with foreign keys off, as SQLite's documented 12-step procedure requires, and
    ``PRAGMA foreign_key_check`` must find no broken reference from or to them before it commits.
    """

    def register(fn: Callable[[sqlite_utils.Database], None]) -> Callable[[sqlite_utils.Database], None]:
        fn.rebuilds_tables = rebuilds_tables  # type: ignore[attr-defined]
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
        rebuild = getattr(fn, "rebuilds_tables", False)
        if rebuild:
            db.execute("PRAGMA foreign_keys = OFF")  # a no-op inside a transaction: set before it starts
        try:
            with db.conn:
                db.execute("SAVEPOINT migration")
                try:
                    fn(db)
                    broken = [r for r in db.execute("PRAGMA foreign_key_check").fetchall()
                              if r[0] in rebuild or r[2] in rebuild] if rebuild else []
                    if broken:
                        raise DatabaseError(f"migration {version} ({name}) would break {len(broken)} foreign key "
                                            f"reference(s), e.g. {broken[0][0]} row {broken[0][1]} -> {broken[0][2]}; "
                                            "not applied")
                    db.execute("INSERT INTO _migrations VALUES (?, ?, ?)", [version, name, utc_now()])
                    db.execute("RELEASE migration")
                except Exception:
                    db.execute("ROLLBACK TO migration")
                    raise
        finally:
            if rebuild:
                db.execute("PRAGMA foreign_keys = ON")
        LOGGER.info("applied migration %s: %s", version, name)
        applied.append(name)
    return applied


def schema_version(db: sqlite_utils.Database) -> int:
    """Highest applied migration number."""
    return db.execute("SELECT coalesce(max(version), 0) FROM _migrations").fetchone()[0]


# The article's verdict: among the verdicts of the newest model that classified the article, the
# most damning version's (stigmatising first, then score). An outlet that edits a smear in and
# out again leaves the article flagged, with the flagged version's passages; every verdict stays.
LATEST_CLASSIFICATIONS = """
CREATE VIEW latest_classifications AS
    SELECT c.* FROM classifications c
    WHERE c.id = (
        SELECT c2.id FROM classifications c2
        WHERE c2.article_id = c.article_id
          AND (c2.model_id, c2.model_version) = (SELECT c3.model_id, c3.model_version FROM classifications c3
                                                 WHERE c3.article_id = c.article_id ORDER BY c3.id DESC LIMIT 1)
        ORDER BY c2.stigmatising DESC, c2.score DESC, c2.id DESC LIMIT 1)
"""


@migration("article versions are classified: classifications.version_id, the article's verdict over its versions",
           rebuilds_tables=("classifications",))
def _m006(db: sqlite_utils.Database) -> None:
    # classifications was UNIQUE (article_id, model_id, model_version): one verdict per article and
    # model. Every version of the text (article_versions) now gets its own, so the table is rebuilt
    # with version_id (NULL: the text first captured) and a unique index over the four. Views are
    # dropped and recreated around the rebuild (a view naming a missing table blocks RENAME).
    views = db.execute("SELECT name, sql FROM sqlite_master WHERE type = 'view' ORDER BY rowid").fetchall()
    for name, _ in views:
        db.execute(f'DROP VIEW "{name}"')
    _run_script(db,
        """
        CREATE TABLE classifications_new (
            id INTEGER PRIMARY KEY, article_id TEXT NOT NULL REFERENCES articles(id),
            model_id TEXT NOT NULL, model_version TEXT NOT NULL, classified_at TEXT NOT NULL,
            stigmatising INTEGER NOT NULL, score REAL NOT NULL, categories TEXT NOT NULL,
            top_category TEXT, voice TEXT, speaker TEXT, speaker_is_official INTEGER, targets TEXT,
            n_passages INTEGER, text_sha256 TEXT,
            version_id INTEGER REFERENCES article_versions(id)
        );
        INSERT INTO classifications_new (id, article_id, model_id, model_version, classified_at, stigmatising, score,
                                         categories, top_category, voice, speaker, speaker_is_official, targets,
                                         n_passages, text_sha256)
            SELECT id, article_id, model_id, model_version, classified_at, stigmatising, score, categories,
                   top_category, voice, speaker, speaker_is_official, targets, n_passages, text_sha256
            FROM classifications;
        DROP TABLE classifications;
        ALTER TABLE classifications_new RENAME TO classifications;
        CREATE UNIQUE INDEX classifications_unique
            ON classifications(article_id, model_id, model_version, coalesce(version_id, 0));
        CREATE INDEX classifications_flagged ON classifications(stigmatising, score);
        CREATE INDEX classifications_version ON classifications(version_id) WHERE version_id IS NOT NULL;
        """)
    for name, sql in views:
        db.execute(LATEST_CLASSIFICATIONS if name == "latest_classifications" else sql)
    # flag_targets follows the article's verdict (not simply the newest row)
    _run_script(db,
        """
        CREATE TRIGGER classifications_flag_targets AFTER INSERT ON classifications BEGIN
            DELETE FROM flag_targets WHERE article_id = NEW.article_id;
            INSERT OR IGNORE INTO flag_targets (target, article_id, classification_id, day, rejected)
            SELECT t.value, c.article_id, c.id,
                   (SELECT substr(coalesce(a.published, a.first_seen_at), 1, 10) FROM articles a WHERE a.id = c.article_id),
                   coalesce((SELECT r.decision = 'reject' FROM reviews r WHERE r.article_id = c.article_id
                             ORDER BY r.id DESC LIMIT 1), 0)
            FROM latest_classifications c, json_each(coalesce(c.targets, '[]')) t
            WHERE c.article_id = NEW.article_id AND c.stigmatising = 1;
        END;
        """)


@migration("failures by URL: the backfill merge records each bad archive record once")
def _m007(db: sqlite_utils.Database) -> None:
    # store.failure_recorded looks a bad record up by (URL or file@offset, stage) before recording
    # it; without an index every lookup scanned the whole table (quadratic over a large backfill).
    _run_script(db, "CREATE INDEX failures_url ON failures(url, stage);")
