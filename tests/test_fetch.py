"""Fetching: bytes as served, hashes, size caps, timeouts, refused connections, retries."""

from __future__ import annotations

import gzip
import hashlib
import socket

import pytest

from monitor.config import FetchSettings
from monitor.errors import FetchError
from monitor.fetch import Fetcher, decode_body


def fast_settings(*servers: object, **kw: object) -> FetchSettings:
    """Quick settings allowing exactly ``servers`` (FixtureServer or "IP:PORT") on loopback."""
    allow = tuple(getattr(s, "allow", s) for s in servers)
    base = dict(connect_timeout_s=2, read_timeout_s=2, per_host_delay_s=0, retries=1, allow_private=allow)
    base.update(kw)
    return FetchSettings(**base)  # type: ignore[arg-type]


def test_sha256_is_of_the_bytes_served(fixture_server) -> None:
    body = "<html><body><p>Crónica de Ayotzinapa, año 11. ñ á é</p></body></html>".encode("utf-8")
    url = fixture_server.add("/hash.html", body)
    with Fetcher(fast_settings(fixture_server)) as f:
        got = f.fetch(url)
    assert got.body == fixture_server.sent["/hash.html"] == body
    assert got.sha256 == hashlib.sha256(body).hexdigest()
    assert got.status == 200 and got.captured_at.endswith("Z")


def test_gzip_body_is_kept_compressed_and_decodes(fixture_server) -> None:
    raw = gzip.compress(b"<html><p>comprimido</p></html>", mtime=0)
    url = fixture_server.add("/gz.html", raw, **{"Content-Encoding": "gzip"})
    with Fetcher(fast_settings(fixture_server)) as f:
        got = f.fetch(url)
    assert got.body == raw                      # as served on the wire
    assert got.sha256 == hashlib.sha256(raw).hexdigest()
    assert decode_body(got) == b"<html><p>comprimido</p></html>"


@pytest.mark.parametrize("status", [404, 500])
def test_http_errors_raise_with_status(fixture_server, status: int) -> None:
    with Fetcher(fast_settings(fixture_server, retries=0)) as f, pytest.raises(FetchError) as err:
        f.fetch(fixture_server.url(f"/status/{status}"))
    assert err.value.kind == "http" and err.value.status == status
    assert f"HTTP {status}" in str(err.value)


def test_too_large_declared(fixture_server) -> None:
    with Fetcher(fast_settings(fixture_server, max_bytes=1_000_000)) as f, pytest.raises(FetchError) as err:
        f.fetch(fixture_server.url("/huge?mb=20"))
    assert err.value.kind == "too_large"
    assert "exceeds max_bytes=1,000,000" in str(err.value)


def test_too_large_streamed_without_length(fixture_server) -> None:
    with Fetcher(fast_settings(fixture_server, max_bytes=500_000)) as f, pytest.raises(FetchError) as err:
        f.fetch(fixture_server.url("/huge?mb=20&nolength=1"))
    assert err.value.kind == "too_large" and "stopped reading" in str(err.value)


def test_stall_times_out(fixture_server) -> None:
    with Fetcher(fast_settings(fixture_server, read_timeout_s=0.5, retries=0)) as f, pytest.raises(FetchError) as err:
        f.fetch(fixture_server.url("/slow?seconds=5"))
    assert err.value.kind == "timeout"


def test_connection_refused() -> None:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there now
    with Fetcher(fast_settings(f"127.0.0.1:{port}", retries=0)) as f, pytest.raises(FetchError) as err:
        f.fetch(f"http://127.0.0.1:{port}/feed.xml")
    assert err.value.kind == "connection"
    assert "connection failed" in str(err.value)


def test_503_with_retry_after_is_retried(fixture_server) -> None:
    with Fetcher(fast_settings(fixture_server, retries=2)) as f:
        got = f.fetch(fixture_server.url("/flaky"))
    assert got.status == 200 and b"Recovered page" in got.body
    assert fixture_server.hits["/flaky"] == 2


def test_conditional_get_gives_304(fixture_server) -> None:
    url = fixture_server.add("/etag.xml", "<rss/>", content_type="application/rss+xml", ETag='"v1"')
    with Fetcher(fast_settings(fixture_server)) as f:
        first = f.fetch(url)
        second = f.fetch(url, headers={"If-None-Match": first.header("ETag")})
    assert first.status == 200 and second.status == 304 and second.body == b""
