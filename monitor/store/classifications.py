"""Verdicts: which article texts still need a model version, and storing one verdict with its passages."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import sqlite_utils

from ..fetch import utc_now
from ..models import Classification
from .captures import add_custody

__all__ = ['articles_to_classify', 'smear_changes', 'store_classification', 'text_versions']


# --- classifications -------------------------------------------------------------------------

def articles_to_classify(db: sqlite_utils.Database, model_id: str, model_version: str,
                         limit: int | None = None) -> Iterator[dict[str, Any]]:
    """Article texts with no classification by this model version: each article's first text and every edit.

    Rows carry ``id`` (the article), ``title``, ``text``, ``text_sha256`` and ``version_id`` (None
    for the text first captured, else the ``article_versions`` row of an edit).
    """
    sql = (
        "SELECT a.id, a.title, a.text, a.text_sha256, NULL AS version_id, a.first_seen_at AS seen FROM articles a "
        "WHERE NOT EXISTS (SELECT 1 FROM classifications c WHERE c.article_id = a.id AND c.model_id = ?1 "
        "AND c.model_version = ?2 AND c.version_id IS NULL) "
        "UNION ALL "
        "SELECT v.article_id, v.title, v.text, v.text_sha256, v.id, v.detected_at FROM article_versions v "
        "WHERE NOT EXISTS (SELECT 1 FROM classifications c WHERE c.version_id = v.id AND c.model_id = ?1 "
        "AND c.model_version = ?2) "
        "ORDER BY seen, id, version_id"
    )
    if limit:
        sql += f" LIMIT {int(limit)}"
    yield from db.query(sql, [model_id, model_version])


def store_classification(db: sqlite_utils.Database, aid: str, text_sha256: str, result: Classification,
                         version_id: int | None = None) -> int:
    """Insert one classification and its flagged passages in a transaction (never overwrites).

    ``version_id``: the ``article_versions`` row whose text was classified (None: the first text).
    Returns the new id, or 0 when this text already has a verdict by this model version.
    """
    top = max(result.categories, key=lambda k: result.categories[k]) if result.categories else None
    with db.conn:
        cursor = db.execute(
            "INSERT OR IGNORE INTO classifications (article_id, model_id, model_version, classified_at, stigmatising, "
            "score, categories, top_category, voice, speaker, speaker_is_official, targets, n_passages, text_sha256, "
            "version_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [aid, result.model_id, result.model_version, utc_now(), int(result.stigmatising), result.score,
             json.dumps(result.categories, sort_keys=True), top if result.stigmatising else None, result.voice,
             result.speaker, int(result.speaker_is_official), json.dumps(list(result.targets), ensure_ascii=False),
             result.n_passages, text_sha256, version_id],
        )
        if cursor.rowcount == 0:
            return 0
        cid = int(cursor.lastrowid)
        add_custody(db, "classification", article_id=aid, ref_id=cid, input_sha256=text_sha256,
                    details={"model_id": result.model_id, "model_version": result.model_version,
                             "stigmatising": bool(result.stigmatising), "score": result.score,
                             "targets": list(result.targets), "version_id": version_id})
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




def text_versions(db: sqlite_utils.Database, article_id: str, model_id: str | None = None,
                  model_version: str | None = None) -> list[dict[str, Any]]:
    """Every text of an article, oldest first, each with its verdict by one model and its flagged passages.

    Version 0 is the text first captured; 1, 2 ... are the edits found by re-checks or in archives
    (each with its capture, ``at`` = that capture's time, and the diff from the text before). The model defaults to the one behind the
    article's verdict (``latest_classifications``). ``classification`` is None for a text that
    model has not classified yet.
    """
    if model_id is None:
        row = db.execute("SELECT model_id, model_version FROM latest_classifications WHERE article_id = ?",
                         [article_id]).fetchone()
        if row is None:
            model_id, model_version = "", ""
        else:
            model_id, model_version = row
    versions = list(db.query(
        "SELECT 0 AS no, NULL AS version_id, a.capture_id, coalesce(cp.captured_at, a.first_seen_at) AS at, a.title, "
        "a.text, a.text_sha256, '' AS diff FROM articles a LEFT JOIN captures cp ON cp.id = a.capture_id WHERE a.id = ?1 "
        "UNION ALL "
        "SELECT row_number() OVER (ORDER BY v.id), v.id, v.capture_id, coalesce(vc.captured_at, v.detected_at), v.title, "
        "v.text, v.text_sha256, v.diff FROM article_versions v LEFT JOIN captures vc ON vc.id = v.capture_id "
        "WHERE v.article_id = ?1 ORDER BY no", [article_id]))
    verdicts = {r["version_id"]: r for r in db.query(
        "SELECT * FROM classifications WHERE article_id = ? AND model_id = ? AND model_version = ?",
        [article_id, model_id, model_version])}
    for v in versions:
        c = verdicts.get(v["version_id"])
        v["classification"] = c
        v["passages"] = list(db.query(
            'SELECT start, "end", text, score, categories, top_category, voice, speaker, speaker_is_official, targets '
            "FROM passages WHERE classification_id = ? ORDER BY start", [c["id"]])) if c else []
    return versions


def smear_changes(versions: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Where a classified version's verdict differs from the classified version before it.

    Each change: ``{"kind": "added" | "removed", "no", "capture_id", "at", "from_no"}``: a smear
    added by an edit, or removed by one (the earlier flagged text stays evidence).
    """
    changes: list[dict[str, Any]] = []
    before: dict[str, Any] | None = None
    for v in versions:
        if v["classification"] is None:
            continue
        flagged = bool(v["classification"]["stigmatising"])
        if before is not None and flagged != bool(before["classification"]["stigmatising"]):
            changes.append({"kind": "added" if flagged else "removed", "no": v["no"], "capture_id": v["capture_id"],
                            "at": v["at"], "from_no": before["no"], "from_capture_id": before["capture_id"]})
        before = v
    return changes
