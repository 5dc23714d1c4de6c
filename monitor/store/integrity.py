"""The reads ``monitor verify-store`` checks: captures with their WARC location, texts, and the custody chain.

Every reader walks its table in id order, in batches (keyset pagination), so a check of a large
store holds no long read transaction and needs little memory; each row carries the custody facts
it is checked against, looked up through the custody indexes.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import sqlite_utils

__all__ = ['custody_cutoff',
           'dangling_custody',
           'integrity_captures',
           'integrity_classifications',
           'integrity_reviews',
           'integrity_texts',
           'integrity_timestamps',
           'table_count']

BATCH = 500


def _batched(db: sqlite_utils.Database, sql: str, key: str, first: Any) -> Iterator[dict[str, Any]]:
    """Rows of ``sql`` (which has ``WHERE <key> > ? ... ORDER BY <key> LIMIT ?``), batch by batch."""
    last = first
    while True:
        rows = list(db.query(sql, [last, BATCH]))
        yield from rows
        if len(rows) < BATCH:
            return
        last = rows[-1][key]


def table_count(db: sqlite_utils.Database, table: str) -> int:
    """Rows in one of the checked tables (0 when an older schema lacks it)."""
    if table not in db.table_names():
        return 0
    return db.execute(f"SELECT count(*) FROM {table}").fetchone()[0]


def custody_cutoff(db: sqlite_utils.Database) -> str | None:
    """When the custody log began (migration 3 applied): rows older than this have no custody entries."""
    row = db.execute("SELECT applied_at FROM _migrations WHERE version = 3").fetchone()
    return row[0] if row else None


def integrity_captures(db: sqlite_utils.Database) -> Iterator[dict[str, Any]]:
    """Every capture (with its gzip body), its WARC location, and the SHA-256 of its custody ``capture`` rows (JSON)."""
    yield from _batched(db, """
        SELECT c.id, c.article_id, c.sha256, c.size, c.body_gz, c.captured_at,
               w.capture_id AS warc_capture_id, w.warc_dir, w.warc_file, w.record_offset, w.record_length,
               w.response_length, w.record_id, w.payload_digest,
               (SELECT json_group_array(k.sha256) FROM custody k
                WHERE k.capture_id = c.id AND k.action = 'capture') AS custody_sha256
        FROM captures c LEFT JOIN warc_records w ON w.capture_id = c.id
        WHERE c.id > ? ORDER BY c.id LIMIT ?""", "id", 0)


def integrity_texts(db: sqlite_utils.Database) -> Iterator[dict[str, Any]]:
    """Every extracted text (articles, then later versions) with its capture's hash and whether custody records it.

    ``custody_ok`` is 1 when an ``extraction`` custody row names that capture, the text's hash as
    output and the capture's hash as input.
    """
    yield from ({"kind": "article", **row} for row in _batched(db, """
        SELECT a.id, a.id AS article_id, a.capture_id, a.text, a.text_sha256, a.extracted_at AS at,
               c.sha256 AS capture_sha256,
               EXISTS (SELECT 1 FROM custody k WHERE k.article_id = a.id AND k.action = 'extraction'
                       AND k.capture_id = a.capture_id AND k.sha256 = a.text_sha256
                       AND k.input_sha256 = c.sha256) AS custody_ok
        FROM articles a LEFT JOIN captures c ON c.id = a.capture_id
        WHERE a.id > ? ORDER BY a.id LIMIT ?""", "id", ""))
    yield from ({"kind": "version", **row} for row in _batched(db, """
        SELECT v.id, v.article_id, v.capture_id, v.text, v.text_sha256, v.detected_at AS at,
               c.sha256 AS capture_sha256,
               EXISTS (SELECT 1 FROM custody k WHERE k.article_id = v.article_id AND k.action = 'extraction'
                       AND k.capture_id = v.capture_id AND k.sha256 = v.text_sha256
                       AND k.input_sha256 = c.sha256) AS custody_ok
        FROM article_versions v LEFT JOIN captures c ON c.id = v.capture_id
        WHERE v.id > ? ORDER BY v.id LIMIT ?""", "id", 0))


def integrity_classifications(db: sqlite_utils.Database) -> Iterator[dict[str, Any]]:
    """Every verdict, the input hashes of its custody ``classification`` rows (JSON), and whether it
    classified a text extracted for that article (``text_known``)."""
    yield from _batched(db, """
        SELECT cl.id, cl.article_id, cl.text_sha256, cl.classified_at AS at,
               (SELECT json_group_array(k.input_sha256) FROM custody k WHERE k.article_id = cl.article_id
                AND k.action = 'classification' AND k.ref_id = cl.id) AS custody_inputs,
               (cl.text_sha256 IS NULL OR cl.text_sha256 IN (
                    SELECT a.text_sha256 FROM articles a WHERE a.id = cl.article_id
                    UNION SELECT v.text_sha256 FROM article_versions v WHERE v.article_id = cl.article_id)) AS text_known
        FROM classifications cl WHERE cl.id > ? ORDER BY cl.id LIMIT ?""", "id", 0)


def integrity_reviews(db: sqlite_utils.Database) -> Iterator[dict[str, Any]]:
    """Every review decision and whether a custody ``review`` row records it."""
    yield from _batched(db, """
        SELECT r.id, r.article_id, r.reviewer, r.created_at AS at,
               EXISTS (SELECT 1 FROM custody k WHERE k.article_id = r.article_id AND k.action = 'review'
                       AND k.ref_id = r.id AND k.actor = r.reviewer) AS custody_ok
        FROM reviews r WHERE r.id > ? ORDER BY r.id LIMIT ?""", "id", 0)


def integrity_timestamps(db: sqlite_utils.Database) -> Iterator[dict[str, Any]]:
    """Every RFC 3161 token, its capture's hash, and the input hashes of its custody ``timestamp`` rows (JSON)."""
    yield from _batched(db, """
        SELECT t.id, t.capture_id, t.sha256, t.token, c.sha256 AS capture_sha256,
               (SELECT json_group_array(k.input_sha256) FROM custody k WHERE k.capture_id = t.capture_id
                AND k.action = 'timestamp' AND k.ref_id = t.id) AS custody_inputs
        FROM timestamps t LEFT JOIN captures c ON c.id = t.capture_id
        WHERE t.id > ? ORDER BY t.id LIMIT ?""", "id", 0)


def dangling_custody(db: sqlite_utils.Database) -> list[dict[str, Any]]:
    """Custody rows that name a capture the database does not hold."""
    return list(db.query(
        "SELECT k.id, k.action, k.capture_id FROM custody k WHERE k.capture_id IS NOT NULL "
        "AND NOT EXISTS (SELECT 1 FROM captures c WHERE c.id = k.capture_id) ORDER BY k.id"))
