"""URL canonicalisation: one article, one id, whatever tracking junk the feed adds."""

from __future__ import annotations

import hashlib
from urllib.parse import urlsplit, urlunsplit

import courlan


def canonical_url(url: str) -> str:
    """Normalise a URL: lower-case host, tracking parameters and fragment removed.

    courlan strips utm_*/fbclid and similar parameters and sorts the query.
    """
    cleaned = courlan.clean_url(url.strip()) or url.strip()
    parts = urlsplit(cleaned)
    return urlunsplit((parts.scheme, parts.netloc, parts.path or "/", parts.query, ""))


def article_id(url: str) -> str:
    """The article's id: SHA-256 of its canonical URL."""
    return hashlib.sha256(canonical_url(url).encode("utf-8")).hexdigest()


def host_of(url: str) -> str:
    """Lower-case host[:port] of ``url``."""
    return urlsplit(url).netloc.lower()
