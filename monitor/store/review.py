"""Accounts, reviewers' decisions, the triage queue and the analysts' counts."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import sqlite_utils

from ..fetch import utc_now
from .classifications import smear_changes, text_versions
from .schema import _run_script

__all__ = ['accounts_path',
           'add_token',
           'add_user',
           'article_detail',
           'capture_row',
           'connect_accounts',
           'counts',
           'get_user',
           'list_users',
           'not_rejected',
           'queue',
           'record_review',
           'remove_user',
           'review_agreement',
           'review_disagreements',
           'story_members',
           'target_timeline',
           'top_outlets',
           'top_targets',
           'user_for_token',
           'weekly_flags_by_category',
           'ACCOUNTS_SCHEMA',
           'COUNTED_FLAGS',
           'QUEUE_ORDERS']


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
        seen = db.execute("SELECT model_id, model_version FROM latest_classifications WHERE article_id = ?",
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
          AND c.id = (SELECT lc.id FROM latest_classifications lc WHERE lc.article_id = c.article_id)
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
    """An article with its verdict, flagged passages, captures, versions (each with its verdict) and reviews."""
    rows = list(db.query("SELECT a.*, o.name AS outlet FROM articles a LEFT JOIN outlets o ON o.id = a.outlet_id "
                         "WHERE a.id = ?", [article_id]))
    if not rows:
        return None
    art = rows[0]
    cls = list(db.query("SELECT * FROM latest_classifications WHERE article_id = ?", [article_id]))
    art["classification"] = cls[0] if cls else None
    art["passages"] = list(db.query('SELECT start, "end", text, score, categories, top_category, voice, speaker, '
                                    "speaker_is_official, targets FROM passages WHERE classification_id = ? ORDER BY start",
                                    [cls[0]["id"]])) if cls else []
    art["text_versions"] = text_versions(db, article_id)
    art["smear_changes"] = smear_changes(art["text_versions"])
    # the passages' offsets point into the text of the version the verdict is about
    verdict_version = cls[0]["version_id"] if cls else None
    shown = next((v for v in art["text_versions"] if v["version_id"] == verdict_version), None)
    art["verdict_no"] = shown["no"] if shown else 0
    art["verdict_text"] = shown["text"] if shown else art["text"]
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
      AND c.id = (SELECT lc.id FROM latest_classifications lc WHERE lc.article_id = c.article_id)
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


