"""Tests for the offline demo news site (monitor.demo.site) served over loopback."""

from __future__ import annotations

import sys
import urllib.error
import urllib.request
from collections import Counter
from pathlib import Path
from urllib.parse import urlsplit

import feedparser
import pytest
import trafilatura
import yaml

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from monitor.demo.site import DemoServer, feeds_yaml, load_content  # noqa: E402

# Never route loopback requests through a proxy from the environment.
OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def fetch(url: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    """GET a URL; return status, headers and body, also for 3xx/4xx answers."""
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with OPENER.open(request, timeout=10) as resp:
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as err:
        with err:
            return err.code, dict(err.headers), err.read()


def norm(text: str) -> str:
    return " ".join(text.split())


@pytest.fixture(scope="module")
def server() -> DemoServer:
    with DemoServer(port=0) as srv:
        yield srv


@pytest.fixture(scope="module")
def content():
    return load_content()


@pytest.fixture(scope="module")
def regular_feeds(server, content) -> dict[str, feedparser.FeedParserDict]:
    """Every non-broken feed, fetched and parsed."""
    parsed = {}
    for outlet in content.outlets:
        for feed in outlet.feeds:
            if feed.broken:
                continue
            status, headers, body = fetch(server.base_url + feed.path)
            assert status == 200, feed.path
            parsed[feed.path] = feedparser.parse(body, response_headers={
                "content-type": headers["Content-Type"], "content-location": server.base_url + feed.path})
    return parsed


def test_content_mix(content) -> None:
    assert len(content.articles) >= 33
    kinds = Counter()
    for art in content.articles:
        words = sum(len(p.split()) for p in art.paragraphs)
        assert 5 <= len(art.paragraphs) <= 10, art.slug
        assert 250 <= words <= 600, (art.slug, words)
        assert isinstance(art.expected["stigmatising"], bool) and art.expected["note"], art.slug
        assert art.published.tzinfo is not None
        if art.expected["stigmatising"]:
            kinds["stigmatising"] += 1
        elif art.expected.get("voice") == "counter":
            kinds["counter"] += 1
        else:
            kinds["neutral"] += 1
    assert kinds["stigmatising"] >= 10 and kinds["counter"] >= 8 and kinds["neutral"] >= 12, kinds
    formats = {f.format for o in content.outlets for f in o.feeds}
    assert formats == {"rss", "atom"}


def test_regular_feeds_parse(regular_feeds, server, content) -> None:
    assert len(regular_feeds) >= 6
    total = 0
    for path, parsed in regular_feeds.items():
        assert parsed.bozo == 0, (path, parsed.get("bozo_exception"))
        assert parsed.entries, path
        for entry in parsed.entries:
            assert entry.link.startswith(server.base_url + "/"), entry.link
            assert entry.get("id") and entry.get("title") and entry.get("author") and entry.get("summary")
            assert entry.get("published_parsed") or entry.get("updated_parsed")
        total += len(parsed.entries)
    assert total >= 30
    # every article appears in exactly one regular feed
    links = [urlsplit(e.link).path for p in regular_feeds.values() for e in p.entries]
    assert {a.path for a in content.articles} <= set(links)


def test_feed_content_types(server, content) -> None:
    for outlet in content.outlets:
        for feed in outlet.feeds:
            status, headers, _ = fetch(server.base_url + feed.path)
            expected = "application/atom+xml" if feed.format == "atom" else "application/rss+xml"
            assert headers["Content-Type"] == f"{expected}; charset=utf-8"


def test_broken_feed(server, content) -> None:
    broken = [f for o in content.outlets for f in o.feeds if f.broken]
    assert len(broken) == 1
    status, _, body = fetch(server.base_url + broken[0].path)
    assert status == 200
    parsed = feedparser.parse(body)
    assert parsed.bozo == 1
    assert len(parsed.entries) >= 1  # a lenient parser recovers the items before the break


def test_dead_link(server, content, regular_feeds) -> None:
    dead = {d.path for d in content.dead_links}
    assert dead
    listed = {urlsplit(e.link).path for p in regular_feeds.values() for e in p.entries}
    assert dead <= listed
    for path in dead:
        status, headers, body = fetch(server.base_url + path)
        assert status == 404
        assert headers["Content-Type"].startswith("text/html")


def test_article_pages(server, content, regular_feeds) -> None:
    by_path = {a.path: a for a in content.articles}
    dead = {d.path for d in content.dead_links}
    checked = 0
    for parsed in regular_feeds.values():
        for entry in parsed.entries:
            path = urlsplit(entry.link).path
            if path in dead:
                continue
            status, headers, body = fetch(entry.link)
            assert status == 200, entry.link
            assert headers["Content-Type"] == "text/html; charset=utf-8"
            page = body.decode("utf-8")
            assert page.startswith("<!DOCTYPE html>") and "<article" in page
            assert f'<link rel="canonical" href="{entry.link}">' in page
            text = trafilatura.extract(page) or ""
            assert norm(by_path[path].paragraphs[0]) in norm(text), entry.link
            checked += 1
    assert checked == len(content.articles)


def test_script_text_is_escaped(server, content) -> None:
    art = next(a for a in content.articles if any("<script>alert(1)</script>" in p for p in a.paragraphs))
    _, _, body = fetch(server.base_url + art.path)
    page = body.decode("utf-8")
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "&lt;img src=x onerror=alert(2)&gt;" in page
    assert "<script>alert" not in page and "<img src=x" not in page


def test_conditional_get(server, content) -> None:
    url = server.base_url + content.outlets[0].feeds[0].path
    status, headers, body = fetch(url)
    assert status == 200 and body
    assert headers["ETag"] and headers["Last-Modified"]
    status, headers2, body2 = fetch(url, {"If-None-Match": headers["ETag"]})
    assert status == 304 and body2 == b""
    assert headers2["ETag"] == headers["ETag"]
    status, _, _ = fetch(url, {"If-Modified-Since": headers["Last-Modified"]})
    assert status == 304
    status, _, _ = fetch(url, {"If-None-Match": '"something-else"'})
    assert status == 200


def test_misc_pages(server, content) -> None:
    status, _, body = fetch(server.base_url + "/robots.txt")
    assert status == 200 and b"Allow: /" in body
    status, _, body = fetch(server.base_url + "/")
    assert status == 200 and all(o.home.encode() in body for o in content.outlets)
    for outlet in content.outlets:
        status, _, body = fetch(server.base_url + outlet.home)
        assert status == 200 and b'rel="alternate"' in body
    status, headers, _ = fetch(server.base_url + "/no/existe.html")
    assert status == 404 and headers["Content-Type"].startswith("text/html")


def test_feeds_yaml(server) -> None:
    doc = yaml.safe_load(feeds_yaml(server.base_url))
    assert doc["version"] == 1
    port = server.base_url.rsplit(":", 1)[1]
    assert doc["defaults"] == {"language": "es", "country": "MX", "per_host_delay_s": 0.05,
                               "allow_private": [f"127.0.0.1:{port}"]}   # exactly the demo server
    feeds = [f for o in doc["outlets"] for f in o["feeds"]]
    assert len(feeds) >= 6
    assert all(f["url"].startswith(server.base_url + "/") and f["section"] in {"news", "opinion"}
               for f in feeds)
    assert any(f.get("note") == "deliberately malformed demo feed" for f in feeds)
    for outlet in doc["outlets"]:
        assert outlet["scope"] in {"national", "regional"}
        assert ("state" in outlet) == (outlet["scope"] == "regional")
        assert outlet["tags"] == ["demo"]
