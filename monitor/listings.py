"""Turn a sitemap (XML, Google News extension included) or an HTML listing page into feed entries.

For outlets without an RSS/Atom feed: ``kind: sitemap`` feeds are read with :func:`parse_sitemap`,
``kind: html`` feeds (an opinion section's index page, say) with :func:`parse_listing`.
Both return the same :class:`~monitor.models.ParsedFeed` as :func:`monitor.feeds.parse_feed`.
"""

from __future__ import annotations

import codecs
import datetime as dt
import logging
import re
import zlib
from email.utils import parsedate_to_datetime
from urllib.parse import urldefrag, urljoin, urlsplit

import lxml.html
from lxml import etree

from .errors import FeedError
from .feeds import looks_like_html
from .models import Entry, ParsedFeed

LOGGER = logging.getLogger(__name__)
MAX_ENTRIES = 5_000                     # per document: a bigger sitemap keeps its newest entries
MAX_GUNZIPPED = 50_000_000              # bytes: a .xml.gz sitemap bigger than this once unpacked is refused
_UTF8_BOM = codecs.BOM_UTF8
_META_CHARSET = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?\s*([A-Za-z0-9_.:-]+)""", re.I)
_SKIPPED_SCHEMES = ("javascript:", "mailto:", "tel:", "data:")


# --------------------------------------------------------------------------- sitemaps


def parse_sitemap(body: bytes, url: str) -> tuple[ParsedFeed, list[str]]:
    """Parse an XML sitemap into entries, or a sitemap index into its child sitemap URLs.

    A ``<urlset>`` gives one entry per ``<url><loc>`` (title and date from the Google News
    ``news:news`` block when present, else the date from ``<lastmod>``); the list is empty.
    A ``<sitemapindex>`` gives no entries and the child sitemap URLs, for the caller to fetch.
    Slightly broken XML is recovered when that still yields URLs (``warning`` is then set).

    Raises:
        FeedError: the body is empty, an HTML page, XML of another kind, or unrecoverable.
    """
    data = _strip_bom(_gunzip(body, url))
    if not data.strip():
        raise FeedError(f"{url}: empty document, not a sitemap")
    if looks_like_html(data):
        raise FeedError(f"{url}: got an HTML page, not a sitemap")
    root, warning = _parse_xml(data.lstrip(), url)
    name = _local(root)
    if name == "html":
        raise FeedError(f"{url}: got an HTML page, not a sitemap")
    if name == "sitemapindex":
        children = _child_sitemaps(root, url)
        if warning and not children:
            raise FeedError(f"{url}: ill-formed sitemap index, no sitemap URLs recovered ({warning})")
        return ParsedFeed(entries=(), version="sitemapindex", warning=_ill_formed(warning)), children
    if name != "urlset":
        raise FeedError(f"{url}: not a sitemap: root element is <{name}>, expected <urlset> or <sitemapindex>")
    entries, skipped = _url_entries(root, url)
    if warning and not entries:
        raise FeedError(f"{url}: ill-formed sitemap, no URLs recovered ({warning})")
    if skipped:
        LOGGER.info("%s: skipped %d <loc> values that are not absolute http(s) URLs", url, skipped)
    is_news = any(_local(el) == "news" for el in root.iter(etree.Element))
    return ParsedFeed(
        entries=tuple(_newest(entries, url)),
        title=_publication_name(root),
        version="sitemap-news" if is_news else "sitemap",
        warning=_ill_formed(warning),
    ), []


def _gunzip(body: bytes, url: str) -> bytes:
    """Unpack a gzip file (a ``sitemap.xml.gz`` served as is), refusing more than MAX_GUNZIPPED bytes."""
    if not body.startswith(b"\x1f\x8b"):
        return body
    unpacker = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
    try:
        data = unpacker.decompress(body, MAX_GUNZIPPED + 1)
    except zlib.error as e:
        raise FeedError(f"{url}: corrupt gzip file, not a sitemap ({e})") from None
    if len(data) > MAX_GUNZIPPED:
        raise FeedError(f"{url}: gzipped sitemap unpacks to more than {MAX_GUNZIPPED} bytes")
    return data


def _strip_bom(body: bytes) -> bytes:
    return body[len(_UTF8_BOM):] if body.startswith(_UTF8_BOM) else body


def _xml_parser(recover: bool) -> etree.XMLParser:
    """A parser that never touches the network, never expands entities and refuses huge trees."""
    return etree.XMLParser(resolve_entities=False, no_network=True, huge_tree=False, load_dtd=False,
                           recover=recover, remove_comments=True, remove_pis=True)


def _parse_xml(data: bytes, url: str) -> tuple[etree._Element, str | None]:
    """Parse strictly; on a syntax error, retry in recover mode and return the error as a warning."""
    try:
        return etree.fromstring(data, _xml_parser(recover=False)), None
    except etree.XMLSyntaxError as e:
        reason = f"XMLSyntaxError: {e}"[:300]
    try:
        root = etree.fromstring(data, _xml_parser(recover=True))
    except etree.XMLSyntaxError:
        root = None
    if root is None:
        raise FeedError(f"{url}: not a sitemap: not XML, nothing recoverable ({reason})")
    return root, reason


def _ill_formed(reason: str | None) -> str | None:
    return f"ill-formed sitemap: {reason}" if reason else None


def _local(el: etree._Element) -> str:
    """The element's tag without its namespace ("" for comments and processing instructions)."""
    return etree.QName(el).localname if isinstance(el.tag, str) else ""


def _children(el: etree._Element, name: str) -> list[etree._Element]:
    return [c for c in el if _local(c) == name]


def _text(el: etree._Element | None) -> str:
    return collapse_whitespace("".join(el.itertext())) if el is not None else ""


def _first_text(el: etree._Element, *path: str) -> str:
    """Text of the first element reached by following direct children named ``path``."""
    current: etree._Element | None = el
    for name in path:
        found = _children(current, name) if current is not None else []
        current = found[0] if found else None
    return _text(current)


def _absolute_http(loc: str) -> str:
    """``loc`` when it is an absolute http(s) URL without whitespace, else ""."""
    parts = urlsplit(loc)
    if parts.scheme.lower() in ("http", "https") and parts.netloc and not re.search(r"\s", loc):
        return loc
    return ""


def _child_sitemaps(root: etree._Element, url: str) -> list[str]:
    seen: dict[str, None] = {}
    for sitemap in root.iter(etree.Element):
        if _local(sitemap) == "sitemap":
            loc = _absolute_http(_first_text(sitemap, "loc"))
            if loc:
                seen.setdefault(loc)
    children = list(seen)
    if len(children) > MAX_ENTRIES:
        LOGGER.info("%s: sitemap index lists %d sitemaps; kept the first %d", url, len(children), MAX_ENTRIES)
    return children[:MAX_ENTRIES]


def _url_entries(root: etree._Element, url: str) -> tuple[list[Entry], int]:
    """Entries of a ``<urlset>`` (deduplicated, document order) and how many locs were skipped."""
    entries: dict[str, Entry] = {}
    skipped = 0
    for item in root.iter(etree.Element):
        if _local(item) != "url":
            continue
        loc = _absolute_http(_first_text(item, "loc"))
        if not loc:
            skipped += 1
            continue
        if loc in entries:
            continue
        published = _iso_utc(_first_text(item, "news", "publication_date")) or _iso_utc(_first_text(item, "lastmod"))
        entries[loc] = Entry(url=loc, title=_first_text(item, "news", "title"), published=published, guid=loc)
    return list(entries.values()), skipped


def _publication_name(root: etree._Element) -> str:
    for el in root.iter(etree.Element):
        if _local(el) == "publication":
            return _first_text(el, "name")
    return ""


def _iso_utc(value: str) -> str | None:
    """W3C datetime / ISO 8601 (or RFC 822) as ``YYYY-MM-DDTHH:MM:SSZ`` in UTC; None if unreadable.

    A date or time without a zone is taken as UTC.
    """
    value = value.strip()
    if not value:
        return None
    try:
        moment = dt.datetime.fromisoformat(value)
    except ValueError:
        try:
            moment = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.timezone.utc)
    try:
        return moment.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    except (OverflowError, ValueError):
        return None


def _newest(entries: list[Entry], url: str) -> list[Entry]:
    """At most MAX_ENTRIES: the newest when dates exist (undated last), in document order."""
    if len(entries) <= MAX_ENTRIES:
        return entries
    if not any(e.published for e in entries):
        kept = entries[:MAX_ENTRIES]
    else:
        ranked = sorted(range(len(entries)), key=lambda i: entries[i].published or "", reverse=True)
        keep = set(ranked[:MAX_ENTRIES])
        kept = [e for i, e in enumerate(entries) if i in keep]
    LOGGER.info("%s: %d entries; kept %d", url, len(entries), MAX_ENTRIES)
    return kept


# --------------------------------------------------------------------------- HTML listing pages


def parse_listing(body: bytes, url: str, link_pattern: str) -> ParsedFeed:
    """Entries for the links of an HTML listing page whose absolute URL matches ``link_pattern``.

    Links are resolved against ``url`` (or the page's ``<base href>``) without their fragment,
    matched with :func:`re.search`, deduplicated in page order, and titled with the anchor text.

    Raises:
        FeedError: the page is empty or unparsable, the pattern is not a valid regex, or no
            link matches (which usually means the site's layout changed).
    """
    try:
        pattern = re.compile(link_pattern)
    except re.error as e:
        raise FeedError(f"{url}: invalid link_pattern {link_pattern!r}: {e}") from None
    doc = html_document(body, url)
    base = urljoin(url, (doc.xpath("string(//base/@href)") or "").strip())
    entries, n_links = _matching_links(doc, base, pattern)
    if not entries:
        raise FeedError(f"{url}: no link matches link_pattern {link_pattern!r} ({n_links} links on the page); "
                        "the site's layout may have changed")
    if len(entries) > MAX_ENTRIES:
        LOGGER.info("%s: %d matching links; kept the first %d", url, len(entries), MAX_ENTRIES)
    return ParsedFeed(entries=tuple(entries[:MAX_ENTRIES]), title=_text(doc.find(".//title")), version="html")


def _matching_links(doc: lxml.html.HtmlElement, base: str, pattern: re.Pattern[str]) -> tuple[list[Entry], int]:
    """Entries for the links matching ``pattern`` (page order, deduplicated) and the number of links."""
    entries: dict[str, Entry] = {}
    weak: set[str] = set()          # titled from a title/alt attribute only: a later anchor text wins
    n_links = 0
    for anchor in doc.iter("a"):
        link = _link_target(anchor.get("href"), base)
        if not link:
            continue
        n_links += 1
        if not pattern.search(link):
            continue
        text = collapse_whitespace(anchor.text_content())
        if link not in entries or (text and link in weak):   # e.g. a photo link before the headline link
            entries[link] = Entry(url=link, title=text or _attribute_title(anchor), guid=link)
            if text:
                weak.discard(link)
            else:
                weak.add(link)
    return list(entries.values()), n_links


def html_document(body: bytes, url: str) -> lxml.html.HtmlElement:
    """Parse HTML bytes in the declared charset (``<meta charset>``), else UTF-8 if valid, else cp1252.

    Raises:
        FeedError: the page is empty or unreadable.
    """
    data = _strip_bom(body)
    if not data.strip():
        raise FeedError(f"{url}: empty page, no links")
    # Decoded by Python (its codec names, undecodable bytes replaced), handed to lxml as UTF-8.
    text = data.decode(_html_encoding(data), errors="replace")
    parser = lxml.html.HTMLParser(encoding="utf-8", no_network=True, huge_tree=False, remove_comments=True)
    try:
        doc = lxml.html.document_fromstring(text.encode("utf-8"), parser=parser)
    except (etree.ParserError, etree.XMLSyntaxError) as e:
        raise FeedError(f"{url}: unreadable HTML page ({e})") from None
    if doc is None:
        raise FeedError(f"{url}: empty page, no links")
    return doc


def _html_encoding(data: bytes) -> str:
    """The Python codec for the page: its ``<meta>`` charset, else UTF-8 when valid, else cp1252."""
    match = _META_CHARSET.search(data[:4096])
    if match:
        try:
            name = codecs.lookup(match.group(1).decode("ascii")).name
        except LookupError:
            name = ""
        if name in ("iso8859-1", "ascii"):
            return "cp1252"  # as browsers read pages labelled latin-1 or ASCII
        if name:
            return name
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return "cp1252"
    return "utf-8"


def _link_target(href: str | None, base: str) -> str:
    """Absolute http(s) URL of ``href`` without its fragment, or "" for other links."""
    href = (href or "").strip()
    if not href or href.startswith("#") or href.lower().startswith(_SKIPPED_SCHEMES):
        return ""
    link = urldefrag(urljoin(base, href)).url
    return link if urlsplit(link).scheme.lower() in ("http", "https") else ""


def collapse_whitespace(text: object) -> str:
    """``text`` as one line: runs of whitespace become one space."""
    return " ".join(str(text or "").split())


def _attribute_title(anchor: lxml.html.HtmlElement) -> str:
    """A title for an anchor without text: its ``title`` attribute, else its image's ``alt``."""
    alts = anchor.xpath(".//img/@alt")
    return collapse_whitespace(anchor.get("title")) or (collapse_whitespace(alts[0]) if alts else "")
