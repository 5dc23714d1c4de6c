"""Verdicts: which article texts still need a model version, and storing one verdict with its passages."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import sqlite_utils

from ..fetch import utc_now
from ..models import Classification
from .captures import add_custody

__all__ = ['articles_to_classify', 'store_classification']


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


