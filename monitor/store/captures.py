"""Captures (raw pages, gzip), articles, custody entries and re-checks (edits and removals)."""

from __future__ import annotations

import gzip
import hashlib
import json
from dataclasses import dataclass
from typing import Any

import sqlite_utils

from ..fetch import utc_now
from ..models import Article, Fetched, WarcRef
from ..urls import canonical_url
from .schema import TOOL

__all__ = ['latest_text', 'version_of_capture', 'PageFacts',
           'add_custody',
           'article_by_canonical_url',
           'articles_to_recheck',
           'articles_with_fingerprint',
           'capture_of',
           'capture_body',
           'compress',
           'record_check',
           'store_page',
           'story_candidates',
           'GZIP_LEVEL']


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


def capture_of(db: sqlite_utils.Database, final_url: str, sha256: str,
               captured_at: str | None = None) -> dict[str, Any] | None:
    """A stored capture of these bytes from this URL (at this time, when given), with its text's hash.

    ``text_sha256`` and ``version_id`` are those of the text extracted from this capture: the
    article's first text, or the edit (``article_versions``) the capture brought.

    How a backfill merge recognises a record it (or a crawl) stored already.
    """
    sql = ("SELECT c.id AS capture_id, c.article_id, coalesce(v.text_sha256, a.text_sha256) AS text_sha256, "
           "v.id AS version_id FROM captures c LEFT JOIN articles a ON a.id = c.article_id "
           "LEFT JOIN article_versions v ON v.capture_id = c.id WHERE c.sha256 = ? AND c.final_url = ?")
    params = [sha256, final_url]
    if captured_at is not None:
        sql += " AND c.captured_at = ?"
        params.append(captured_at)
    rows = list(db.query(sql + " ORDER BY c.id LIMIT 1", params))
    return rows[0] if rows else None


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


def latest_text(db: sqlite_utils.Database, article_id: str) -> dict[str, Any] | None:
    """An article's newest text (its last edit, else the text first captured) and when it was captured.

    The row has what :func:`record_check` needs to record a further edit: ``id``, ``text``,
    ``text_sha256``, ``removed_at``, plus ``at`` (the capture time of that text).
    """
    rows = list(db.query(
        """
        SELECT a.id, a.removed_at, a.edits,
               coalesce(v.text, a.text) AS text, coalesce(v.text_sha256, a.text_sha256) AS text_sha256,
               coalesce(vc.captured_at, c.captured_at) AS at
        FROM articles a JOIN captures c ON c.id = a.capture_id
        LEFT JOIN article_versions v ON v.id = (SELECT max(id) FROM article_versions WHERE article_id = a.id)
        LEFT JOIN captures vc ON vc.id = v.capture_id
        WHERE a.id = ?
        """, [article_id]))
    return rows[0] if rows else None


def version_of_capture(db: sqlite_utils.Database, capture_id: int) -> int | None:
    """The ``article_versions`` row a capture brought (None: it brought no new text)."""
    row = db.execute("SELECT id FROM article_versions WHERE capture_id = ?", [capture_id]).fetchone()
    return int(row[0]) if row else None


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


