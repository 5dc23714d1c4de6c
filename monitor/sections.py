"""Tell opinion columns from news, and name the columnist."""

from __future__ import annotations

import re
import unicodedata
from urllib.parse import unquote, urlsplit

# Path segments Mexican outlets use for opinion: /opinion/, /columnas/, /columnistas/,
# /articulistas/, /editoriales/, /plumas/, /tribuna/ ... (accents stripped before matching)
OPINION_PATH = re.compile(
    r"/(opinion(es)?|columnas?|columnistas?|articulistas?|editorial(es)?|plumas?|tribuna|"
    r"blogs?|firmas|colaboradores|analisis-y-opinion|opinion-y-analisis|punto-de-vista|voces)(/|$)", re.I)
BYLINE_PREFIX = re.compile(r"^\s*(por|by|columna de|opini[oó]n de)\s*:?\s+", re.I)


def _fold(text: str) -> str:
    return unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode().lower()


def is_opinion_url(url: str) -> bool:
    """Whether the URL path marks an opinion piece (``/opinion/``, ``/columnas/``...)."""
    return bool(OPINION_PATH.search(_fold(unquote(urlsplit(url).path))))


def clean_byline(author: str) -> str:
    """A byline without "Por", trailing outlet names after "|" and extra spaces."""
    name = BYLINE_PREFIX.sub("", author or "").split("|")[0]
    return re.sub(r"\s+", " ", name).strip(" ,;-")


def classify_section(feed_section: str, url: str, author: str, feed_columnist: str = "") -> tuple[str, str]:
    """``(section, columnist)`` of an article.

    Opinion when its feed is an opinion feed or its URL says so; the columnist is the feed's
    columnist, else the article's byline. News articles have no columnist.
    """
    section = "opinion" if feed_section == "opinion" or is_opinion_url(url) else (feed_section or "news")
    if section != "opinion":
        return section, ""
    return section, feed_columnist or clean_byline(author)
