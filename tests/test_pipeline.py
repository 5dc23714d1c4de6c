"""The crawl pipeline end to end on loopback servers: idempotence, failures, crash safety, Datasette."""

from __future__ import annotations

import hashlib
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from monitor import store
from monitor.classifier.registry import load_classifier
from monitor.config import parse_config
from monitor.pipeline import crawl_once

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def keyword() -> object:
    return load_classifier(ROOT / "classifiers" / "keyword-baseline")


def demo_config(site, **defaults: object):  # type: ignore[no-untyped-def]
    from monitor.demo.site import feeds_yaml

    data = yaml.safe_load(feeds_yaml(site.base_url))
    data["defaults"].update({"per_host_delay_s": 0, **defaults})
    return parse_config(data, "demo")


def test_second_crawl_adds_nothing(demo_site, db_path, keyword) -> None:
    db = store.connect(db_path)
    first = crawl_once(db, demo_config(demo_site), keyword)
    assert first.feeds_ok == 7 and first.feeds_failed == 0
    assert first.new_articles >= 30 and first.new_captures == first.new_articles
    assert first.classified == first.new_articles and first.flagged > 0
    second = crawl_once(db, demo_config(demo_site), keyword)
    assert (second.new_entries, second.new_articles, second.new_captures, second.classified) == (0, 0, 0, 0)
    counts = store.counts(db)
    assert counts["articles"] == counts["captures"] == first.new_articles
    runs = list(db.query("SELECT status, new_articles FROM runs ORDER BY id"))
    assert runs == [{"status": "ok", "new_articles": first.new_articles}, {"status": "ok", "new_articles": 0}]


def test_dead_link_and_broken_feed_are_recorded(demo_site, db_path, keyword) -> None:
    db = store.connect(db_path)
    summary = crawl_once(db, demo_config(demo_site), keyword)
    failures = list(db.query("SELECT stage, error_type, url, message FROM failures WHERE run_id = ?", [summary.run_id]))
    dead = [f for f in failures if f["stage"] == "fetch"]
    assert len(dead) == 1 and dead[0]["message"].endswith("HTTP 404")
    broken = [f for f in failures if f["error_type"] == "ill_formed"]
    assert broken and "ultima-hora" in broken[0]["url"] and "ill-formed feed" in broken[0]["message"]


def test_raw_capture_sha256_matches_bytes_served(demo_site, db_path) -> None:
    db = store.connect(db_path)
    crawl_once(db, demo_config(demo_site), None)
    rows = list(db.query("SELECT id, url, sha256 FROM captures"))
    assert rows
    for row in rows:
        path = "/" + row["url"].split("/", 3)[3]
        served = demo_site.site[path].body
        assert row["sha256"] == hashlib.sha256(served).hexdigest()
        assert store.capture_body(db, row["id"]) == served


def _free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def _page(text: str) -> str:
    return f"<html><head><title>{text}</title></head><body><article><h1>{text}</h1><p>" + (
        f"{text}: el texto de la nota tiene varias frases para que la extracción funcione. " * 8) + "</p></article></body></html>"


def test_each_failure_is_recorded_and_the_run_completes(fixture_server, db_path, keyword) -> None:
    s = fixture_server
    dead_port = _free_port()
    good = s.add("/f/good.html", _page("Nota buena"))
    items = {
        "good": good,
        "404": s.url("/status/404"),
        "500": s.url("/status/500"),
        "stall": s.url("/slow?seconds=30"),
        "huge": s.url("/huge?mb=20"),
        "pdf": s.add("/f/doc.pdf", b"%PDF-1.7 not html", content_type="application/pdf"),
        "refused": f"http://127.0.0.1:{dead_port}/nota.html",
    }
    rss = "<?xml version='1.0'?><rss version='2.0'><channel><title>t</title>" + "".join(
        f"<item><title>{k}</title><link>{u.replace('&', '&amp;')}</link></item>" for k, u in items.items()) + "</channel></rss>"
    feeds = {
        "ok": s.add("/f/feed.xml", rss, content_type="application/rss+xml"),
        "malformed": s.add("/f/malformed.xml", "<rss><channel><title>x</title><item><title>a</ti", content_type="application/rss+xml"),
        "feed500": s.url("/status/500"),
        "refused": f"http://127.0.0.1:{dead_port}/rss",
        "stall": s.url("/slow?seconds=30&feed=1"),
    }
    config = parse_config({
        "defaults": {"timeout_s": 1, "max_bytes": 5_000_000, "retries": 0, "per_host_delay_s": 0,
                     "allow_private": [s.allow, f"127.0.0.1:{dead_port}"]},
        "outlets": [{"name": "Fixture", "feeds": [{"url": u, "section": "news"} for u in feeds.values()]}],
    })
    started = time.monotonic()
    summary = crawl_once(store.connect(db_path), config, keyword)
    assert time.monotonic() - started < 25  # the 30-second stalls were cut by the 1 s read timeout
    assert summary.feeds_ok == 1 and summary.feeds_failed == 4
    db = store.connect(db_path)
    failures = {(f["stage"], f["url"]): f for f in db.query("SELECT * FROM failures")}

    def message(stage: str, url: str) -> str:
        return failures[(stage, url)]["message"]

    assert "HTTP 404" in message("fetch", items["404"])
    assert "HTTP 500" in message("fetch", items["500"])
    assert failures[("fetch", items["stall"])]["error_type"] == "timeout"
    assert "exceeds max_bytes=5,000,000" in message("fetch", items["huge"])
    assert "connection failed" in message("fetch", items["refused"])
    assert "not an HTML page (Content-Type application/pdf)" in message("extract", items["pdf"])
    assert "ill-formed feed, no entries recovered" in message("feed", feeds["malformed"])
    assert "HTTP 500" in message("feed", feeds["feed500"])
    assert "connection failed" in message("feed", feeds["refused"])
    assert failures[("feed", feeds["stall"])]["error_type"] == "timeout"
    titles = [r["title"] for r in db.query("SELECT title FROM articles")]
    assert titles == ["Nota buena"]
    # the PDF capture is kept as evidence even though it has no article text
    assert db.execute("SELECT count(*) FROM captures WHERE content_type = 'application/pdf'").fetchone()[0] == 1
    health = {r["url"]: r for r in db.query("SELECT url, consecutive_failures, last_error FROM feeds")}
    assert health[feeds["feed500"]]["consecutive_failures"] == 1 and "HTTP 500" in health[feeds["feed500"]]["last_error"]


def test_sigkill_midway_then_rerun_completes_without_duplicates(demo_site, tmp_path) -> None:
    from monitor.demo.site import feeds_yaml

    data = yaml.safe_load(feeds_yaml(demo_site.base_url))
    data["defaults"].update({"per_host_delay_s": 0.25, "concurrency": 2})
    feeds = tmp_path / "feeds.yaml"
    feeds.write_text(yaml.safe_dump(data))
    db_file = tmp_path / "crash.db"
    cmd = [sys.executable, "-m", "monitor.cli", "--db", str(db_file), "--feeds", str(feeds),
           "--classifier", str(ROOT / "classifiers" / "keyword-baseline"), "crawl", "--once", "--silent"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    stored = 0
    while time.monotonic() < deadline:
        time.sleep(0.3)
        if db_file.exists():
            try:
                stored = store.connect(db_file, migrate=False).execute("SELECT count(*) FROM articles").fetchone()[0]
            except Exception:
                stored = 0
            if stored >= 5:
                break
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert 5 <= stored < 36, "the kill must land midway"
    db = store.connect(db_file)
    assert db.execute("SELECT count(*) FROM runs WHERE status = 'running'").fetchone()[0] == 1  # the killed run
    rerun = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert rerun.returncode == 0, rerun.stderr
    counts = store.counts(db)
    listed = db.execute("SELECT count(*) FROM entries").fetchone()[0]
    assert counts["articles"] == listed - 1  # every listed entry stored, except the dead link
    assert counts["captures"] == counts["articles"]  # no duplicate capture
    assert db.execute("SELECT count(*) FROM (SELECT url FROM articles GROUP BY url HAVING count(*) > 1)").fetchone()[0] == 0
    assert db.execute("SELECT count(*) FROM classifications").fetchone()[0] == counts["articles"]
    orphans = db.execute("SELECT count(*) FROM articles a LEFT JOIN captures c ON c.id = a.capture_id WHERE c.id IS NULL")
    assert orphans.fetchone()[0] == 0


def test_datasette_json_api_returns_flagged_article_with_passage(demo_site, db_path, keyword) -> None:
    import asyncio

    from monitor.serve import build_datasette

    crawl_once(store.connect(db_path), demo_config(demo_site), keyword)

    from monitor.review.accounts import hash_password, new_token

    token, digest = new_token()
    accounts = store.connect_accounts(db_path)
    store.add_user(accounts, "ana", "analyst", hash_password("contraseña-larga"))
    store.add_token(accounts, "ana", digest)

    async def fetch() -> dict:
        ds = build_datasette(db_path)
        await ds.invoke_startup()
        url = f"/{db_path.stem}/triage.json?_shape=objects&outlet="
        assert (await ds.client.get(url)).status_code in (302, 403)   # anonymous: nothing
        response = await ds.client.get(url, headers={"Authorization": f"Bearer {token}"})
        assert response.status_code == 200
        return response.json()

    rows = asyncio.run(fetch())["rows"]
    assert rows and rows[0]["score"] >= rows[-1]["score"]
    smear = next(r for r in rows if "Tlachinollan" in r["title"] and "defender a delincuentes" in r["title"])
    assert "delincuentes" in smear["passages"]
    assert smear["url"].startswith(demo_site.base_url)
