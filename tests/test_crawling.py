"""Crawling the real web politely: per-host limits and delays, robots.txt, backoff, dedup, stories, sections."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from monitor import store
from monitor.config import parse_config
from monitor.hostqueue import run_by_host
from monitor.pipeline import crawl_once
from monitor.sections import classify_section, is_opinion_url
from tests.httpserver import allow_private
from tests.pages import article_html, rss, story_text


def config_for(feeds: list[dict], **defaults: object):  # type: ignore[no-untyped-def]
    """A config of ``feeds`` (dicts with url, optional outlet/section/kind ...) allowed to reach exactly their own
    loopback servers (pass ``allow_private`` to allow others, e.g. a server only the feed links to)."""
    base = {"per_host_delay_s": 0, "retries": 0, "connect_timeout_s": 2, "read_timeout_s": 5,
            "failure_backoff_s": 0, "extract_workers": 1, "allow_private": allow_private(*(f["url"] for f in feeds))}
    base.update(defaults)
    outlets: dict[str, list[dict]] = {}
    for f in feeds:
        outlets.setdefault(f.pop("outlet", "diario-prueba"), []).append({"section": "news", **f})
    return parse_config({"defaults": base, "outlets": [{"name": name, "id": name, "feeds": fs}
                                                       for name, fs in outlets.items()]}, "test feeds")


def publish(server, prefix: str, n: int, first_variant: int = 1) -> str:  # type: ignore[no-untyped-def]
    """Serve a feed of ``n`` distinct articles under ``prefix``; returns the feed URL."""
    items = []
    for i in range(n):
        path = f"{prefix}/nota-{i}.html"
        server.add(path, article_html(f"Nota {i} de {prefix}", story_text(first_variant + i)))
        items.append((f"Nota {i}", server.url(path)))
    return server.add(f"{prefix}/feed.xml", rss(items), content_type="application/rss+xml")


def request_gaps(server, prefix: str = "") -> list[float]:  # type: ignore[no-untyped-def]
    times = sorted(t for t, path in server.log if path.startswith(prefix) and not path.startswith("client"))
    return [b - a for a, b in zip(times, times[1:])]


def test_no_host_gets_two_requests_closer_than_its_delay(make_server, db_path: Path) -> None:
    a, b = make_server(), make_server()
    feeds = [{"url": publish(a, "/a", 6), "outlet": "uno"}, {"url": publish(b, "/b", 6), "outlet": "dos"}]
    delay = 0.25
    started = time.monotonic()
    summary = crawl_once(store.connect(db_path), config_for(feeds, per_host_delay_s=delay, concurrency=8), None)
    elapsed = time.monotonic() - started
    assert summary.new_articles == 12
    for server in (a, b):
        assert len(server.log) == 8  # robots.txt, the feed, 6 pages
        assert min(request_gaps(server)) >= delay
    # the two hosts were crawled side by side, not one after the other
    assert elapsed < 2 * 7 * delay


def test_robots_txt_disallow_is_respected(make_server, db_path: Path) -> None:
    site = make_server()
    site.add("/robots.txt", "User-agent: *\nDisallow: /privado/\n", content_type="text/plain")
    site.add("/privado/nota.html", article_html("Privada", story_text(3)))
    site.add("/publico/nota.html", article_html("Pública", story_text(4)))
    feed = site.add("/feed.xml", rss([("Privada", site.url("/privado/nota.html")),
                                      ("Pública", site.url("/publico/nota.html"))]), content_type="application/rss+xml")
    db = store.connect(db_path)
    summary = crawl_once(db, config_for([{"url": feed}]), None)
    assert summary.new_articles == 1
    assert "/privado/nota.html" not in site.hits
    failure = db.execute("SELECT error_type, message FROM failures WHERE url LIKE '%privado%'").fetchone()
    assert failure[0] == "robots" and "disallowed by robots.txt" in failure[1]
    assert site.hits["/robots.txt"] == 1  # fetched once, cached


def test_robots_txt_for_our_agent_and_disabled(make_server, db_path: Path) -> None:
    site = make_server()
    site.add("/robots.txt", "User-agent: smear-monitor\nDisallow: /\n\nUser-agent: *\nAllow: /\n", content_type="text/plain")
    feed = publish(site, "/x", 1)
    db = store.connect(db_path)
    summary = crawl_once(db, config_for([{"url": feed}]), None)
    assert summary.feeds_failed == 1 and "/x/feed.xml" not in site.hits
    summary = crawl_once(db, config_for([{"url": feed}], respect_robots=False), None)
    assert summary.feeds_ok == 1 and summary.new_articles == 1


def test_a_slow_host_does_not_hold_the_others() -> None:
    """Dispatcher: per-host cap, and the fast host finishes while the slow one is still busy."""
    in_flight: dict[str, int] = {}
    peak: dict[str, int] = {}
    finished: list[tuple[str, float]] = []
    lock = threading.Lock()

    def work(url: str) -> str:
        host = url.split("/")[2]
        with lock:
            in_flight[host] = in_flight.get(host, 0) + 1
            peak[host] = max(peak.get(host, 0), in_flight[host])
        time.sleep(0.5 if host == "slow" else 0.01)
        with lock:
            in_flight[host] -= 1
            finished.append((host, time.monotonic()))
        return url

    urls = [f"http://slow/{i}" for i in range(8)] + [f"http://fast/{i}" for i in range(20)]
    results = list(run_by_host(urls, lambda u: u, work, workers=4, per_host=2))
    assert len(results) == 28 and all(f.result() == u for u, f in results)
    assert peak == {"slow": 2, "fast": 2}
    last_fast = max(t for h, t in finished if h == "fast")
    last_slow = max(t for h, t in finished if h == "slow")
    assert last_fast < last_slow - 1.0


def test_stop_request_leaves_the_rest_queued() -> None:
    stop = threading.Event()
    done: list[str] = []

    def work(url: str) -> str:
        time.sleep(0.05)
        stop.set()
        return url

    for url, future in run_by_host([f"http://h{i}/" for i in range(10)], lambda u: u, work, workers=2,
                                   should_stop=stop.is_set):
        done.append(future.result())
    assert 1 <= len(done) <= 2


def test_failing_feed_backs_off_and_is_reported(make_server, db_path: Path) -> None:
    site = make_server()
    good = publish(site, "/ok", 1)
    db = store.connect(db_path)
    config = config_for([{"url": site.url("/status/500")}, {"url": good}], failure_backoff_s=600)
    first = crawl_once(db, config, None)
    assert first.feeds_failed == 1 and first.feeds_skipped == 0
    row = db.execute("SELECT consecutive_failures, next_poll_after FROM feeds WHERE url LIKE '%/status/500'").fetchone()
    assert row[0] == 1 and row[1] > first_run_time(db)
    hits = site.hits["/status/500"]
    second = crawl_once(db, config, None)
    assert second.feeds_skipped == 1 and second.feeds_ok == 1 and "backing off 1" in second.line()
    assert site.hits["/status/500"] == hits  # not retried hot
    health = {h["url"]: h for h in store.feed_health(db)}
    assert health[site.url("/status/500")]["backing_off"] == 1


def first_run_time(db) -> str:  # type: ignore[no-untyped-def]
    return db.execute("SELECT started_at FROM runs ORDER BY id LIMIT 1").fetchone()[0]


def test_same_article_under_another_url_is_one_row(make_server, db_path: Path) -> None:
    site = make_server()
    canonical = site.url("/nota/puente.html")
    site.add("/nota/puente.html", article_html("Se derrumba un puente", story_text(0), canonical=canonical))
    site.add("/amp/nota/puente.html", article_html("Se derrumba un puente", story_text(0), canonical=canonical))
    feed = site.add("/feed.xml", rss([("Puente", canonical), ("Puente AMP", site.url("/amp/nota/puente.html?utm_source=tw"))]),
                    content_type="application/rss+xml")
    db = store.connect(db_path)
    summary = crawl_once(db, config_for([{"url": feed}]), None)
    assert summary.new_articles == 1 and summary.duplicates == 1 and summary.new_captures == 2
    assert db.execute("SELECT count(*) FROM captures WHERE article_id = (SELECT id FROM articles)").fetchone()[0] == 2
    statuses = sorted(r[0] for r in db.execute("SELECT status FROM entries"))
    assert statuses == ["duplicate", "stored"]


def test_syndicated_copies_share_a_story(make_server, db_path: Path) -> None:
    one, two, three = make_server(), make_server(), make_server()
    original = story_text(0)
    one.add("/n/1.html", article_html("Se derrumba puente peatonal; hay cinco heridos", original))
    # the same wire text, word for word, in another outlet
    two.add("/n/2.html", article_html("Cinco heridos por derrumbe de puente", original))
    # an edited copy: new lead paragraph, one paragraph dropped, a credit line
    edited = ["CIUDAD DE MÉXICO (Agencia).— Cinco personas heridas dejó la caída de un puente peatonal."] + \
        original[:3] + original[4:] + ["Con información de agencias."]
    three.add("/n/3.html", article_html("Cae puente en la zona oriente", edited))
    three.add("/n/4.html", article_html("Cultura anuncia conciertos", story_text(9)))
    feeds = [{"url": one.add("/f.xml", rss([("a", one.url("/n/1.html"))])), "outlet": "uno"},
             {"url": two.add("/f.xml", rss([("b", two.url("/n/2.html"))])), "outlet": "dos"},
             {"url": three.add("/f.xml", rss([("c", three.url("/n/3.html")), ("d", three.url("/n/4.html"))])),
              "outlet": "tres"}]
    db = store.connect(db_path)
    # one feed at a time, so "first seen" order is known
    for f in feeds:
        crawl_once(db, config_for([dict(f)]), None)
    rows = {r["outlet_id"]: r for r in db.query("SELECT outlet_id, id, story_id, duplicate_of, title FROM articles")}
    assert len(list(db.query("SELECT id FROM articles"))) == 4
    story = rows["uno"]["story_id"]
    assert story == rows["uno"]["id"]
    assert rows["dos"]["story_id"] == story and rows["dos"]["duplicate_of"] == rows["uno"]["id"]
    by_title = {r["title"]: r for r in db.query("SELECT title, story_id, duplicate_of FROM articles")}
    assert by_title["Cae puente en la zona oriente"]["story_id"] == story
    assert by_title["Cae puente en la zona oriente"]["duplicate_of"] is None
    assert by_title["Cultura anuncia conciertos"]["story_id"] != story


def test_opinion_detected_from_url_and_byline(make_server, db_path: Path) -> None:
    site = make_server()
    site.add("/opinion/columna-1.html", article_html("Lo que no se dice", story_text(5), author="Lucía Pérez Garza"))
    site.add("/politica/nota-1.html", article_html("Nota política", story_text(6), author="Redacción"))
    feed = site.add("/feed.xml", rss([("col", site.url("/opinion/columna-1.html")),
                                      ("nota", site.url("/politica/nota-1.html"))]), content_type="application/rss+xml")
    db = store.connect(db_path)
    crawl_once(db, config_for([{"url": feed}]), None)
    rows = {r["title"]: (r["section"], r["columnist"]) for r in db.query("SELECT title, section, columnist FROM articles")}
    assert rows["Lo que no se dice"] == ("opinion", "Lucía Pérez Garza")
    assert rows["Nota política"] == ("news", "")


def test_section_rules() -> None:
    assert is_opinion_url("https://www.eluniversal.com.mx/opinion/fulano/columna")
    assert is_opinion_url("https://www.jornada.com.mx/2026/11/20/opinión/014a1pol")
    assert is_opinion_url("https://www.milenio.com/opinion/x/y") and is_opinion_url("https://x.mx/columnas/abc")
    assert not is_opinion_url("https://x.mx/politica/opinion-publica-dividida")
    assert classify_section("opinion", "https://x.mx/a", "Por María Gómez | El Diario", "") == ("opinion", "María Gómez")
    assert classify_section("news", "https://x.mx/a", "Juan", "") == ("news", "")


def test_database_of_the_first_schema_is_upgraded(tmp_path: Path) -> None:
    import sqlite_utils

    path = tmp_path / "old.db"
    old = sqlite_utils.Database(str(path))
    old.execute("CREATE TABLE _migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL)")
    store.MIGRATIONS[0][1](old)
    old.execute("INSERT INTO _migrations VALUES (1, 'initial schema', '2026-11-01T00:00:00Z')")
    old.conn.commit()
    old.close()
    db = store.connect(path)
    assert store.schema_version(db) == len(store.MIGRATIONS)
    assert {"story_id", "removed_at", "edits"} <= set(db["articles"].columns_dict)
    assert "article_versions" in db.table_names()


def test_news_sitemap_index_source(make_server, db_path: Path) -> None:
    site = make_server()
    for i in range(3):
        site.add(f"/n/{i}.html", article_html(f"Nota {i}", story_text(40 + i)))
    ns = 'xmlns="http://www.sitemaps.org/schemas/sitemap/0.9" xmlns:news="http://www.google.com/schemas/sitemap-news/0.9"'
    urls = "".join(f"<url><loc>{site.url(f'/n/{i}.html')}</loc><news:news><news:publication_date>2026-11-2{i}T10:00:00Z"
                   f"</news:publication_date><news:title>Nota {i}</news:title></news:news></url>" for i in range(3))
    site.add("/sm/news.xml", f'<?xml version="1.0"?><urlset {ns}>{urls}</urlset>', content_type="application/xml")
    index = (f'<?xml version="1.0"?><sitemapindex xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">'
             f'<sitemap><loc>{site.url("/sm/news.xml")}</loc></sitemap><sitemap><loc>{site.url("/sm/gone.xml")}</loc>'
             f'</sitemap></sitemapindex>')
    feed = site.add("/sm/index.xml", index, content_type="application/xml")
    db = store.connect(db_path)
    summary = crawl_once(db, config_for([{"url": feed, "kind": "sitemap"}]), None)
    assert summary.feeds_ok == 1 and summary.new_articles == 3
    warning = db.execute("SELECT message FROM failures WHERE error_type = 'ill_formed'").fetchone()[0]
    assert "child sitemap skipped" in warning and "gone.xml" in warning
    assert [r[0] for r in db.execute("SELECT published FROM entries ORDER BY published DESC")][0].startswith("2026-11-22")


def test_database_from_another_version_is_refused_clearly(tmp_path: Path) -> None:
    import pytest

    from monitor.errors import DatabaseError

    path = tmp_path / "other.db"
    store.connect(path).close()
    import sqlite3

    con = sqlite3.connect(path)
    con.execute("UPDATE _migrations SET name = 'review desk: user accounts and API tokens' WHERE version = 3")
    con.commit()
    con.close()
    with pytest.raises(DatabaseError, match="migration 3 is 'review desk: user accounts and API tokens'"):
        store.connect(path)


def test_feed_author_reaches_the_article_and_its_columnist(make_server, tmp_path: Path) -> None:
    """A feed item's dc:creator is the author when the page's <meta> has none (also in worker processes)."""
    site = make_server()
    links = []
    for i in range(8):   # 8 pages: enough for the extraction process pool
        page = article_html(f"Opinión {i}", story_text(i + 1)).replace('<meta name="author" content="">', "").replace(
            "<h1>", '<div class="author">Por Redacción Web</div><h1>')
        links.append((f"Opinión {i}", site.add(f"/opinion/col-{i}.html", page)))
    items = "".join(f"<item><title>{t}</title><link>{u}</link><guid>{u}</guid>"
                    f"<dc:creator>Columnista Invitada</dc:creator></item>" for t, u in links)
    feed = site.add("/feed.xml", '<?xml version="1.0" encoding="utf-8"?><rss version="2.0" '
                    'xmlns:dc="http://purl.org/dc/elements/1.1/"><channel><title>Opinión</title>'
                    f"<link>{site.url('/')}</link><description>x</description>{items}</channel></rss>",
                    content_type="application/rss+xml")
    db = store.connect(tmp_path / "monitor.db")
    summary = crawl_once(db, config_for([{"url": feed, "section": "opinion"}], extract_workers=2))
    assert summary.new_articles == 8, summary.line()
    rows = db.execute("SELECT author, columnist FROM articles").fetchall()
    assert rows == [("Columnista Invitada", "Columnista Invitada")] * 8
