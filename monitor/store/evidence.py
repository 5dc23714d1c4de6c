"""Evidence reads and writes: WARC locations, trusted timestamps, dossier selections and exports."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import sqlite_utils

from .captures import add_custody

__all__ = ['captures_to_timestamp',
           'database_file',
           'evidence_candidates',
           'evidence_captures',
           'evidence_custody',
           'evidence_history',
           'evidence_passages',
           'evidence_timestamps',
           'record_export',
           'record_timestamp']


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
               c.id AS classification_id, c.version_id, c.model_id, c.model_version, c.classified_at, c.stigmatising, c.score,
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


