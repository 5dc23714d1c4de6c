"""Every real feed document under ../shared/data/feeds, served over loopback, goes through the feed
stage (fetch + decode + parse) with either entries or a clear FeedError/FetchError: nothing else."""

from __future__ import annotations

from pathlib import Path

import pytest

from monitor.config import Feed, FetchSettings
from monitor.errors import FeedError, FetchError
from monitor.fetch import Fetcher
from monitor.pipeline import _poll_one

SHARED_FEEDS = Path(__file__).resolve().parents[2] / "shared" / "data" / "feeds"
pytestmark = pytest.mark.skipif(not SHARED_FEEDS.is_dir(), reason="../shared/data/feeds is not present")


def test_every_real_document_is_parsed_or_rejected_with_a_reason(fixture_server) -> None:
    files = sorted(p for p in SHARED_FEEDS.rglob("*") if p.is_file() and p.suffix not in (".json", ".txt", ".md")
                   and "LICENSE" not in p.name)
    assert len(files) > 2000
    outcomes = {"entries": 0, "empty": 0, "rejected": 0}
    reasons: dict[str, str] = {}
    with Fetcher(FetchSettings(per_host_delay_s=0, retries=0, read_timeout_s=5,
                                     allow_private=(fixture_server.allow,))) as fetcher:
        for i, path in enumerate(files):
            route = f"/real/{i}/{path.name}"
            fixture_server.add(route, path.read_bytes(), content_type="application/xml")
            feed = Feed(id=f"real/{i}", outlet_id="real", url=fixture_server.url(route), section="news")
            try:
                _fetched, parsed = _poll_one(fetcher, feed, {})
            except (FeedError, FetchError) as e:
                outcomes["rejected"] += 1
                reasons[str(path.relative_to(SHARED_FEEDS))] = str(e)
                assert str(e).startswith(fixture_server.base)
                continue
            outcomes["entries" if parsed.entries else "empty"] += 1
    newsml = "spanish_news_recorded/jmanuelbr_chrome_extension/lavanguardia_newsml_1.xml"
    assert "not a feed" in reasons[newsml]
    # most of feedparser's own corpus are tiny synthetic documents whose entries carry no link
    assert outcomes["entries"] >= 200 and sum(outcomes.values()) == len(files), outcomes
