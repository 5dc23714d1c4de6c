"""Storage: migrations, WAL, foreign keys, FTS, append-only classifications."""

from __future__ import annotations

import sqlite3

import pytest

from monitor import store
from monitor.models import Classification, Passage


def test_migrations_apply_once(db_path) -> None:
    db = store.connect(db_path)
    assert store.schema_version(db) == len(store.MIGRATIONS)
    assert store.apply_migrations(db) == []  # nothing left to apply
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert db.execute("PRAGMA foreign_keys").fetchone()[0] == 1
    for table in ("outlets", "feeds", "captures", "articles", "classifications", "passages", "failures", "runs", "reviews"):
        assert db[table].exists()


def _article(db, aid: str = "a" * 64, text: str = "Texto sobre el Centro Prodh y la campaña.") -> None:
    db["outlets"].insert({"id": "o", "name": "Diario"})
    db["feeds"].insert({"id": "o/news", "outlet_id": "o", "url": "https://o.example/rss", "section": "news"})
    cid = db["captures"].insert({"article_id": aid, "url": "u", "final_url": "u", "status": 200, "headers": "[]",
                                 "captured_at": "2026-11-01T00:00:00Z", "sha256": "x", "size": 1,
                                 "body_gz": store.compress(b"x"), "tool_version": "t"}).last_pk
    db["articles"].insert({"id": aid, "url": "u", "canonical_url": "u", "outlet_id": "o", "feed_id": "o/news",
                           "title": "Campaña", "text": text, "text_sha256": "h", "capture_id": cid,
                           "first_seen_at": "2026-11-01T00:00:00Z", "extracted_at": "2026-11-01T00:00:00Z",
                           "extractor": "t"})


def test_fts_finds_accentless_query(db_path) -> None:
    db = store.connect(db_path)
    _article(db)
    hits = list(db.query("SELECT rowid FROM articles_fts WHERE articles_fts MATCH 'campana'"))
    assert len(hits) == 1


def test_foreign_keys_enforced(db_path) -> None:
    db = store.connect(db_path)
    with pytest.raises(sqlite3.IntegrityError):
        db.execute("INSERT INTO feeds (id, outlet_id, url, section) VALUES ('f', 'missing', 'https://x', 'news')")


def _verdict(version: str, score: float) -> Classification:
    p = Passage(start=0, end=10, text="Texto sobr", score=score, categories={"criminalisation": score}, voice="authorial")
    return Classification(model_id="m", model_version=version, stigmatising=True, score=score,
                          categories={"criminalisation": score}, voice="authorial", speaker="", speaker_is_official=False,
                          targets=("Centro Prodh",), passages=(p,), n_passages=1)


def test_classifications_are_never_overwritten(db_path) -> None:
    db = store.connect(db_path)
    _article(db)
    aid = "a" * 64
    first = store.store_classification(db, aid, "h", _verdict("1", 0.9))
    again = store.store_classification(db, aid, "h", _verdict("1", 0.1))  # same model version: ignored
    newer = store.store_classification(db, aid, "h", _verdict("2", 0.7))
    assert first and not again and newer
    rows = list(db.query("SELECT model_version, score FROM classifications ORDER BY id"))
    assert rows == [{"model_version": "1", "score": 0.9}, {"model_version": "2", "score": 0.7}]
    latest = list(db.query("SELECT model_version FROM latest_classifications"))
    assert latest == [{"model_version": "2"}]
    assert [r["article_id"] for r in db.query("SELECT article_id FROM flagged_articles")] == [aid]


def test_reviews_become_training_examples(db_path) -> None:
    from monitor.classifier.reviews import examples_from_reviews

    db = store.connect(db_path)
    _article(db)
    aid = "a" * 64
    store.store_classification(db, aid, "h", _verdict("1", 0.9))
    db["reviews"].insert({"article_id": aid, "reviewer": "ana", "decision": "confirm", "categories": '["false_claims"]',
                          "voice": "attributed", "created_at": "2026-11-02T00:00:00Z"})
    [ex] = examples_from_reviews(db)
    assert (ex.stigmatising, ex.categories, ex.voice, ex.text) == (1, ("false_claims",), "attributed", "Texto sobr")
    db["reviews"].insert({"article_id": aid, "reviewer": "luis", "decision": "reject", "voice": "counter",
                          "targets": '["Centro Prodh"]', "created_at": "2026-11-03T00:00:00Z"})
    [ex] = examples_from_reviews(db)  # the latest decision wins
    assert (ex.stigmatising, ex.categories, ex.voice, ex.targets) == (0, (), "counter", ("Centro Prodh",))


def test_migration_6_keeps_every_verdict_and_lets_each_version_have_its_own(tmp_path: Path, monkeypatch) -> None:
    """A database made before article versions were classified upgrades in place, nothing lost."""
    from monitor.store import schema

    path = tmp_path / "old.db"
    monkeypatch.setattr(schema, "MIGRATIONS", schema.MIGRATIONS[:5])
    old = store.connect(path)
    with old.conn:
        old.execute("INSERT INTO outlets (id, name) VALUES ('o', 'Diario')")
        old.execute("INSERT INTO captures (id, article_id, url, final_url, status, headers, captured_at, sha256, size, "
                    "body_gz, tool_version) VALUES (1, 'a1', 'http://x/1', 'http://x/1', 200, '[]', '2026-01-01T00:00:00Z', "
                    "'00', 1, x'00', 't')")
        old.execute("INSERT INTO articles (id, url, canonical_url, outlet_id, text, text_sha256, capture_id, first_seen_at, "
                    "extracted_at, extractor) VALUES ('a1', 'http://x/1', 'http://x/1', 'o', 'texto', 'ff', 1, "
                    "'2026-01-01T00:00:00Z', '2026-01-01T00:00:00Z', 'x')")
        for cid, version, flagged in ((1, "1", 1), (2, "2", 0)):
            old.execute("INSERT INTO classifications (id, article_id, model_id, model_version, classified_at, stigmatising, "
                        "score, categories, targets) VALUES (?, 'a1', 'm', ?, 'now', ?, 0.9, '{}', '[\"ONG\"]')",
                        [cid, version, flagged])
        old.execute("INSERT INTO passages (classification_id, article_id, start, \"end\", text, score, categories) "
                    "VALUES (1, 'a1', 0, 5, 'texto', 0.9, '{}')")
    old.close()
    monkeypatch.undo()

    db = store.connect(path)
    assert store.schema_version(db) == len(schema.MIGRATIONS)
    assert db.execute("PRAGMA foreign_key_check").fetchall() == []
    rows = [tuple(r) for r in db.execute("SELECT id, model_version, stigmatising, version_id FROM classifications ORDER BY id")]
    assert rows == [(1, "1", 1, None), (2, "2", 0, None)]
    assert db.execute("SELECT classification_id FROM passages").fetchone()[0] == 1
    # the newest model's verdict is the article's: model 2 said clean
    assert db.execute("SELECT id FROM latest_classifications").fetchall() == [(2,)]
    assert db.execute("SELECT count(*) FROM flagged_articles").fetchone()[0] == 0
    # one verdict per text and model version still holds; a version of the text gets its own
    with pytest.raises(sqlite3.IntegrityError):
        with db.conn:
            db.execute("INSERT INTO classifications (article_id, model_id, model_version, classified_at, stigmatising, "
                       "score, categories) VALUES ('a1', 'm', '2', 'now', 1, 0.5, '{}')")
