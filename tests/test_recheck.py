"""Edits and deletions are evidence: re-checks add captures and diffs, mark removals, never lose a capture."""

from __future__ import annotations

from pathlib import Path

from monitor import store
from monitor.pipeline import crawl_once
from monitor.recheck import recheck
from tests.pages import article_html, rss, story_text
from tests.test_crawling import config_for


def test_edit_and_removal_keep_every_capture(make_server, db_path: Path) -> None:
    site = make_server()
    original = story_text(0)
    site.add("/n/editada.html", article_html("Nota que cambiará", original))
    site.add("/n/borrada.html", article_html("Nota que desaparecerá", story_text(2)))
    site.add("/n/igual.html", article_html("Nota que no cambia", story_text(3)))
    feed = site.add("/feed.xml", rss([("e", site.url("/n/editada.html")), ("b", site.url("/n/borrada.html")),
                                      ("i", site.url("/n/igual.html"))]), content_type="application/rss+xml")
    config = config_for([{"url": feed}])
    db = store.connect(db_path)
    assert crawl_once(db, config, None).new_articles == 3

    edited = original[:2] + ["El ayuntamiento retiró esta nota a petición de la empresa constructora."] + original[3:]
    site.add("/n/editada.html", article_html("Nota que cambiará", edited))
    site.add("/n/borrada.html", "<h1>No encontrada</h1>", status=404)
    # the page around the text changes (a new ad), the text does not
    site.add("/n/igual.html", article_html("Nota que no cambia", story_text(3)).replace("Inicio", "Inicio · Anuncio"))
    summary = recheck(db, config)
    assert (summary.checked, summary.changed, summary.removed, summary.unchanged) == (3, 1, 1, 1)

    ids = {r["url"].rsplit("/", 1)[1]: r["id"] for r in db.query("SELECT id, url FROM articles")}
    captures = {name: db.execute("SELECT count(*) FROM captures WHERE article_id = ?", [aid]).fetchone()[0]
                for name, aid in ids.items()}
    assert captures == {"editada.html": 2, "borrada.html": 1, "igual.html": 1}
    version = db.execute("SELECT diff, previous_text_sha256 FROM article_versions WHERE article_id = ?",
                         [ids["editada.html"]]).fetchone()
    assert "+El ayuntamiento retiró esta nota" in version[0] and "-El alcalde declaró" in version[0]
    art = db.execute("SELECT text, text_sha256, edits, removed_at FROM articles WHERE id = ?", [ids["editada.html"]]).fetchone()
    assert "El alcalde declaró" in art[0] and art[1] == version[1] and art[2] == 1 and art[3] is None
    removed_at = db.execute("SELECT removed_at FROM articles WHERE id = ?", [ids["borrada.html"]]).fetchone()[0]
    assert removed_at and store.capture_body(db, db.execute(
        "SELECT capture_id FROM articles WHERE id = ?", [ids["borrada.html"]]).fetchone()[0]).startswith(b"<!doctype")

    # a second re-check: still gone keeps the FIRST time it was seen gone; the edit is not counted twice
    again = recheck(db, config)
    assert (again.changed, again.removed, again.unchanged) == (0, 1, 2)
    assert db.execute("SELECT removed_at FROM articles WHERE id = ?", [ids["borrada.html"]]).fetchone()[0] == removed_at
    assert db.execute("SELECT edits FROM articles WHERE id = ?", [ids["editada.html"]]).fetchone()[0] == 1

    # the page comes back: restored, with a capture
    site.add("/n/borrada.html", article_html("Nota que desaparecerá", story_text(2)))
    back = recheck(db, config)
    assert back.restored == 1
    assert db.execute("SELECT removed_at FROM articles WHERE id = ?", [ids["borrada.html"]]).fetchone()[0] is None
    outcomes = [r[0] for r in db.execute("SELECT outcome FROM article_checks WHERE article_id = ? ORDER BY id",
                                         [ids["borrada.html"]])]
    assert outcomes == ["removed", "removed", "restored"]


def crawled_one_article(make_server, db_path: Path, variant: int):  # type: ignore[no-untyped-def]
    """A site with one article, crawled once: (site, config, db)."""
    site = make_server()
    site.add("/n/a.html", article_html("Una nota", story_text(variant)))
    feed = site.add("/feed.xml", rss([("a", site.url("/n/a.html"))]), content_type="application/rss+xml")
    config = config_for([{"url": feed}])
    db = store.connect(db_path)
    crawl_once(db, config, None)
    return site, config, db


def test_server_error_is_not_a_removal(make_server, db_path: Path) -> None:
    site, config, db = crawled_one_article(make_server, db_path, 4)
    site.add("/n/a.html", "oops", status=503)
    summary = recheck(db, config)
    assert summary.errors == 1 and summary.removed == 0
    assert db.execute("SELECT removed_at FROM articles").fetchone()[0] is None


def test_recheck_window(make_server, db_path: Path) -> None:
    _site, config, db = crawled_one_article(make_server, db_path, 5)
    with db.conn:
        db.execute("UPDATE articles SET first_seen_at = '2020-01-01T00:00:00.000000Z'")
    assert recheck(db, config, days=7, flagged_days=60).checked == 0
