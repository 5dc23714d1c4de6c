"""Parse RSS/Atom/RDF bytes with feedparser into entries; tell ill-formed feeds from non-feeds."""

from __future__ import annotations

import calendar
import io
import logging
import re
from urllib.parse import urljoin, urlsplit

import feedparser

from .errors import FeedError
from .models import Entry, ParsedFeed

LOGGER = logging.getLogger(__name__)
_HTML_START = re.compile(rb"^\s*(<!--.*?-->\s*)*<(!doctype\s+html|html[\s>])", re.I | re.S)


def looks_like_html(body: bytes) -> bool:
    """Whether a document starts like an HTML page (comments and whitespace allowed before)."""
    return bool(_HTML_START.match(body[:2048]))


def parse_feed(body: bytes, url: str, headers: dict[str, str] | None = None) -> ParsedFeed:
    """Parse a feed document.

    feedparser never raises on ill-formed XML: it sets ``bozo``. An ill-formed feed that still
    yields entries comes back with ``warning`` set; a document that yields nothing and is not
    recognised as a feed raises.

    Args:
        body: the document bytes (content-encoding already removed).
        url: where it came from, to resolve relative links.
        headers: HTTP response headers (feedparser uses Content-Type for the charset).

    Raises:
        FeedError: the document is empty, HTML, or not a feed (e.g. NewsML).
    """
    if not body.strip():
        raise FeedError(f"{url}: empty document, not a feed")
    # BytesIO, not a str: feedparser treats strings as URLs/paths and could do I/O.
    parsed = feedparser.parse(io.BytesIO(body), response_headers=_lower(headers or {}), resolve_relative_uris=True)
    version = parsed.get("version", "") or ""
    bozo = bool(parsed.get("bozo"))
    reason = _bozo_reason(parsed) if bozo else None
    entries: list[Entry] = []
    for raw in parsed.entries:
        link = _entry_link(raw, url)
        if not link:
            continue
        entries.append(Entry(
            url=link,
            title=_clean(raw.get("title", "")),
            author=_clean(raw.get("author", "")),
            published=_entry_date(raw),
            summary=_clean(raw.get("summary", ""))[:2000],
            guid=str(raw.get("id", "") or ""),
        ))
    if not entries:
        if looks_like_html(body):
            raise FeedError(f"{url}: got an HTML page, not a feed")
        if not version:
            detail = f" ({reason})" if reason else ""
            raise FeedError(f"{url}: not a feed: no RSS/Atom/RDF structure and no entries{detail}")
        if bozo and reason:
            raise FeedError(f"{url}: ill-formed feed, no entries recovered ({reason})")
    if bozo and reason:
        LOGGER.warning("%s: ill-formed feed (%s); kept %d entries", url, reason, len(entries))
    return ParsedFeed(
        entries=tuple(entries),
        title=_clean(parsed.feed.get("title", "")),
        version=version,
        warning=f"ill-formed feed: {reason}" if bozo and reason else None,
    )


def _lower(headers: dict[str, str]) -> dict[str, str]:
    return {k.lower(): v for k, v in headers.items()}


def _bozo_reason(parsed: feedparser.FeedParserDict) -> str:
    exc = parsed.get("bozo_exception")
    if exc is None:
        return "unknown parser error"
    name = type(exc).__name__
    if name == "CharacterEncodingOverride":
        return ""  # harmless: the declared charset was wrong and feedparser recovered
    return f"{name}: {exc}"[:300]


def _entry_link(raw: feedparser.FeedParserDict, base: str) -> str:
    candidates = [raw.get("link", "")]
    candidates += [l.get("href", "") for l in raw.get("links", []) if l.get("rel", "alternate") == "alternate"]
    guid = raw.get("id", "")
    if raw.get("guidislink") or (isinstance(guid, str) and guid.startswith("http")):
        candidates.append(guid)
    for c in candidates:
        if not c:
            continue
        absolute = urljoin(base, c.strip())
        if urlsplit(absolute).scheme in ("http", "https"):
            return absolute
    return ""


def _entry_date(raw: feedparser.FeedParserDict) -> str | None:
    for key in ("published_parsed", "updated_parsed", "created_parsed"):
        t = raw.get(key)
        if t:
            try:
                ts = calendar.timegm(t)
            except (TypeError, ValueError, OverflowError):
                continue
            import datetime as dt

            return dt.datetime.fromtimestamp(ts, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    return None


def _clean(text: object) -> str:
    return re.sub(r"\s+", " ", str(text or "")).strip()
