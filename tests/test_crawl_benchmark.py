"""Smoke test of benchmarks/crawl_throughput.py at --quick size: both crawlers store every article, politely."""

from __future__ import annotations

import importlib
from pathlib import Path

from benchmarks.crawl_throughput import Network, run_baseline, run_ours

HOSTS, FEEDS, ITEMS = 4, 2, 10          # --quick
DELAY_S = 0.1
# The server's own request log must never show two requests to one host closer than the delay:
# HostPacer spaces the moments requests are let go, with a 10 % margin for send jitter.
GAP_TOLERANCE_S = 0.0


def test_quick_benchmark_stores_every_article_in_both_crawlers_and_paces_each_host(tmp_path: Path) -> None:
    with Network(HOSTS, FEEDS, ITEMS, latency_s=0.05) as net:
        assert len(net.feed_urls()) == HOSTS * FEEDS
        assert len({u.split("/")[2] for u in net.feed_urls()}) == HOSTS   # one port = one host per outlet
        base = run_baseline(net, tmp_path)
        try:
            ours = run_ours(net, tmp_path, DELAY_S, concurrency=16)
        finally:
            pageworker = importlib.import_module("monitor.pageworker")
            if hasattr(pageworker, "shutdown_pool"):
                pageworker.shutdown_pool()

    expected = HOSTS * FEEDS * ITEMS
    assert base.articles == ours.articles == expected, (base.articles, ours.articles, ours.split)
    assert base.distinct_texts == ours.distinct_texts == expected   # every article's text is its own
    assert ours.requests >= HOSTS * FEEDS + expected
    assert ours.min_gap_s >= DELAY_S - GAP_TOLERANCE_S, (
        f"{ours.min_gap_host} received two requests {ours.min_gap_s * 1000:.1f} ms apart (delay {DELAY_S * 1000:.0f} ms)")
    # rate: at most 10 requests per host in any 1 s (10 × delay) window, plus one on the window's edge
    assert ours.max_per_window <= 11, ours.max_per_window
