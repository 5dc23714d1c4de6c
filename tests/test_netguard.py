"""The crawler cannot be turned inward (SSRF) or stalled: the address policy, DNS pinning, the total deadline.

Everything runs against real loopback servers; the only stand-in is a rebinding DNS answer for one
made-up name (``rebind.test``), since a test cannot run a DNS server the system resolver asks.
"""

from __future__ import annotations

import ipaddress
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from monitor import store
from monitor.config import FetchSettings, parse_config
from monitor.errors import ConfigError, FetchError
from monitor.fetch import Fetcher
from monitor.netguard import (AddressPolicy, GuardedBackend, GuardedTransport, RefusedAddress, address_kind,
                              parse_allow_entry, request_deadline)
from monitor.pipeline import crawl_once
from tests.httpserver import FixtureServer
from tests.pages import article_html, rss, story_text
from tests.test_crawling import config_for

REFUSED = {
    "127.0.0.1": "a loopback address", "127.255.0.9": "a loopback address", "::1": "a loopback address",
    "::ffff:127.0.0.1": "a loopback address", "0.0.0.0": "an unspecified address", "::": "an unspecified address",
    "169.254.169.254": "the cloud metadata service", "169.254.1.1": "a link-local address",
    "fe80::1": "a link-local address", "10.1.2.3": "a private address", "172.16.0.1": "a private address",
    "192.168.1.1": "a private address", "fd00::1": "a private address", "fdab:cd::7": "a private address",
    "::ffff:10.0.0.1": "a private address", "224.0.0.1": "a multicast address", "ff02::1": "a multicast address",
    "240.0.0.1": "a reserved address", "100.100.100.200": "a non-public address",
    "64:ff9b::a9fe:a9fe": "the cloud metadata service",   # NAT64 for 169.254.169.254
}
PUBLIC = ["8.8.8.8", "1.1.1.1", "2001:4860:4860::8888", "64:ff9b::808:808", "::ffff:8.8.8.8"]


# --------------------------------------------------------------------------- the address policy

@pytest.mark.parametrize("address,kind", REFUSED.items())
def test_non_public_addresses_are_refused(address: str, kind: str) -> None:
    reason = AddressPolicy().refusal(address, 80)
    assert reason is not None and kind in reason
    assert kind in (address_kind(ipaddress.ip_address(address)) or "")


@pytest.mark.parametrize("address", PUBLIC)
def test_public_addresses_pass(address: str) -> None:
    assert AddressPolicy().refusal(address, 443) is None


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "2130706433", "0x7f.0.0.1", "127.1", "017700000001",
                                  "[::ffff:127.0.0.1]", "[::1]", "0"])
def test_every_spelling_of_an_inward_url_is_refused_before_connecting(host: str) -> None:
    with pytest.raises(RefusedAddress) as err:
        AddressPolicy().check_url(f"http://{host}:8765/secret")
    reason = err.value.reason
    assert "allow it in defaults.allow_private" in reason and ("loopback" in reason or "unspecified" in reason)
    if host == "localhost":   # a DNS name: the message says what it resolved to
        assert reason.startswith("localhost resolves to 127.0.0.1, a loopback address")
    if host == "2130706433":
        assert reason.startswith("2130706433 is 127.0.0.1, a loopback address")


def test_the_refusal_message_names_the_address_and_the_fix() -> None:
    assert AddressPolicy().refusal("127.0.0.1", 8765) == (
        '127.0.0.1 is a loopback address; allow it in defaults.allow_private (e.g. "127.0.0.1:8765")')
    assert AddressPolicy().refusal("::1", 8080).endswith('(e.g. "[::1]:8080")')
    metadata = AddressPolicy().refusal("169.254.169.254", 80)
    assert metadata is not None and "credentials" in metadata and "allow it" not in metadata  # never suggested


def test_ip_literals_are_checked_without_dns_and_names_only_when_resolving() -> None:
    policy = AddressPolicy()
    with pytest.raises(RefusedAddress):
        policy.check_url("http://0x7f.0.0.1/x", resolve=False)
    policy.check_url("http://localhost/x", resolve=False)   # a name: left to the connection, which resolves it
    with pytest.raises(RefusedAddress):
        policy.check_url("http://localhost/x")
    policy.check_url("http://name-that-does-not-resolve.invalid/x")   # fails later as a connection error


def test_allow_entries_allow_exactly_what_they_name() -> None:
    policy = AddressPolicy.from_entries(["127.0.0.1:8765", "10.20.0.0/16", "[::1]:8080", "fd00:1::/32", "192.168.5.5"])
    assert policy.refusal("127.0.0.1", 8765) is None
    assert policy.refusal("127.0.0.1", 8766) is not None          # another port of the same address
    assert policy.refusal("127.0.0.2", 8765) is not None          # another loopback address
    assert policy.refusal("::ffff:127.0.0.1", 8765) is None       # the same address, IPv4-mapped
    assert policy.refusal("10.20.255.1", 22) is None and policy.refusal("10.21.0.1", 80) is not None
    assert policy.refusal("::1", 8080) is None and policy.refusal("::1", 80) is not None
    assert policy.refusal("fd00:1:2::3", 80) is None and policy.refusal("fd00:2::3", 80) is not None
    assert policy.refusal("192.168.5.5", 1) is None and policy.refusal("192.168.5.6", 1) is not None
    assert policy.refusal("169.254.169.254", 80) is not None


@pytest.mark.parametrize("entry,message", [
    ("localhost:8765", "not an IP address"), ("10.20.0.1/16", "did you mean 10.20.0.0/16?"),
    ("10.0.0.0/8:80", "a network cannot have a port"), ("127.0.0.1:0", "not a number from 1 to 65535"),
    ("127.0.0.1:http", "not a number from 1 to 65535"), ("[::1", "unclosed '['"), ("[::1]8080", "expected ':PORT'"),
    ("", "is empty"), ("fe80::1%eth0", "zone index"),
])
def test_bad_allow_entries_are_named(entry: str, message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("?", r"\?").replace("[", r"\[")):
        parse_allow_entry(entry)


def test_config_validates_allow_private_and_max_request_s() -> None:
    feeds = [{"name": "Diario", "feeds": [{"url": "https://diario.example/feed", "section": "news"}]}]
    with pytest.raises(ConfigError) as err:
        parse_config({"defaults": {"allow_private": ["127.0.0.1:8765", "intranet:80", 8080, "10.0.0.1/8"],
                                   "max_request_s": 0}, "outlets": feeds}, "t.yaml")
    problems = err.value.problems
    assert any(p.startswith("defaults.allow_private[1]: 'intranet:80': not an IP address") for p in problems), problems
    assert any(p.startswith("defaults.allow_private[2]: must be a string") and "8080" in p for p in problems)
    assert any(p.startswith("defaults.allow_private[3]: '10.0.0.1/8': has host bits set") for p in problems)
    assert "defaults.max_request_s: must be more than 0 (seconds)" in problems
    assert not any("allow_private[0]" in p for p in problems)
    with pytest.raises(ConfigError, match=r"defaults.allow_private: must be a list"):
        parse_config({"defaults": {"allow_private": "127.0.0.1"}, "outlets": feeds})
    config = parse_config({"defaults": {"allow_private": ["[::1]:8080", "10.20.0.0/16"], "max_request_s": 5},
                           "outlets": feeds})
    assert config.fetch.allow_private == ("[::1]:8080", "10.20.0.0/16") and config.fetch.max_request_s == 5.0
    default = parse_config({"outlets": feeds}).fetch
    assert default.allow_private == () and default.max_request_s == 60.0


def test_monitor_check_shows_the_allowed_addresses_and_warns_of_refused_feeds(tmp_path: Path) -> None:
    import yaml
    from click.testing import CliRunner

    from monitor.cli import cli

    feeds = tmp_path / "feeds.yaml"
    feeds.write_text(yaml.safe_dump({"defaults": {"allow_private": ["127.0.0.1:8765"]}, "outlets": [
        {"name": "Interno", "feeds": [{"url": "http://127.0.0.1:8765/rss", "section": "news"},
                                      {"url": "http://10.0.0.7/rss", "section": "news"}]}]}))
    result = CliRunner().invoke(cli, ["--feeds", str(feeds), "--classifier", "keyword-baseline", "check",
                                      "--schedules", str(tmp_path / "none")])
    assert result.exit_code == 0, result.output
    assert "allow_private: the crawler may reach 127.0.0.1:8765" in result.output
    assert "http://10.0.0.7/rss) will be refused: 10.0.0.7 is a private address" in result.output
    assert "8765/rss) will be refused" not in result.output


# --------------------------------------------------------------------------- DNS: resolved once, pinned

@pytest.fixture
def rebinding_dns(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict]:
    """``rebind.test`` answers ``answers[min(n, len - 1)]`` to the n-th query (0-based); other names resolve as usual."""
    state: dict = {"answers": ["127.0.0.1"], "queries": 0}
    real = socket.getaddrinfo

    def getaddrinfo(host, port, *args, **kwargs):  # type: ignore[no-untyped-def]
        if host != "rebind.test":
            return real(host, port, *args, **kwargs)
        ip = state["answers"][min(state["queries"], len(state["answers"]) - 1)]
        state["queries"] += 1
        return [(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", (ip, int(port or 0)))]

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    yield state


@pytest.fixture
def twin_servers() -> Iterator[tuple[FixtureServer, FixtureServer]]:
    """Two servers on one port: 127.0.0.1 (the allowed outlet) and 127.0.0.2 (an internal service)."""
    a = FixtureServer()
    b = FixtureServer("127.0.0.2", a.server_address[1])
    for s in (a, b):
        s.thread.start()
        s.add("/page.html", article_html(f"Servidor {s.server_address[0]}", story_text(1)))
    yield a, b
    for s in (a, b):
        s.shutdown()
        s.server_close()


def test_the_connection_goes_to_the_checked_address(rebinding_dns: dict, twin_servers) -> None:
    """The backend resolves once and connects to that address: a second answer cannot swap it."""
    a, b = twin_servers
    port = a.server_address[1]
    rebinding_dns["answers"] = ["127.0.0.1", "127.0.0.2"]   # first the allowed server, then the internal one
    backend = GuardedBackend(AddressPolicy.from_entries([a.allow]))
    stream = backend.connect_tcp("rebind.test", port, timeout=2)
    try:
        assert stream.get_extra_info("server_addr") == ("127.0.0.1", port)
    finally:
        stream.close()
    assert rebinding_dns["queries"] == 1   # resolved once; the socket was given the checked address


def test_a_fetch_is_pinned_and_keeps_the_host_name(rebinding_dns: dict, twin_servers) -> None:
    a, b = twin_servers
    port = a.server_address[1]
    # the pre-flight check and the connection's check see 127.0.0.1; any later query would get 127.0.0.2
    rebinding_dns["answers"] = ["127.0.0.1", "127.0.0.1", "127.0.0.2"]
    with Fetcher(FetchSettings(per_host_delay_s=0, retries=0, respect_robots=False, allow_private=(a.allow,))) as f:
        got = f.fetch(f"http://rebind.test:{port}/page.html")
    assert b"Servidor 127.0.0.1" in got.body and b.hits == {}
    assert rebinding_dns["queries"] == 2
    assert a.host_headers == [f"rebind.test:{port}"]   # the Host header names the site, not the address


def test_a_rebound_answer_is_refused_where_the_connection_is_made(rebinding_dns: dict, twin_servers) -> None:
    a, b = twin_servers
    port = a.server_address[1]
    rebinding_dns["answers"] = ["127.0.0.1", "127.0.0.2"]   # allowed for the pre-flight, internal for the connection
    with Fetcher(FetchSettings(per_host_delay_s=0, retries=2, respect_robots=False, allow_private=(a.allow,))) as f:
        with pytest.raises(FetchError) as err:
            f.fetch(f"http://rebind.test:{port}/page.html")
    assert err.value.kind == "refused"
    assert "rebind.test resolves to 127.0.0.2, a loopback address" in str(err.value)
    assert a.hits == {} and b.hits == {}
    assert rebinding_dns["queries"] == 2   # refused, not retried


def test_tls_keeps_the_name_for_sni_and_certificate_checks(rebinding_dns: dict, tmp_path: Path) -> None:
    """Connecting to the checked address, TLS still sends and verifies the site's own name."""
    import shutil
    import ssl
    import subprocess

    import httpx

    if not shutil.which("openssl"):
        pytest.skip("openssl is not installed")
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert),
                    "-days", "2", "-subj", "/CN=rebind.test", "-addext", "subjectAltName=DNS:rebind.test"],
                   check=True, capture_output=True)
    names: list[str | None] = []
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(cert, key)
    server_ctx.sni_callback = lambda _sock, name, _ctx: names.append(name)
    site = FixtureServer()
    site.socket = server_ctx.wrap_socket(site.socket, server_side=True)
    site.add("/page.html", "<p>cifrado</p>")
    site.thread.start()
    port = site.server_address[1]
    try:
        rebinding_dns["answers"] = ["127.0.0.1", "127.0.0.2"]   # a later query would go elsewhere
        transport = GuardedTransport(AddressPolicy.from_entries([site.allow]),
                                     ssl_context=ssl.create_default_context(cafile=str(cert)))
        with httpx.Client(transport=transport, trust_env=False) as client:
            response = client.get(f"https://rebind.test:{port}/page.html")
    finally:
        site.shutdown()
        site.server_close()
    assert response.status_code == 200 and response.text == "<p>cifrado</p>"   # the certificate of rebind.test
    assert names == ["rebind.test"] and site.host_headers == [f"rebind.test:{port}"]
    assert rebinding_dns["queries"] == 1


def test_one_refused_address_among_several_refuses_the_host(monkeypatch: pytest.MonkeyPatch, twin_servers) -> None:
    a, _b = twin_servers
    real = socket.getaddrinfo

    def two_answers(host, port, *args, **kwargs):  # type: ignore[no-untyped-def]
        if host != "two.test":
            return real(host, port, *args, **kwargs)
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", port)),
                (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("10.9.9.9", port))]

    monkeypatch.setattr(socket, "getaddrinfo", two_answers)
    with pytest.raises(RefusedAddress, match="two.test resolves to 10.9.9.9, a private address"):
        GuardedBackend(AddressPolicy.from_entries([a.allow])).connect_tcp("two.test", a.server_address[1], timeout=2)
    assert a.hits == {}


# --------------------------------------------------------------------------- acceptance: an outlet linking inward

def test_an_outlet_cannot_turn_the_crawler_inward(make_server, db_path: Path) -> None:
    outlet, internal = make_server(), make_server()
    port = internal.server_address[1]
    for name in ("a", "b", "c", "d", "e", "f", "g", "h"):
        internal.add(f"/secret-{name}", article_html("Credenciales internas", story_text(7)))
    inward = {
        "127.0.0.1": f"http://127.0.0.1:{port}/secret-a",
        "localhost": f"http://localhost:{port}/secret-b",
        "2130706433": f"http://2130706433:{port}/secret-c",
        "0x7f.0.0.1": f"http://0x7f.0.0.1:{port}/secret-d",
        "127.1": f"http://127.1:{port}/secret-e",
        "[::ffff:127.0.0.1]": f"http://[::ffff:127.0.0.1]:{port}/secret-f",
        "redirect": outlet.add("/r/secret", "", status=302, Location=f"http://127.0.0.1:{port}/secret-g"),
        "redirect-by-name": outlet.add("/r/by-name", "", status=301, Location=f"http://localhost:{port}/secret-h"),
    }
    good = outlet.add("/nota.html", article_html("Nota buena", story_text(3)))
    feed = outlet.add("/feed.xml", rss([("Nota buena", good)] + [(k, u) for k, u in inward.items()]),
                      content_type="application/rss+xml")
    config = config_for([{"url": feed}], retries=2)   # allows the outlet's own server only
    assert config.fetch.allow_private == (outlet.allow,)
    db = store.connect(db_path)

    summary = crawl_once(db, config, None)

    assert internal.hits == {}                              # not one request, robots.txt included
    assert [r["url"] for r in db.query("SELECT url FROM articles")] == [good]
    assert summary.new_articles == 1
    failures = {r["url"]: r for r in db.query("SELECT * FROM failures WHERE stage = 'fetch'")}
    assert set(failures) == set(inward.values())            # each refusal recorded, naming its URL
    for spelling, url in inward.items():
        row = failures[url]
        assert row["error_type"] == "refused", row
        assert row["message"].startswith(f"{url}: refused: "), row["message"]
        assert "a loopback address; allow it in defaults.allow_private" in row["message"]
    assert f"redirected to http://127.0.0.1:{port}/secret-g: 127.0.0.1 is a loopback address" in \
        failures[inward["redirect"]]["message"]
    assert f"redirected to http://localhost:{port}/secret-h: localhost resolves to 127.0.0.1" in \
        failures[inward["redirect-by-name"]]["message"]
    assert "2130706433 is 127.0.0.1" in failures[inward["2130706433"]]["message"]
    assert outlet.hits["/r/secret"] == 1 and outlet.hits["/r/by-name"] == 1   # refusals are not retried
    # ... nor tried again by the next run: the entries are failed, not pending
    states = {r["url"]: r["status"] for r in db.query("SELECT url, status FROM entries")}
    assert all(states[u] == "failed" for u in inward.values())
    crawl_once(db, config, None)
    assert internal.hits == {} and outlet.hits["/r/secret"] == 1
    # ... until the operator allows the internal server: then the next crawl fetches them
    from dataclasses import replace

    allowed = replace(config, fetch=replace(config.fetch, allow_private=(outlet.allow, f"127.0.0.1:{port}")))
    again = crawl_once(db, allowed, None)
    assert internal.hits.get("/secret-a") == 1 and again.new_articles >= 1
    assert db.execute("SELECT status FROM entries WHERE url = ?", [inward["127.0.0.1"]]).fetchone()[0] in ("done", "duplicate")


def test_robots_txt_that_redirects_inward_is_refused(make_server, db_path: Path) -> None:
    outlet, internal = make_server(), make_server()
    internal.add("/robots.txt", "User-agent: *\nAllow: /\n", content_type="text/plain")
    outlet.add("/robots.txt", "", status=302, Location=internal.url("/robots.txt"))
    feed = outlet.add("/feed.xml", rss([("n", outlet.url("/n.html"))]), content_type="application/rss+xml")
    db = store.connect(db_path)
    summary = crawl_once(db, config_for([{"url": feed}]), None)
    assert internal.hits == {} and "/feed.xml" not in outlet.hits
    assert summary.feeds_failed == 1
    row = db.execute("SELECT error_type, message FROM failures WHERE stage = 'feed'").fetchone()
    assert row[0] == "refused" and f"redirected to {internal.url('/robots.txt')}" in row[1]


def test_the_demo_allows_exactly_its_own_server(demo_site) -> None:
    import yaml

    from monitor.demo.site import feeds_yaml

    config = parse_config(yaml.safe_load(feeds_yaml(demo_site.base_url)), "demo")
    port = demo_site.base_url.rsplit(":", 1)[1]
    assert config.fetch.allow_private == (f"127.0.0.1:{port}",)


# --------------------------------------------------------------------------- the total deadline (3b)

def test_a_dripping_page_is_abandoned_at_the_deadline_and_not_retried(fixture_server) -> None:
    settings = FetchSettings(per_host_delay_s=0, retries=2, read_timeout_s=20, max_request_s=3,
                             respect_robots=False, allow_private=(fixture_server.allow,))
    url = fixture_server.url("/drip/one?every=2&bytes=90")
    started = time.monotonic()
    with Fetcher(settings) as f, pytest.raises(FetchError) as err:
        f.fetch(url)
    elapsed = time.monotonic() - started
    assert err.value.kind == "deadline" and err.value.url == url
    assert "max_request_s=3s" in str(err.value) and "not retried" in str(err.value)
    assert 2.9 <= elapsed < 4.5, elapsed                    # at the deadline, not at the end of 180 s of dripping
    assert fixture_server.hits["/drip/one"] == 1            # the read timeout (20 s) never tripped; no retry


def test_the_deadline_counts_redirects_and_every_hop(fixture_server) -> None:
    s = fixture_server
    s.add("/hop/3", article_html("Destino", story_text(2)))
    s.add("/hop/2", "", status=302, Location=s.url("/hop/3"))
    s.add("/hop/1", "", status=302, Location=s.url("/hop/2"))
    s.latency["/hop/"] = 0.8                                  # each hop is quick, the chain is not
    settings = FetchSettings(per_host_delay_s=0, retries=1, read_timeout_s=5, max_request_s=2,
                             respect_robots=False, allow_private=(s.allow,))
    started = time.monotonic()
    try:
        with Fetcher(settings) as f, pytest.raises(FetchError) as err:
            f.fetch(s.url("/hop/1"))
    finally:
        del s.latency["/hop/"]
    assert err.value.kind == "deadline" and time.monotonic() - started < 3
    assert s.hits["/hop/1"] == 1


def test_a_single_stalled_read_ends_at_the_deadline(fixture_server) -> None:
    settings = FetchSettings(per_host_delay_s=0, retries=0, read_timeout_s=20, max_request_s=1,
                             respect_robots=False, allow_private=(fixture_server.allow,))
    started = time.monotonic()
    with Fetcher(settings) as f, pytest.raises(FetchError) as err:
        f.fetch(fixture_server.url("/slow?seconds=10"))
    assert err.value.kind == "deadline" and time.monotonic() - started < 2


def test_request_deadline_nests_and_clears() -> None:
    from monitor.netguard import deadline_passed

    assert not deadline_passed()
    with request_deadline(0.05):
        with request_deadline(60):          # an inner, later deadline does not extend the outer one
            time.sleep(0.1)
            assert deadline_passed()
    assert not deadline_passed()


def test_a_crawl_beside_a_dripping_page_finishes_soon_after_the_deadline(make_server, db_path: Path) -> None:
    site = make_server()
    good = [site.add(f"/n/{i}.html", article_html(f"Nota {i}", story_text(40 + i))) for i in range(4)]
    drip = site.url("/drip/nota.html?every=2&bytes=90")      # would take 3 minutes
    feed = site.add("/feed.xml", rss([("gota", drip)] + [(f"Nota {i}", u) for i, u in enumerate(good)]),
                    content_type="application/rss+xml")
    deadline = 3
    config = config_for([{"url": feed}], retries=2, read_timeout_s=20, max_request_s=deadline)
    db = store.connect(db_path)
    started = time.monotonic()
    summary = crawl_once(db, config, None)
    elapsed = time.monotonic() - started
    assert elapsed < deadline + 30, elapsed
    assert summary.new_articles == 4
    assert sorted(r[0] for r in db.execute("SELECT url FROM articles")) == sorted(good)
    assert site.hits["/drip/nota.html"] == 1                  # abandoned once, not retried
    rows = db.execute("SELECT url, message FROM failures WHERE error_type = 'deadline'").fetchall()
    assert len(rows) == 1 and "/drip/nota.html?" in rows[0][0]   # the URL as queued (query sorted)
    assert rows[0][1].startswith(f"{rows[0][0]}: abandoned at the total deadline max_request_s=3s")
