"""A crawl of the demo site and a WARC of its pages written with warcio, for the backfill tests and benchmark."""

from __future__ import annotations

import gzip
import io
import json
from pathlib import Path
from typing import Any

from warcio.statusandheaders import StatusAndHeaders
from warcio.warcwriter import WARCWriter

from monitor import store
from monitor.classifier.registry import load_classifier
from monitor.config import load_config
from monitor.demo.site import DemoServer, feeds_yaml
from monitor.pipeline import crawl_once

ROOT = Path(__file__).resolve().parents[1]
KEYWORD = str(ROOT / "classifiers" / "keyword-baseline")


def crawl_demo(folder: Path, classifier: str = KEYWORD) -> tuple[Path, Path]:
    """Crawl the demo site into ``folder/crawl.db`` (the feeds config built by ``feeds_yaml``): (db, feeds.yaml)."""
    feeds = folder / "feeds.yaml"
    db_path = folder / "crawl.db"
    with DemoServer() as site:
        feeds.write_text(feeds_yaml(site.base_url), encoding="utf-8")
        config = load_config(feeds)
        db = store.connect(db_path)
        crawl_once(db, config, load_classifier(classifier))
        db.close()
    return db_path, feeds


def crawled_pages(db_path: Path) -> list[dict[str, Any]]:
    """The crawl's captures of article pages: URL, status, headers, exact bytes, capture time."""
    db = store.connect(db_path)
    rows = [{**r, "headers": json.loads(r["headers"]), "body": gzip.decompress(r["body_gz"])}
            for r in db.query("SELECT c.final_url, c.status, c.headers, c.body_gz, c.captured_at FROM captures c "
                              "JOIN articles a ON a.capture_id = c.id ORDER BY c.id")]
    db.close()
    return rows


def write_warc(path: Path, pages: list[dict[str, Any]], extras: bool = False) -> Path:
    """Write the pages as warcio response records (warcio's defaults: gzip members, SHA-1 digests).

    With ``extras``: a request record, a non-HTML response, a 404, an empty page, then a truncated
    gzip member followed by one more good page (the reader must resume after the damage).
    """
    with open(path, "wb") as f:
        writer = WARCWriter(f, gzip=True)

        def response(url: str, status: str, headers: list, body: bytes, date: str) -> None:
            http = StatusAndHeaders(status, [tuple(h) for h in headers], protocol="HTTP/1.1")
            writer.write_record(writer.create_warc_record(url, "response", payload=io.BytesIO(body), length=len(body),
                                                          http_headers=http, warc_headers_dict={"WARC-Date": date}))

        last = pages[-1] if extras else None
        for page in pages[:-1] if extras else pages:
            response(page["final_url"], f"{page['status']} OK", page["headers"], page["body"], page["captured_at"])
        if extras:
            date = pages[0]["captured_at"]
            request = StatusAndHeaders("GET / HTTP/1.1", [("Host", "demo.invalid")], is_http_request=True)
            writer.write_record(writer.create_warc_record("http://demo.invalid/", "request", payload=io.BytesIO(b""),
                                                          length=0, http_headers=request))
            response("http://demo.invalid/feed.xml", "200 OK", [("Content-Type", "application/rss+xml")],
                     b"<?xml version='1.0'?><rss></rss>", date)
            response("http://demo.invalid/gone.html", "404 Not Found", [("Content-Type", "text/html")],
                     b"<html><body>gone</body></html>", date)
            response("http://demo.invalid/empty.html", "200 OK", [("Content-Type", "text/html")],
                     b"<html><body><p>hola</p></body></html>", date)
            damaged = io.BytesIO()
            WARCWriter(damaged, gzip=True).write_record(writer.create_warc_record(
                "http://demo.invalid/cut.html", "response", payload=io.BytesIO(pages[0]["body"]),
                length=len(pages[0]["body"]),
                http_headers=StatusAndHeaders("200 OK", [("Content-Type", "text/html")], protocol="HTTP/1.1")))
            f.write(damaged.getvalue()[: len(damaged.getvalue()) // 2])   # a truncated gzip member
            response(last["final_url"], f"{last['status']} OK", last["headers"], last["body"], last["captured_at"])
    return path
