"""Feed parsing: RSS/Atom, ill-formed feeds keep their entries, non-feeds are named as such."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from monitor.errors import FeedError
from monitor.feeds import parse_feed

FIX = Path(__file__).parent / "fixtures" / "feeds"
SHARED_FEEDS = Path(__file__).resolve().parents[2] / "shared" / "data" / "feeds"


def test_rss_latin1_entries_links_and_dates() -> None:
    parsed = parse_feed((FIX / "rss_latin1.xml").read_bytes(), "https://diario.example/rss")
    assert parsed.title == "Diario Ejemplo"
    urls = [e.url for e in parsed.entries]
    assert urls == ["https://diario.example/opinion/campana?utm_source=rss", "https://diario.example/nota/relativa.html"]
    assert parsed.entries[0].title == "Opinión: la campaña"
    assert parsed.entries[0].published == "2026-11-02T16:00:00Z"
    assert parsed.warning is None


def test_atom() -> None:
    parsed = parse_feed((FIX / "atom.xml").read_bytes(), "https://diario.example/atom")
    assert [e.url for e in parsed.entries] == ["https://diario.example/columnas/1"]
    assert parsed.version.startswith("atom")


def test_ill_formed_feed_keeps_entries_and_warns() -> None:
    parsed = parse_feed((FIX / "truncated.xml").read_bytes(), "https://diario.example/roto")
    assert parsed.entries and parsed.entries[0].url == "https://diario.example/1"
    assert parsed.warning and "ill-formed feed" in parsed.warning


def test_newsml_is_not_a_feed() -> None:
    with pytest.raises(FeedError, match="not a feed"):
        parse_feed((FIX / "newsml.xml").read_bytes(), "https://x.example/newsml")


def test_html_page_is_not_a_feed() -> None:
    with pytest.raises(FeedError, match="got an HTML page, not a feed"):
        parse_feed((FIX / "page.html").read_bytes(), "https://x.example/")


def test_empty_document() -> None:
    with pytest.raises(FeedError, match="empty document"):
        parse_feed(b"  \n", "https://x.example/empty")


def _real_feed_files() -> list[Path]:
    if not SHARED_FEEDS.is_dir():
        return []
    files = [p for p in (SHARED_FEEDS / "spanish_news_recorded").rglob("*.xml")]
    files += [p for p in (SHARED_FEEDS / "realworld").rglob("*") if p.is_file() and p.suffix in (".xml", ".rss", ".atom", ".rdf", ".html", ".gz", "")]
    files += sorted((SHARED_FEEDS / "feedparser_tests" / "tests" / "illformed").rglob("*.xml"))
    return sorted(files)


@pytest.mark.skipif(not SHARED_FEEDS.is_dir(), reason="../shared/data/feeds is not present")
@pytest.mark.parametrize("path", _real_feed_files(), ids=lambda p: str(p.relative_to(SHARED_FEEDS)))
def test_real_documents_parse_or_fail_clearly(path: Path) -> None:
    """Every real document either yields a feed or raises FeedError with a reason: nothing else."""
    body = path.read_bytes()
    try:
        parsed = parse_feed(body, f"https://example.test/{path.name}")
    except FeedError as e:
        assert str(e).startswith("https://example.test/")
        assert any(k in str(e) for k in ("not a feed", "empty document", "ill-formed feed, no entries"))
        return
    assert all(e.url.startswith(("http://", "https://")) for e in parsed.entries)


@pytest.mark.skipif(not SHARED_FEEDS.is_dir(), reason="../shared/data/feeds is not present")
def test_real_newsml_reported_as_not_a_feed() -> None:
    path = SHARED_FEEDS / "spanish_news_recorded" / "jmanuelbr_chrome_extension" / "lavanguardia_newsml_1.xml"
    with pytest.raises(FeedError, match="not a feed"):
        parse_feed(path.read_bytes(), "https://lavanguardia.example/newsml")
