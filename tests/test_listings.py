"""Sources without an RSS feed: news sitemaps, HTML listing pages, and feed discovery.

Every document is served as real bytes by the loopback fixture server and fetched over HTTP.
"""

from __future__ import annotations

import gzip
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml

from monitor.config import parse_config
from monitor.discover import discover_sources, format_yaml, guess_section
from monitor.errors import ConfigError, FeedError, FetchError
from monitor.listings import MAX_ENTRIES, parse_listing, parse_sitemap
from tests.httpserver import FixtureServer

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"

NEWS_SITEMAP = """<?xml version="1.0" encoding="UTF-8"?>
<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9"
        xmlns:news="http://www.google.com/schemas/sitemap-news/0.9"
        xmlns:image="http://www.google.com/schemas/sitemap-image/1.1">
  <url>
    <loc>https://diario.example/opinion/2024/05/01/columna-uno</loc>
    <image:image><image:loc>https://cdn.example/foto.jpg</image:loc></image:image>
    <news:news>
      <news:publication><news:name>Diario Ejemplo</news:name><news:language>es</news:language></news:publication>
      <news:publication_date>2024-05-01T10:30:00-06:00</news:publication_date>
      <news:title>Defensores   de derechos humanos,
        ¿agentes extranjeros?</news:title>
    </news:news>
  </url>
  <url>
    <loc>https://diario.example/nacional/nota-dos</loc>
    <news:news>
      <news:publication><news:name>Diario Ejemplo</news:name><news:language>es</news:language></news:publication>
      <news:publication_date>2024-05-02</news:publication_date>
      <news:title><![CDATA[Marcha & protesta en la capital]]></news:title>
    </news:news>
  </url>
  <url><loc>/relativa/no-cuenta</loc></url>
  <url><loc>ftp://diario.example/archivo</loc></url>
  <url><loc>https://diario.example/opinion/2024/05/01/columna-uno</loc></url>
</urlset>
"""

PLAIN_SITEMAP = """<?xml version="1.0" encoding="UTF-8"?>
<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">
  <url><loc>https://diario.example/a</loc><lastmod>2024-03-04T05:06:07+00:00</lastmod></url>
  <url><loc>https://diario.example/b</loc><lastmod>2024-03-05</lastmod></url>
  <url><loc>https://diario.example/c</loc><lastmod>not a date</lastmod></url>
</urlset>
"""


@pytest.fixture(scope="module")
def own_server() -> Iterator[FixtureServer]:
    """A private server for discovery: its /, /robots.txt and /sitemap*.xml must not leak into other tests."""
    server = FixtureServer()
    server.thread.start()
    yield server
    server.shutdown()
    server.server_close()


def fetch(url: str) -> tuple[int, bytes, str]:
    """The ``fetch`` that discovery expects: (status, body, final URL), failures as FetchError."""
    try:
        with httpx.Client(trust_env=False, follow_redirects=True, timeout=5.0) as client:
            response = client.get(url)
    except httpx.HTTPError as e:
        raise FetchError(url, "connection", str(e)) from None
    return response.status_code, response.content, str(response.url)


def served(server: FixtureServer, path: str, body: bytes | str, content_type: str = "application/xml") -> tuple[bytes, str]:
    """Serve ``body`` at ``path`` and fetch it back: the exact bytes and the URL."""
    url = server.add(path, body, content_type=content_type)
    status, data, final_url = fetch(url)
    assert status == 200
    return data, final_url


# --------------------------------------------------------------------------- sitemaps


def test_news_sitemap_gives_titles_and_utc_dates(fixture_server: FixtureServer) -> None:
    body, url = served(fixture_server, "/listings/news-sitemap.xml", NEWS_SITEMAP)
    parsed, children = parse_sitemap(body, url)
    assert children == [] and parsed.warning is None
    assert parsed.version == "sitemap-news" and parsed.title == "Diario Ejemplo"
    assert [(e.url, e.title, e.published) for e in parsed.entries] == [
        ("https://diario.example/opinion/2024/05/01/columna-uno",
         "Defensores de derechos humanos, ¿agentes extranjeros?", "2024-05-01T16:30:00Z"),
        ("https://diario.example/nacional/nota-dos", "Marcha & protesta en la capital", "2024-05-02T00:00:00Z"),
    ]


def test_plain_sitemap_uses_lastmod(fixture_server: FixtureServer) -> None:
    body, url = served(fixture_server, "/listings/plain-sitemap.xml", PLAIN_SITEMAP)
    parsed, children = parse_sitemap(body, url)
    assert children == [] and parsed.version == "sitemap"
    assert [(e.url, e.title, e.published) for e in parsed.entries] == [
        ("https://diario.example/a", "", "2024-03-04T05:06:07Z"),
        ("https://diario.example/b", "", "2024-03-05T00:00:00Z"),
        ("https://diario.example/c", "", None),
    ]


def test_sitemap_index_returns_its_children(fixture_server: FixtureServer) -> None:
    index = """<?xml version="1.0" encoding="UTF-8"?>
<sitemapindex xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">
  <sitemap><loc>https://diario.example/sitemap-news.xml</loc><lastmod>2024-05-02</lastmod></sitemap>
  <sitemap><loc>https://diario.example/sitemap-2024-05.xml</loc></sitemap>
  <sitemap><loc>sitemap-relative.xml</loc></sitemap>
  <sitemap><loc>https://diario.example/sitemap-news.xml</loc></sitemap>
</sitemapindex>"""
    body, url = served(fixture_server, "/listings/sitemap-index.xml", index)
    parsed, children = parse_sitemap(body, url)
    assert parsed.entries == () and parsed.version == "sitemapindex"
    assert children == ["https://diario.example/sitemap-news.xml", "https://diario.example/sitemap-2024-05.xml"]


def test_bom_and_no_namespace(fixture_server: FixtureServer) -> None:
    doc = b"\xef\xbb\xbf\n<urlset><url><loc> https://diario.example/sin-espacio </loc>" \
          b"<lastmod>2024-01-02T03:04:05Z</lastmod></url></urlset>"
    body, url = served(fixture_server, "/listings/bom-sitemap.xml", doc)
    assert body.startswith(b"\xef\xbb\xbf")
    parsed, _ = parse_sitemap(body, url)
    assert [(e.url, e.published) for e in parsed.entries] == [("https://diario.example/sin-espacio", "2024-01-02T03:04:05Z")]


def test_gzipped_sitemap_file(fixture_server: FixtureServer) -> None:
    body, url = served(fixture_server, "/listings/sitemap.xml.gz", gzip.compress(PLAIN_SITEMAP.encode()),
                       "application/x-gzip")
    parsed, _ = parse_sitemap(body, url)
    assert len(parsed.entries) == 3
    with pytest.raises(FeedError, match="corrupt gzip"):
        parse_sitemap(body[:20] + b"garbage" * 10, url)


def test_broken_xml_is_recovered_with_a_warning(fixture_server: FixtureServer) -> None:
    doc = ("<?xml version='1.0'?><urlset xmlns='http://www.sitemaps.org/schemas/sitemap/0.9'>"
           "<url><loc>https://diario.example/uno</loc></url>"
           "<url><loc>https://diario.example/dos?a=1&b=2</loc></url>"    # bare ampersand
           "<url><loc>https://diario.example/tres</loc>")                  # truncated
    body, url = served(fixture_server, "/listings/broken-sitemap.xml", doc)
    parsed, _ = parse_sitemap(body, url)
    assert parsed.warning and parsed.warning.startswith("ill-formed sitemap")
    urls = [e.url for e in parsed.entries]
    assert urls[0] == "https://diario.example/uno" and "https://diario.example/tres" in urls


def test_entities_are_never_expanded(fixture_server: FixtureServer) -> None:
    doc = """<?xml version="1.0"?>
<!DOCTYPE urlset [<!ENTITY secret SYSTEM "file:///etc/passwd"><!ENTITY lol "lollollollollol">]>
<urlset><url><loc>https://diario.example/x/&secret;&lol;</loc></url></urlset>"""
    body, url = served(fixture_server, "/listings/xxe-sitemap.xml", doc)
    parsed, _ = parse_sitemap(body, url)
    assert all("root:" not in e.url and "lollol" not in e.url for e in parsed.entries)


def test_oversized_sitemap_keeps_the_newest(fixture_server: FixtureServer) -> None:
    rows = [f"<url><loc>https://diario.example/n/{i}</loc><lastmod>2024-01-01T00:00:{i % 60:02d}Z</lastmod></url>"
            for i in range(MAX_ENTRIES)]
    rows.insert(0, "<url><loc>https://diario.example/viejo</loc><lastmod>1999-01-01</lastmod></url>")
    body, url = served(fixture_server, "/listings/huge-sitemap.xml", "<urlset>" + "".join(rows) + "</urlset>")
    parsed, _ = parse_sitemap(body, url)
    assert len(parsed.entries) == MAX_ENTRIES
    assert parsed.entries[0].url == "https://diario.example/n/0"
    assert "https://diario.example/viejo" not in {e.url for e in parsed.entries}


@pytest.mark.parametrize("path,body,message", [
    ("/listings/html-as-sitemap.xml", b"<!DOCTYPE html>\n<html><body><p>Not found</p></body></html>",
     "got an HTML page, not a sitemap"),
    ("/listings/xhtml-as-sitemap.xml", b'<?xml version="1.0"?><html xmlns="http://www.w3.org/1999/xhtml"><body/></html>',
     "got an HTML page, not a sitemap"),
    ("/listings/rss-as-sitemap.xml", b"<rss version='2.0'><channel><title>x</title></channel></rss>",
     "not a sitemap: root element is <rss>"),
    ("/listings/empty-sitemap.xml", b"  \n", "empty document, not a sitemap"),
    ("/listings/garbage-sitemap.xml", b"\x00\x01 this is not xml", "nothing recoverable"),
    ("/listings/broken-no-urls.xml", b"<urlset><url><loc>/only/relative</loc><url>", "no URLs recovered"),
])
def test_not_a_sitemap_raises_naming_the_url(fixture_server: FixtureServer, path: str, body: bytes,
                                             message: str) -> None:
    data, url = served(fixture_server, path, body)
    with pytest.raises(FeedError) as err:
        parse_sitemap(data, url)
    assert message in str(err.value) and url in str(err.value)


# --------------------------------------------------------------------------- HTML listing pages

LISTING = """<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>Opinión | Diario</title></head><body>
<nav><a href="/">Portada</a> <a href="/opinion/">Opinión</a> <a href="javascript:void(0)">menú</a></nav>
<main>
  <a href="2024/05/01/la-columna-de-hoy"><img src="f.jpg" alt="Foto de la columna"></a>
  <h2><a href="2024/05/01/la-columna-de-hoy#comentarios">  La columna
      de hoy </a></h2>
  <h2><a href="https://diario.example/opinion/2024/05/02/otra-columna">Otra columna</a></h2>
  <h2><a href="/opinion/2024/05/03/tercera" title="Tercera columna"></a></h2>
  <a href="/nacional/2024/05/01/nota">Una nota</a>
  <a href="mailto:cartas@diario.example">Cartas</a>
</main></body></html>
"""
PATTERN = r"/opinion/\d{4}/\d{2}/\d{2}/"


def test_listing_resolves_relative_links_and_filters_by_pattern(fixture_server: FixtureServer) -> None:
    body, url = served(fixture_server, "/listings/opinion/", LISTING, "text/html; charset=utf-8")
    parsed = parse_listing(body, url, PATTERN)
    assert parsed.title == "Opinión | Diario" and parsed.version == "html"
    assert [(e.url, e.title) for e in parsed.entries] == [
        (fixture_server.url("/listings/opinion/2024/05/01/la-columna-de-hoy"), "La columna de hoy"),
        ("https://diario.example/opinion/2024/05/02/otra-columna", "Otra columna"),
        (fixture_server.url("/opinion/2024/05/03/tercera"), "Tercera columna"),
    ]


def test_listing_honours_base_href(fixture_server: FixtureServer) -> None:
    page = ('<html><head><base href="https://diario.example/opinion/"></head>'
            '<body><a href="2024/05/04/columna">Columna</a></body></html>')
    body, url = served(fixture_server, "/listings/base-href.html", page, "text/html")
    parsed = parse_listing(body, url, PATTERN)
    assert [e.url for e in parsed.entries] == ["https://diario.example/opinion/2024/05/04/columna"]


def test_iso_8859_1_listing_keeps_spanish_accents(fixture_server: FixtureServer) -> None:
    page = ('<html><head><meta http-equiv="Content-Type" content="text/html; charset=iso-8859-1">'
            '<title>Opinión</title></head><body>'
            '<a href="/opinion/2024/05/05/senal">Señalamientos contra defensoras: ¿quién paga?</a>'
            '</body></html>').encode("iso-8859-1")
    body, url = served(fixture_server, "/listings/latin1.html", page, "text/html")
    assert "ñ".encode("iso-8859-1") in body
    parsed = parse_listing(body, url, PATTERN)
    assert parsed.title == "Opinión"
    assert parsed.entries[0].title == "Señalamientos contra defensoras: ¿quién paga?"


def test_utf8_listing_without_declared_charset(fixture_server: FixtureServer) -> None:
    page = '<html><body><a href="/opinion/2024/05/06/acentos">Acentuación sin meta</a></body></html>'
    body, url = served(fixture_server, "/listings/utf8-no-meta.html", page.encode("utf-8"), "text/html")
    assert parse_listing(body, url, PATTERN).entries[0].title == "Acentuación sin meta"


def test_listing_without_a_match_names_the_pattern(fixture_server: FixtureServer) -> None:
    body, url = served(fixture_server, "/listings/redesigned.html", LISTING.replace("/opinion/", "/columnas/")
                       .replace('href="2024', 'href="/columnas/2024'), "text/html")
    with pytest.raises(FeedError) as err:
        parse_listing(body, url, PATTERN)
    message = str(err.value)
    assert url in message and repr(PATTERN) in message and "no link matches" in message


def test_empty_listing_and_bad_pattern_raise(fixture_server: FixtureServer) -> None:
    body, url = served(fixture_server, "/listings/empty.html", b"", "text/html")
    with pytest.raises(FeedError, match="empty page"):
        parse_listing(body, url, PATTERN)
    with pytest.raises(FeedError, match="invalid link_pattern"):
        parse_listing(LISTING.encode(), url, "(unclosed")


# --------------------------------------------------------------------------- configuration


def _config(feed: dict) -> dict:
    return {"outlets": [{"name": "Diario", "feeds": [
        {"url": "https://diario.example/rss.xml", "section": "news"}, feed]}]}


def test_config_html_kind_requires_a_link_pattern() -> None:
    with pytest.raises(ConfigError) as err:
        parse_config(_config({"url": "https://diario.example/opinion/", "section": "opinion", "kind": "html"}))
    assert err.value.problems == ["outlets[0].feeds[1].link_pattern: is required for kind html"]


def test_config_rejects_a_bad_regex_and_a_pattern_on_other_kinds() -> None:
    with pytest.raises(ConfigError) as err:
        parse_config(_config({"url": "https://diario.example/opinion/", "section": "opinion", "kind": "html",
                              "link_pattern": "/opinion/(\\d+"}))
    [problem] = err.value.problems
    assert problem.startswith("outlets[0].feeds[1].link_pattern: is not a valid regular expression: missing )")
    with pytest.raises(ConfigError, match=r"feeds\[1\]\.link_pattern: is only used with kind html"):
        parse_config(_config({"url": "https://diario.example/sitemap.xml", "section": "news", "kind": "sitemap",
                              "link_pattern": "x"}))


def test_config_accepts_sitemap_and_html_kinds() -> None:
    config = parse_config(_config({"url": "https://diario.example/opinion/", "section": "opinion", "kind": "html",
                                   "link_pattern": PATTERN}))
    feed = config.outlets[0].feeds[1]
    assert (feed.kind, feed.link_pattern) == ("html", PATTERN)
    assert config.outlets[0].feeds[0].link_pattern == ""
    sitemap = parse_config(_config({"url": "https://diario.example/news.xml", "section": "news", "kind": "sitemap"}))
    assert sitemap.outlets[0].feeds[1].kind == "sitemap"


# --------------------------------------------------------------------------- discovery

RSS = """<?xml version="1.0" encoding="UTF-8"?><rss version="2.0"><channel><title>Opinión</title>
<item><title>Columna uno</title><link>https://diario.example/opinion/1</link></item>
<item><title>Columna dos</title><link>https://diario.example/opinion/2</link></item>
</channel></rss>"""


def _homepage(base: str) -> str:
    return f"""<!DOCTYPE html><html><head><meta charset="utf-8"><title>Diario</title>
<link rel="alternate" type="application/rss+xml" title="Opinión" href="/rss/opinion.xml">
<link rel="alternate" type="application/atom+xml" title="Muerta" href="/feeds/dead.atom">
<link rel="stylesheet" href="/style.css">
</head><body>
<a href="/rss/portada.xml">RSS portada</a>
<a href="https://otro.example/rss.xml">RSS de otro sitio</a>
<a href="/nacional/nota">Una nota</a>
<a href="{base}/rss/opinion.xml#top">RSS opinión (otra vez)</a>
</body></html>"""


def test_discover_returns_exactly_the_working_sources(own_server: FixtureServer) -> None:
    base = own_server.base
    own_server.add("/", _homepage(base))
    own_server.add("/rss/opinion.xml", RSS, content_type="application/rss+xml")
    own_server.add("/rss/portada.xml", "<html><body>Página no encontrada</body></html>")   # soft 404
    own_server.add("/robots.txt", f"User-agent: *\nDisallow: /admin/\n\nSitemap: {base}/sitemaps/news.xml\n",
                   content_type="text/plain")
    own_server.add("/sitemaps/news.xml", NEWS_SITEMAP)
    own_server.add("/sitemap_index.xml", f"""<sitemapindex xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">
<sitemap><loc>{base}/sitemaps/news.xml</loc></sitemap><sitemap><loc>{base}/sitemaps/2024.xml</loc></sitemap>
</sitemapindex>""")
    own_server.add("/sitemap-news.xml", "<!DOCTYPE html><html><body>Inicio</body></html>")  # HTML, not a sitemap

    proposals = discover_sources(base + "/", fetch)

    assert [(p["url"], p["kind"], p["section"]) for p in proposals] == [
        (f"{base}/rss/opinion.xml", "feed", "opinion"),
        (f"{base}/sitemaps/news.xml", "sitemap", "news"),
        (f"{base}/sitemap_index.xml", "sitemap", "news"),
    ]
    notes = [p["note"] for p in proposals]
    assert "<link rel=\"alternate\"" in notes[0] and "2 entries" in notes[0]
    assert "robots.txt" in notes[1] and "2 entries" in notes[1]
    assert "sitemap index of 2 sitemaps" in notes[2]
    for dead in ("/feeds/dead.atom", "/sitemap.xml", "/news-sitemap.xml", "/rss/portada.xml", "/sitemap-news.xml"):
        assert own_server.hits.get(dead) == 1, dead        # each candidate was checked once
    assert own_server.hits.get("/rss/opinion.xml") == 1    # the duplicate link was not fetched again


def test_format_yaml_pastes_into_a_valid_config(own_server: FixtureServer) -> None:
    proposals = [
        {"url": "https://diario.example/rss/opinion.xml", "kind": "feed", "section": "opinion",
         "note": "found via <link rel=\"alternate\"> on the homepage ('Opinión'); rss20 with 2 entries"},
        {"url": "https://diario.example/sitemap-news.xml", "kind": "sitemap", "section": "news", "note": "x: y"},
    ]
    snippet = format_yaml(proposals)
    assert snippet.startswith("#") and "Opinión" in snippet
    feeds = yaml.safe_load(snippet)["feeds"]
    assert feeds == proposals
    config = parse_config({"outlets": [{"name": "Diario", "feeds": feeds}]})
    assert [f.kind for f in config.outlets[0].feeds] == ["feed", "sitemap"]
    assert yaml.safe_load(format_yaml([])) == {"feeds": []}


def test_discover_with_an_unreachable_site_finds_nothing() -> None:
    with pytest.raises(FetchError):
        fetch("http://127.0.0.1:9/")
    assert discover_sources("http://127.0.0.1:9/", fetch) == []


@pytest.mark.parametrize("texts,section", [
    (("https://diario.example/rss/opinion.xml",), "opinion"),
    (("https://diario.example/feed", "Opinión"), "opinion"),
    (("https://diario.example/columnistas/rss",), "opinion"),
    (("https://diario.example/feed", "ARTICULISTAS"), "opinion"),
    (("https://diario.example/rss/nacional.xml", "Nacional"), "news"),
])
def test_guess_section(texts: tuple[str, ...], section: str) -> None:
    assert guess_section(*texts) == section


# --------------------------------------------------------------------------- real documents (optional)


def _shared(pattern: str, limit: int) -> list[object]:
    files = sorted(SHARED_DATA.glob(pattern))[:limit] if SHARED_DATA.is_dir() else []
    return files or [pytest.param(None, marks=pytest.mark.skip(reason=f"no ../shared/data/{pattern}"))]


@pytest.mark.parametrize("path", _shared("**/*sitemap*.xml", 50), ids=str)
def test_real_sitemaps_parse(path: Path | None) -> None:
    assert path is not None
    parsed, children = parse_sitemap(path.read_bytes(), path.as_uri())
    assert parsed.entries or children


@pytest.mark.parametrize("path", _shared("feeds/spanish_news_recorded/**/*.xml", 50), ids=lambda p: getattr(p, "name", ""))
def test_real_feeds_are_not_sitemaps(path: Path | None) -> None:
    assert path is not None
    with pytest.raises(FeedError, match="not a sitemap"):
        parse_sitemap(path.read_bytes(), "https://diario.example/feed.xml")


@pytest.mark.parametrize("path", _shared("extraction/trafilatura_es/html/*.html.gz", 48),
                         ids=lambda p: getattr(p, "name", "")[:16])
def test_real_pages_are_not_sitemaps_but_are_listings(path: Path | None) -> None:
    assert path is not None
    html = gzip.decompress(path.read_bytes())
    with pytest.raises(FeedError, match="not a sitemap"):
        parse_sitemap(html, "https://diario.example/page")
    parsed = parse_listing(html, "https://diario.example/page", r"^https?://")
    assert parsed.entries and all(e.url.startswith(("http://", "https://")) for e in parsed.entries)


def test_cli_feeds_discover_and_html_kind_crawl(make_server, tmp_path) -> None:
    """`monitor feeds discover` proposes a working feed; an html listing source crawls end to end."""
    from click.testing import CliRunner

    from monitor import store
    from monitor.cli import cli
    from monitor.pipeline import crawl_once
    from tests.pages import article_html, rss, story_text
    from tests.test_crawling import config_for

    site = make_server()
    site.add("/rss/ultimas.xml", rss([("n", site.url("/n/1.html"))]), content_type="application/rss+xml")
    site.add("/", '<html><head><link rel="alternate" type="application/rss+xml" title="Últimas" '
                  'href="/rss/ultimas.xml"></head><body><a href="/opinion/">Opinión</a></body></html>')
    refused = CliRunner().invoke(cli, ["feeds", "discover", site.url("/")])
    assert refused.exit_code != 0 and "no working feed" in refused.output   # loopback is refused by default
    assert site.hits == {}
    result = CliRunner().invoke(cli, ["feeds", "discover", site.url("/"), "--allow-private", site.allow])
    assert result.exit_code == 0, result.output
    assert site.url("/rss/ultimas.xml") in result.output and "kind: feed" in result.output

    site.add("/opinion/", '<html><body><ul><li><a href="/opinion/col-1.html">Columna uno</a></li>'
                          '<li><a href="/opinion/col-2.html">Columna dos</a></li><li><a href="/contacto">Contacto</a>'
                          '</li></ul></body></html>')
    site.add("/opinion/col-1.html", article_html("Columna uno", story_text(21), author="Ana Ruiz"))
    site.add("/opinion/col-2.html", article_html("Columna dos", story_text(22), author="Beto Sol"))
    db = store.connect(tmp_path / "m.db")
    summary = crawl_once(db, config_for([{"url": site.url("/opinion/"), "kind": "html", "section": "opinion",
                                          "link_pattern": r"/opinion/col-\d+\.html$"}]), None)
    assert summary.feeds_ok == 1 and summary.new_articles == 2
    assert sorted(r[0] for r in db.execute("SELECT columnist FROM articles")) == ["Ana Ruiz", "Beto Sol"]
