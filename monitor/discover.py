"""Find an outlet's feeds and sitemaps from its homepage and propose feeds.yaml entries.

Candidates come from the homepage (``<link rel="alternate">`` feeds, ``<a>`` links that look
like feeds), ``Sitemap:`` lines of robots.txt, and the usual sitemap locations. Each one is
fetched through the injected ``fetch`` and kept only when it parses, so every proposal works.
"""

from __future__ import annotations

import logging
import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urldefrag, urljoin, urlsplit

import yaml

from .errors import FeedError, MonitorError
from .feeds import parse_feed
from .listings import collapse_whitespace, html_document, parse_sitemap
from .models import ParsedFeed

LOGGER = logging.getLogger(__name__)
Fetch = Callable[[str], tuple[int, bytes, str]]
"""``fetch(url) -> (status, body, final_url)``; may raise a MonitorError (e.g. FetchError)."""

SITEMAP_GUESSES = ("/sitemap.xml", "/sitemap_index.xml", "/news-sitemap.xml", "/sitemap-news.xml")
FEED_TYPES = ("application/rss+xml", "application/atom+xml")
MAX_LINK_CANDIDATES = 20        # <a> links that look like feeds, checked at most
MAX_NEWS_CHILDREN = 3           # news sitemaps listed in a sitemap index, checked at most
_FEED_HREF = re.compile(r"\b(rss|feeds?|atom)\b|\.(xml|rss|rdf|atom)$", re.I)
_NEWS_SITEMAP = re.compile(r"news|noticias", re.I)
_OPINION = re.compile(r"opinion|columnas|columnistas|articulistas")


@dataclass(frozen=True, slots=True)
class _Candidate:
    url: str
    hint: str          # "feed" or "sitemap": which parser to try first
    found: str         # how it was found, for the note
    title: str = ""


def discover_sources(homepage_url: str, fetch: Fetch) -> list[dict]:
    """Propose feeds.yaml feed entries (``url``, ``kind``, ``section``, ``note``) for an outlet.

    Only candidates that ``fetch`` returns with status 200 and that parse as a feed or a
    sitemap are proposed, in a deterministic order: homepage feeds, homepage feed links,
    robots.txt sitemaps, then the usual sitemap locations. The note says how each was found
    and how many entries it had. ``fetch`` does all the I/O (the caller's Fetcher).
    """
    home = _fetch_ok(fetch, homepage_url)
    base = home[1] if home else homepage_url
    candidates = _homepage_candidates(home[0], base) if home else []
    candidates += _robots_candidates(fetch, base)
    candidates += [_Candidate(urljoin(base, path), "sitemap", f"usual sitemap location {path}")
                   for path in SITEMAP_GUESSES]
    proposals: list[dict] = []
    seen: set[str] = set()
    for candidate in _dedupe(candidates):
        for proposal in _verify(fetch, candidate):
            if proposal["url"] not in seen:
                seen.add(proposal["url"])
                proposals.append(proposal)
    return proposals


def format_yaml(proposals: list[dict]) -> str:
    """A ``feeds:`` YAML snippet of ``proposals`` to paste under an outlet in feeds.yaml."""
    keys = ("url", "kind", "section", "note")
    feeds = [{k: p[k] for k in keys if p.get(k)} for p in proposals]
    header = "# Proposed by `discover`: check each source, then paste under the outlet in feeds.yaml.\n"
    if not feeds:
        header += "# Nothing found: no working feed or sitemap.\n"
    return header + yaml.safe_dump({"feeds": feeds}, sort_keys=False, allow_unicode=True, width=1000)


def guess_section(*texts: str) -> str:
    """"opinion" when any text (URL, link title) names an opinion or columns section, else "news"."""
    folded = unicodedata.normalize("NFKD", " ".join(texts)).encode("ascii", "ignore").decode().lower()
    return "opinion" if _OPINION.search(folded) else "news"


def _fetch_ok(fetch: Fetch, url: str) -> tuple[bytes, str] | None:
    """``(body, final_url)`` when ``url`` answers 200 with a body; None (logged) otherwise."""
    try:
        status, body, final_url = fetch(url)
    except MonitorError as e:
        LOGGER.info("discover: %s: %s", url, e)
        return None
    if status != 200 or not body.strip():
        LOGGER.info("discover: %s: status %s, %d bytes", url, status, len(body))
        return None
    return body, final_url or url


def _homepage_candidates(body: bytes, base: str) -> list[_Candidate]:
    """Feeds announced with ``<link rel="alternate">``, then ``<a>`` links that look like feeds."""
    try:
        doc = html_document(body, base)
    except FeedError as e:
        LOGGER.info("discover: unreadable homepage: %s", e)
        return []
    page_base = urljoin(base, (doc.xpath("string(//base/@href)") or "").strip())
    found: list[_Candidate] = []
    for link in doc.iter("link"):
        rel = (link.get("rel") or "").lower().split()
        kind = (link.get("type") or "").lower().split(";")[0].strip()
        url = _absolute(link.get("href"), page_base)
        if "alternate" in rel and kind in FEED_TYPES and url:
            found.append(_Candidate(url, "feed", f'<link rel="alternate" type="{kind}"> on the homepage',
                                    collapse_whitespace(link.get("title"))))
    host = _host_family(base)
    links = 0
    for anchor in doc.iter("a"):
        url = _absolute(anchor.get("href"), page_base)
        if url and links < MAX_LINK_CANDIDATES and _host_family(url) == host and _looks_like_feed(url):
            links += 1
            found.append(_Candidate(url, "feed", "link on the homepage", collapse_whitespace(anchor.text_content())))
    return found


def _robots_candidates(fetch: Fetch, base: str) -> list[_Candidate]:
    """The ``Sitemap:`` lines of the site's robots.txt."""
    robots_url = urljoin(base, "/robots.txt")
    got = _fetch_ok(fetch, robots_url)
    if not got:
        return []
    text = got[0].decode("utf-8", errors="replace")
    found = []
    for match in re.finditer(r"(?im)^\s*sitemap\s*:\s*(\S+)", text):
        url = _absolute(match.group(1), robots_url)
        if url:
            found.append(_Candidate(url, "sitemap", "Sitemap: line of /robots.txt"))
    return found


def _verify(fetch: Fetch, candidate: _Candidate, expand: bool = True) -> list[dict]:
    """The proposal for ``candidate`` if it fetches and parses; with ``expand``, also the news
    sitemaps listed when it is a sitemap index (one level only)."""
    got = _fetch_ok(fetch, candidate.url)
    if not got:
        return []
    body, final_url = got
    parsed = _parse_any(body, final_url, candidate.hint)
    if parsed is None:
        return []
    kind, feed, children = parsed
    if kind == "feed":
        what = f"{feed.version or 'feed'} with {len(feed.entries)} entries"
    elif children:
        what = f"sitemap index of {len(children)} sitemaps"
    else:
        what = f"{feed.version} with {len(feed.entries)} entries"
    found = candidate.found + (f" ({candidate.title!r})" if candidate.title else "")
    proposals = [{"url": final_url, "kind": kind, "section": guess_section(final_url, candidate.title),
                  "note": f"found via {found}; {what}"}]
    news = [c for c in children if _NEWS_SITEMAP.search(c)][:MAX_NEWS_CHILDREN] if expand else []
    for child in news:
        proposals += _verify(fetch, _Candidate(child, "sitemap", f"sitemap index {final_url}"), expand=False)
    return proposals


def _parse_any(body: bytes, url: str, hint: str) -> tuple[str, ParsedFeed, list[str]] | None:
    """``(kind, parsed, child sitemaps)`` trying the hinted parser first; None if neither reads it."""
    order = ("feed", "sitemap") if hint == "feed" else ("sitemap", "feed")
    reasons = []
    for kind in order:
        try:
            if kind == "feed":
                return kind, parse_feed(body, url), []
            parsed, children = parse_sitemap(body, url)
            return kind, parsed, children
        except FeedError as e:
            reasons.append(str(e))
    LOGGER.info("discover: %s: dropped (%s)", url, "; ".join(reasons))
    return None


def _dedupe(candidates: list[_Candidate]) -> list[_Candidate]:
    seen: set[str] = set()
    out = []
    for c in candidates:
        if c.url not in seen:
            seen.add(c.url)
            out.append(c)
    return out


def _absolute(href: str | None, base: str) -> str:
    """Absolute http(s) URL of ``href`` without fragment, or ""."""
    href = (href or "").strip()
    if not href:
        return ""
    url = urldefrag(urljoin(base, href)).url
    return url if urlsplit(url).scheme.lower() in ("http", "https") else ""


def _host_family(url: str) -> str:
    host = (urlsplit(url).hostname or "").lower()
    return host[4:] if host.startswith("www.") else host


def _looks_like_feed(url: str) -> bool:
    parts = urlsplit(url)
    return bool(_FEED_HREF.search(parts.path.rstrip("/")) or _FEED_HREF.search(parts.query))

