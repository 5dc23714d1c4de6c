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


SMEAR = ("La organización Tlachinollan y sus supuestos defensores de derechos humanos son delincuentes "
         "disfrazados de activistas que reciben dinero extranjero para desestabilizar al país.")


def test_stealth_edits_every_version_is_classified_and_alerted_once(make_server, db_path: Path, tmp_path: Path) -> None:
    """A clean article, then a smear edited in, then edited out: three captures, every verdict kept, two alerts."""
    from monitor.alerts.config import AlertingSettings
    from monitor.classifier.registry import load_classifier
    from monitor.evidence.dossier import build_dossier
    from monitor.evidence.verify import verify_dossier

    classifier = load_classifier(str(Path(__file__).resolve().parents[1] / "classifiers" / "keyword-baseline"))
    alerting = AlertingSettings()
    site = make_server()
    clean = story_text(5)
    site.add("/n/nota.html", article_html("Reunión en la montaña", clean))
    feed = site.add("/feed.xml", rss([("n", site.url("/n/nota.html"))]), content_type="application/rss+xml")
    config = config_for([{"url": feed}])
    db = store.connect(db_path)
    first = crawl_once(db, config, classifier, alerting=alerting)
    assert (first.new_articles, first.flagged) == (1, 0)
    aid = db.execute("SELECT id FROM articles").fetchone()[0]

    site.add("/n/nota.html", article_html("Reunión en la montaña", clean[:2] + [SMEAR] + clean[2:]))
    added = recheck(db, config, classifier=classifier, alerting=alerting)
    assert (added.changed, added.classified, added.flagged) == (1, 1, 1)
    site.add("/n/nota.html", article_html("Reunión en la montaña", clean))
    removed = recheck(db, config, classifier=classifier, alerting=alerting)
    assert (removed.changed, removed.classified, removed.flagged) == (1, 1, 0)
    again = recheck(db, config, classifier=classifier, alerting=alerting)  # nothing new: no new verdict, no alert
    assert (again.unchanged, again.classified, again.alerts) == (1, 0, 0)

    assert db.execute("SELECT count(*) FROM captures WHERE article_id = ?", [aid]).fetchone()[0] == 3
    verdicts = [tuple(r) for r in db.execute(
        "SELECT version_id IS NOT NULL, stigmatising FROM classifications WHERE article_id = ? ORDER BY id", [aid])]
    assert verdicts == [(0, 0), (1, 1), (1, 0)]
    # the article counts as flagged (its worst version), with the flagged version's passage
    verdict = db.execute("SELECT stigmatising, version_id FROM latest_classifications WHERE article_id = ?", [aid]).fetchone()
    assert verdict[0] == 1 and verdict[1] is not None
    detail = store.article_detail(db, aid)
    assert detail is not None and detail["verdict_no"] == 1
    assert [p["text"] for p in detail["passages"]] and SMEAR[:40] in detail["verdict_text"][
        detail["passages"][0]["start"]:detail["passages"][0]["end"] + 200]
    assert [(c["kind"], c["no"]) for c in detail["smear_changes"]] == [("added", 1), ("removed", 2)]
    assert [r["article_id"] for r in store.queue(db)] == [aid]

    kinds = sorted(r[0] for r in db.execute("SELECT kind FROM alerts"))
    assert kinds == ["smear_added_by_edit", "smear_removed"]
    removed_alert = db.execute("SELECT payload FROM alerts WHERE kind = 'smear_removed'").fetchone()[0]
    assert "delincuentes" in removed_alert  # the removed smear is quoted: it is the evidence

    # the dossier carries the three versions, each with its verdict, and verifies
    zip_path = tmp_path / "dossier.zip"
    build_dossier(db, zip_path, "Tlachinollan", None)
    import json
    import zipfile

    with zipfile.ZipFile(zip_path) as z:
        items = json.loads(z.read("items.json"))["items"]
        html = z.read("dossier.html").decode()
    assert len(items) == 1 and len(items[0]["captures"]) == 3
    versions = items[0]["versions"]
    assert [(v["no"], v["stigmatising"]) for v in versions] == [(0, False), (1, True), (2, False)]
    assert items[0]["smear_removed"] == {"no": 2, "at": versions[2]["at"], "capture_id": versions[2]["capture_id"]}
    assert items[0]["passages"][0]["version"] == 1
    assert "<mark>" in html and html.count('class="version"') == 3
    assert verify_dossier(zip_path).ok
    from monitor.evidence.storecheck import verify_store

    checked = verify_store(db)  # every capture against its WARC record, every verdict against its text
    assert checked.ok, checked.failures
    # the desk: the queue marks the item, the article page shows every version with its verdict and diff
    import asyncio

    from click.testing import CliRunner

    from monitor.cli import cli
    from monitor.serve import build_datasette
    from tests.test_review_desk import login

    assert CliRunner().invoke(cli, ["--db", str(db_path), "user", "add", "rita", "--role", "reviewer",
                                    "--password-stdin"], input="contraseña-de-rita\n").exit_code == 0
    ds = build_datasette(db_path)

    async def desk() -> None:
        cookies = await login(ds, "rita")
        queue = await ds.client.get("/-/monitor/queue", cookies=cookies)
        assert "Estigmatización retirada en una edición posterior" in queue.text
        page = await ds.client.get(f"/-/monitor/article/{aid}", cookies=cookies)
        assert page.status_code == 200
        assert page.text.count('class="version"') == 3 and "Texto mostrado: versión 1" in page.text
        assert "Estigmatización añadida en una edición" in page.text and "<mark" in page.text
        verdict_score = db.execute("SELECT score FROM latest_classifications WHERE article_id = ?", [aid]).fetchone()[0]
        assert f'<dd class="score">{verdict_score:.2f}</dd>' in page.text  # the verdict's score, not 0.00

    asyncio.run(desk())

    import shutil
    import subprocess

    from monitor.errors import MonitorError

    try:  # the PDF lists the versions too (tests/test_dossier_pdf.py checks the rest, and fails in CI without it)
        build_dossier(db, zip_path, "Tlachinollan", None, pdf=True)
    except MonitorError:
        return
    with zipfile.ZipFile(zip_path) as z:
        (tmp_path / "d.pdf").write_bytes(z.read("dossier.pdf"))
    assert verify_dossier(zip_path).ok
    if shutil.which("pdftotext"):
        text = subprocess.run(["pdftotext", str(tmp_path / "d.pdf"), "-"], capture_output=True, text=True).stdout
        assert "Versión 2" in text and "Estigmatización retirada" in text



def test_a_flagged_page_taken_down_raises_smear_removed_once(make_server, db_path: Path) -> None:
    from monitor.alerts.config import AlertingSettings
    from monitor.classifier.registry import load_classifier

    classifier = load_classifier(str(Path(__file__).resolve().parents[1] / "classifiers" / "keyword-baseline"))
    site = make_server()
    site.add("/n/ataque.html", article_html("Reunión en la montaña", story_text(5)[:2] + [SMEAR]))
    feed = site.add("/feed.xml", rss([("n", site.url("/n/ataque.html"))]), content_type="application/rss+xml")
    config = config_for([{"url": feed}])
    db = store.connect(db_path)
    assert crawl_once(db, config, classifier, alerting=AlertingSettings()).flagged == 1
    site.add("/n/ataque.html", "<h1>No encontrada</h1>", status=404)
    first = recheck(db, config, classifier=classifier, alerting=AlertingSettings())
    second = recheck(db, config, classifier=classifier, alerting=AlertingSettings())
    assert (first.removed, second.removed) == (1, 1)
    rows = [tuple(r) for r in db.execute("SELECT kind, key FROM alerts WHERE kind = 'smear_removed'")]
    aid = db.execute("SELECT id FROM articles").fetchone()[0]
    assert rows == [("smear_removed", f"smear-removed:removed:{aid}")]
    payload = db.execute("SELECT payload FROM alerts WHERE kind = 'smear_removed'").fetchone()[0]
    assert "delincuentes" in payload and '"http_status": 404' in payload
