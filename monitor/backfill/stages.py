"""One archive record through the crawl's own pure stages: extract (trafilatura), dedup keys, classify.

The functions are the crawl's: ``pageworker.process_page`` (decode, extract, fingerprint) and
``scoring.classify_articles`` (title + body scored, passage offsets into the body). What comes out
is a plain row (``shards.SCHEMA``) that any engine can move between processes or machines.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
from dataclasses import asdict
from typing import Any

from .. import pageworker
from ..models import Article, Classification, Fetched, Passage
from ..scoring import Classifier, classify_articles
from .sources import ArchiveRecord, BadRecord

LOGGER = logging.getLogger(__name__)
BATCH_SIZE = 16          # the crawl's classification batch (pipeline.classify_pending)
_CLASSIFIERS: dict[tuple[str, str | None], Any] = {}


def load_classifier_once(name: str, model_dir: str | None = None) -> Any:
    """The registry's classifier ``name``, loaded once per process (a worker, a Ray actor)."""
    key = (name, model_dir)
    if key not in _CLASSIFIERS:
        from ..classifier.registry import load_classifier

        _CLASSIFIERS[key] = load_classifier(name, model_dir)
    return _CLASSIFIERS[key]


def _empty_row(source: str, offset: int, length: int, kind: str) -> dict[str, Any]:
    return {"source": source, "offset": offset, "length": length, "kind": kind, "url": "", "captured_at": "",
            "status": 0, "headers": "[]", "content_type": "", "sha256": "", "size": 0, "body_gz": None,
            "record_id": "", "payload_digest": "", "error_kind": "", "error": "", "title": "", "text": "",
            "author": "", "published": None, "site_name": "", "language": "", "canonical_url": "",
            "description": "", "fingerprint": "", "signature": None, "bands": "[]", "model_id": "",
            "model_version": "", "stigmatising": None, "score": None, "classification": ""}


def bad_row(bad: BadRecord) -> dict[str, Any]:
    """The row of an unreadable record: where it is and why."""
    row = _empty_row(bad.source, bad.offset, 0, "bad")
    row.update(error_kind=bad.kind, error=bad.message)
    return row


def record_row(record: ArchiveRecord) -> dict[str, Any]:
    """Extract one record (the crawl's ``process_page``) into a row; never raises for bad pages."""
    from ..store import compress

    row = _empty_row(record.source, record.offset, record.length, record.kind)
    sha = hashlib.sha256(record.body).hexdigest()
    fetched = Fetched(url=record.url, final_url=record.url, status=record.status, headers=record.headers,
                      body=record.body, captured_at=record.captured_at, sha256=sha)
    row.update(url=record.url, captured_at=record.captured_at, status=record.status,
               headers=json.dumps([list(h) for h in record.headers], ensure_ascii=False),
               content_type=fetched.header("Content-Type"), sha256=sha, size=len(record.body),
               record_id=record.record_id, payload_digest=record.payload_digest)
    if record.kind == "text":
        article = Article(url=record.url, title=record.title.strip(), text=record.text.strip(),
                          published=record.published)
        if not article.text:
            row.update(error_kind="extract", error=f"{record.url}: empty text")
            return row
        fingerprint, signature, bands = pageworker.fingerprints(article)
        row.update(body_gz=compress(record.body))
        return _with_article(row, article, fingerprint, signature, bands)
    if record.status != 200:
        row.update(error_kind="status", error=f"{record.url}: HTTP status {record.status}, not a page")
        return row
    result = pageworker.process_page(fetched, None, pack=False)
    if result.article is None:
        kind = "not_html" if "not an HTML" in (result.error or "") else "extract"
        row.update(error_kind=kind, error=result.error or "no article")
        return row
    row.update(body_gz=compress(record.body))
    return _with_article(row, result.article, result.fingerprint, result.signature, result.bands)


def _with_article(row: dict[str, Any], article: Article, fingerprint: str, signature: bytes,
                  bands: tuple[str, ...]) -> dict[str, Any]:
    row.update(title=article.title, text=article.text, author=article.author, published=article.published,
               site_name=article.site_name, language=article.language, canonical_url=article.canonical_url,
               description=article.description, fingerprint=fingerprint, signature=signature or None,
               bands=json.dumps(list(bands)))
    return row


def classify_rows(classifier: Classifier, rows: list[dict[str, Any]], batch_size: int = BATCH_SIZE) -> list[dict[str, Any]]:
    """Add the verdict to each extracted row (``scoring.classify_articles``, the crawl's batches).

    A failing batch leaves its rows unclassified with ``error_kind`` "classify"; after the merge
    ``monitor classify`` picks them up, as after a crawl.
    """
    todo = [r for r in rows if r["text"] and not r["error_kind"]]
    for start in range(0, len(todo), batch_size):
        batch = todo[start:start + batch_size]
        try:
            results = classify_articles(classifier, [(r["title"], r["text"]) for r in batch])
        except Exception as e:
            LOGGER.exception("classification batch failed")
            for r in batch:
                r.update(error_kind="classify", error=f"{r['url']}: {type(e).__name__}: {e}")
            continue
        for row, result in zip(batch, results):
            row.update(model_id=result.model_id, model_version=result.model_version,
                       stigmatising=bool(result.stigmatising), score=float(result.score),
                       classification=classification_json(result))
    return rows


def process_records(records: list[ArchiveRecord | BadRecord], classifier: Classifier) -> list[dict[str, Any]]:
    """Extract then classify a batch of records: the whole per-record work of a backfill."""
    rows = [bad_row(r) if isinstance(r, BadRecord) else record_row(r) for r in records]
    return classify_rows(classifier, rows)


def classification_json(result: Classification) -> str:
    """A verdict as JSON (passage embeddings base64), exactly restorable by :func:`classification_from_json`."""
    data = asdict(result)
    for p in data["passages"]:
        p["embedding"] = base64.b64encode(p["embedding"]).decode("ascii")
    return json.dumps(data, ensure_ascii=False)


def classification_from_json(text: str) -> Classification:
    """The verdict stored by :func:`classification_json`."""
    data = json.loads(text)
    passages = tuple(Passage(**{**p, "embedding": base64.b64decode(p["embedding"]), "targets": tuple(p["targets"])})
                     for p in data.pop("passages"))
    return Classification(**{**data, "targets": tuple(data["targets"]), "passages": passages})
