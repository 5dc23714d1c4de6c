"""Offline demo news site: three fictional Mexican outlets, their RSS/Atom feeds and an HTTP server."""

from __future__ import annotations

import argparse
import hashlib
import html
import json
import logging
import signal
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from email.utils import format_datetime, parsedate_to_datetime
from functools import lru_cache
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from string import Template
from typing import Any, cast
from urllib.parse import quote, urlsplit

import yaml

logger = logging.getLogger(__name__)

CONTENT_PATH = Path(__file__).with_name("content.yaml")
HTML_TYPE = "text/html; charset=utf-8"
FEED_TYPES = {
    "rss": "application/rss+xml; charset=utf-8",
    "atom": "application/atom+xml; charset=utf-8",
}
SECTION_LABELS = {"news": "Noticias", "opinion": "Opinión"}
MONTHS = ("enero", "febrero", "marzo", "abril", "mayo", "junio", "julio", "agosto",
          "septiembre", "octubre", "noviembre", "diciembre")
TAG_PREFIX = "tag:demo-news.invalid,2026:"


# --------------------------------------------------------------------------- content model

@dataclass(frozen=True)
class Response:
    """One HTTP response of the demo site."""

    status: int
    headers: dict[str, str]
    body: bytes


@dataclass(frozen=True)
class Feed:
    """A feed of one outlet (``broken`` feeds are served as malformed XML on purpose)."""

    id: str
    section: str
    format: str
    path: str
    title: str
    broken: bool = False
    note: str = ""


@dataclass(frozen=True)
class Outlet:
    """A fictional news outlet."""

    id: str
    name: str
    scope: str
    city: str
    tagline: str
    layout: str
    feeds: tuple[Feed, ...]
    state: str | None = None

    @property
    def home(self) -> str:
        """Path of the outlet's front page."""
        return f"/{self.id}/"


@dataclass(frozen=True)
class Article:
    """An article (or, for dead links, only its feed entry)."""

    outlet: str
    slug: str
    section: str
    title: str
    author: str
    published: datetime
    paragraphs: tuple[str, ...] = ()
    column: str = ""
    summary_text: str = ""
    expected: Mapping[str, Any] = field(default_factory=dict, compare=False)

    @property
    def path(self) -> str:
        """URL path of the article page."""
        return f"/{self.outlet}/{self.published:%Y/%m/%d}/{self.slug}.html"

    @property
    def guid(self) -> str:
        """Stable identifier, independent of the server's address."""
        return f"{TAG_PREFIX}{self.outlet}/{self.slug}"

    @property
    def summary(self) -> str:
        """Short plain-text summary (explicit, or the start of the first paragraph)."""
        return self.summary_text or _shorten(self.paragraphs[0] if self.paragraphs else "")


@dataclass(frozen=True)
class Content:
    """Everything the demo site shows."""

    outlets: tuple[Outlet, ...]
    articles: tuple[Article, ...]
    dead_links: tuple[Article, ...]

    def articles_of(self, outlet_id: str, section: str | None = None) -> list[Article]:
        """Articles of one outlet (optionally one section), newest first."""
        found = [a for a in self.articles
                 if a.outlet == outlet_id and (section is None or a.section == section)]
        return sorted(found, key=lambda a: a.published, reverse=True)


def _shorten(text: str, width: int = 220) -> str:
    """Cut text at a word boundary, adding an ellipsis when shortened."""
    text = " ".join(text.split())
    if len(text) <= width:
        return text
    return text[:width].rsplit(" ", 1)[0].rstrip(",;:.") + "…"


def _datetime(value: Any) -> datetime:
    """Parse an ISO 8601 timestamp that must carry a timezone."""
    parsed = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
    if parsed.tzinfo is None:
        raise ValueError(f"timestamp without timezone: {value!r}")
    return parsed


def _article(raw: Mapping[str, Any]) -> Article:
    return Article(
        outlet=raw["outlet"], slug=raw["slug"], section=raw["section"], title=raw["title"],
        author=raw["author"], published=_datetime(raw["published"]),
        paragraphs=tuple(" ".join(p.split()) for p in raw.get("paragraphs", ())),
        column=raw.get("column", ""), summary_text=" ".join(raw.get("summary", "").split()),
        expected=raw.get("expected", {}),
    )


@lru_cache(maxsize=4)
def load_content(path: Path = CONTENT_PATH) -> Content:
    """Load and validate the demo site's content from ``content.yaml``."""
    raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    outlets = tuple(
        Outlet(id=o["id"], name=o["name"], scope=o["scope"], city=o["city"], tagline=o["tagline"],
               layout=o["layout"], state=o.get("state"),
               feeds=tuple(Feed(**f) for f in o["feeds"]))
        for o in raw["outlets"]
    )
    content = Content(outlets, tuple(_article(a) for a in raw["articles"]),
                      tuple(_article(a) for a in raw.get("dead_links", ())))
    ids = {o.id for o in outlets}
    paths = [a.path for a in content.articles + content.dead_links]
    if len(set(paths)) != len(paths):
        raise ValueError("duplicate article paths in content.yaml")
    for art in content.articles + content.dead_links:
        if art.outlet not in ids or art.section not in SECTION_LABELS:
            raise ValueError(f"bad outlet or section for {art.slug}")
    return content


# --------------------------------------------------------------------------- HTML

def _e(value: object) -> str:
    """HTML/XML-escape any value."""
    return html.escape(str(value), quote=True)


def _human_date(when: datetime) -> str:
    return f"{when.day} de {MONTHS[when.month - 1]} de {when.year}, {when:%H:%M} h"


def _http_date(when: datetime) -> str:
    return format_datetime(when.astimezone(timezone.utc), usegmt=True)


def _stable_int(text: str) -> int:
    return int(hashlib.sha256(text.encode()).hexdigest()[:8], 16)


LAYOUTS: dict[str, dict[str, Any]] = {
    "clasico": {"prefix": "hs", "menu": ("Portada", "Guerrero", "Acapulco", "Opinión", "Deportes"),
                "style": "body{font-family:Georgia,serif;margin:0;background:#f6f3ee}"
                         ".hs-header{background:#7a1c1c;color:#fff;padding:12px 24px}"
                         ".hs-wrap{display:flex;gap:32px;max-width:1100px;margin:auto}"
                         ".hs-main{flex:3}.hs-lateral{flex:1}"},
    "moderno": {"prefix": "dm", "menu": ("Inicio", "Nacional", "Economía", "Opinión", "Tecnología"),
                "style": "body{font-family:system-ui,sans-serif;margin:0;color:#111}"
                         ".dm-masthead{border-bottom:4px solid #0b3d91;padding:8px 5vw}"
                         ".dm-layout{display:grid;grid-template-columns:1fr 320px;gap:40px;padding:0 5vw}"},
    "portal": {"prefix": "lv", "menu": ("Inicio", "Oaxaca", "Istmo", "Opinión", "Cultura"),
               "style": "body{font-family:Arial,sans-serif;margin:0;background:#fff}"
                        ".lv-cabecera{background:#1d5c3a;color:#fff}.lv-cuerpo{display:flex}"
                        ".lv-izquierda{width:260px}.lv-centro{flex:1;padding:0 24px}"},
}

HEAD = Template("""<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>$title | $outlet</title>
<meta name="description" content="$description">
<meta name="author" content="$author">
<link rel="canonical" href="$url">
<meta property="og:type" content="article">
<meta property="og:title" content="$title">
<meta property="og:description" content="$description">
<meta property="og:url" content="$url">
<meta property="og:site_name" content="$outlet">
<meta property="og:locale" content="es_MX">
<meta property="article:published_time" content="$iso">
<meta property="article:section" content="$section">
<meta property="article:author" content="$author">
$feed_links""")

CLASICO = Template("""<!DOCTYPE html>
<html lang="es-MX">
<head>
$head
<style>$style</style>
</head>
<body class="hs-body">
<div class="hs-topbar">$city · $date</div>
<header class="hs-header">
  <a class="hs-logo" href="$home">$outlet</a>
  <p class="hs-lema">$tagline</p>
  <nav class="hs-menu" aria-label="Secciones"><ul>$menu</ul></nav>
</header>
<div class="hs-wrap">
  <main class="hs-main">
    <article class="hs-nota">
      <p class="hs-seccion">$kicker</p>
      <h1 class="hs-titulo">$title</h1>
      <p class="hs-firma">Por <span class="hs-autor">$author</span> | <time datetime="$iso">$date</time></p>
      <div class="hs-cuerpo">
$paragraphs
      </div>
      <div class="hs-compartir"><span>Compartir:</span> $share</div>
    </article>
    <section class="hs-relacionadas"><h2>Notas relacionadas</h2><ul>$related</ul></section>
    <section class="hs-comentarios"><h2>Comentarios ($comments)</h2>
      <p><a href="#login">Inicia sesión</a> para comentar. Los comentarios son responsabilidad de sus autores.</p></section>
  </main>
  <aside class="hs-lateral">
    <h2>Lo más leído</h2><ol>$popular</ol>
    <div class="hs-publicidad">Publicidad</div>
  </aside>
</div>
<footer class="hs-pie">
  <p>© 2026 $outlet. Todos los derechos reservados. Prohibida la reproducción total o parcial
  del contenido sin autorización previa y por escrito. <a href="#aviso">Aviso de privacidad</a> ·
  <a href="#terminos">Términos y condiciones</a></p>
  <p>Medio ficticio de demostración: personas, hechos y declaraciones son inventados.</p>
</footer>
</body>
</html>
""")

MODERNO = Template("""<!DOCTYPE html>
<html lang="es">
<head>
$head
<script type="application/ld+json">$jsonld</script>
<style>$style</style>
</head>
<body>
<div id="dm-app">
<header class="dm-masthead">
  <button class="dm-burger" aria-label="Abrir menú">☰</button>
  <a class="dm-brand" href="$home">$outlet</a>
  <nav class="dm-nav"><ul class="dm-nav__list">$menu</ul></nav>
</header>
<nav class="dm-breadcrumb" aria-label="Ruta"><a href="$home">Inicio</a> › <span>$kicker</span></nav>
<div class="dm-layout">
  <main>
    <article class="dm-story">
      <header class="dm-story__header">
        <span class="dm-kicker">$kicker</span>
        <h1 class="dm-story__title">$title</h1>
        <div class="dm-byline"><span class="dm-byline__author">$author</span>
          <time class="dm-byline__date" datetime="$iso">$date</time></div>
      </header>
      <ul class="dm-share">$share</ul>
      <div class="dm-story__body">
$paragraphs
      </div>
    </article>
    <section class="dm-related"><h2 class="dm-h2">Te recomendamos</h2><ul class="dm-cards">$related</ul></section>
    <section class="dm-comments" id="comentarios">
      <button class="dm-comments__toggle">Mostrar comentarios ($comments)</button>
    </section>
  </main>
  <aside class="dm-rail">
    <section class="dm-most-read"><h2 class="dm-h2">Lo más leído</h2><ol>$popular</ol></section>
    <section class="dm-newsletter"><h2 class="dm-h2">Boletín</h2>
      <p>Recibe cada mañana las noticias más importantes.</p></section>
  </aside>
</div>
<footer class="dm-footer">
  <div class="dm-footer__legal">$outlet es una publicación ficticia de demostración. © 2026.
  Queda prohibida la reproducción sin permiso. <a href="#privacidad">Privacidad</a>
  · <a href="#contacto">Contacto</a></div>
</footer>
</div>
</body>
</html>
""")

PORTAL = Template("""<!DOCTYPE html>
<html lang="es-MX">
<head>
$head
<style>$style</style>
</head>
<body id="lv">
<div class="lv-cabecera">
  <div class="lv-ultima"><strong>Última hora:</strong> $ticker</div>
  <a class="lv-logotipo" href="$home">$outlet</a> <span class="lv-lema">$tagline</span>
  <div class="lv-menu" role="navigation"><ul>$menu</ul></div>
</div>
<div class="lv-cuerpo">
  <div class="lv-izquierda">
    <div class="lv-caja"><h3>Lo más leído</h3><ul>$popular</ul></div>
    <div class="lv-caja lv-anuncio">Anúnciate con nosotros</div>
  </div>
  <div class="lv-centro">
    <article id="nota" class="lv-articulo" itemscope itemtype="https://schema.org/NewsArticle">
      <div class="lv-seccion">$kicker</div>
      <h1 itemprop="headline">$title</h1>
      <div class="lv-datos">
        <span itemprop="author">$author</span> ·
        <time itemprop="datePublished" datetime="$iso">$date</time> · $city
      </div>
      <div class="lv-texto" itemprop="articleBody">
$paragraphs
      </div>
      <div class="lv-redes">$share</div>
    </article>
    <div class="lv-relacionadas"><h3>También te puede interesar</h3><ul>$related</ul></div>
    <div class="lv-comentarios"><h3>Deja tu comentario ($comments)</h3>
      <form action="#" method="post"><textarea name="comentario" rows="3"></textarea>
      <button type="submit">Publicar</button></form></div>
  </div>
</div>
<div class="lv-pie">La Voz de Oaxaca · Medio ficticio de demostración · © 2026 Todos los
derechos reservados · <a href="#aviso">Aviso legal</a></div>
</body>
</html>
""")

PAGE_TEMPLATES = {"clasico": CLASICO, "moderno": MODERNO, "portal": PORTAL}

INDEX = Template("""<!DOCTYPE html>
<html lang="es-MX">
<head>
<meta charset="utf-8">
<title>$title</title>
<meta name="description" content="$description">
<link rel="canonical" href="$url">
$feed_links
</head>
<body class="$prefix-portada">
<header class="$prefix-header"><h1>$title</h1><p>$description</p></header>
<main>
$sections
</main>
<footer class="$prefix-pie"><p>Sitio ficticio de demostración. © 2026.</p></footer>
</body>
</html>
""")

NOT_FOUND_PAGE = """<!DOCTYPE html>
<html lang="es"><head><meta charset="utf-8"><title>404 - Página no encontrada</title></head>
<body><h1>Página no encontrada</h1><p>El contenido que buscas no existe o fue retirado.</p>
<p><a href="/">Volver al inicio</a></p></body></html>
""".encode("utf-8")


def _links(items: list[tuple[str, str]]) -> str:
    return "".join(f'<li><a href="{_e(href)}">{_e(text)}</a></li>' for href, text in items)


def _feed_links(outlet: Outlet, base: str) -> str:
    return "\n".join(
        f'<link rel="alternate" type="{_e(FEED_TYPES[f.format].split(";")[0])}" '
        f'title="{_e(f.title)}" href="{_e(base + f.path)}">'
        for f in outlet.feeds if not f.broken
    )


def _share(url: str, title: str, layout: str) -> str:
    targets = [
        ("Facebook", "https://www.facebook.com/sharer/sharer.php?u=" + quote(url, safe="")),
        ("X", f"https://twitter.com/intent/tweet?url={quote(url, safe='')}&text={quote(title, safe='')}"),
        ("WhatsApp", "https://wa.me/?text=" + quote(f"{title} {url}", safe="")),
    ]
    tag = "li" if layout == "moderno" else "span"
    return "".join(
        f'<{tag} class="share share-{_e(name.lower())}"><a href="{_e(href)}" rel="noopener" '
        f'target="_blank">{_e(name)}</a></{tag}>'
        for name, href in targets
    )


def _json_ld(art: Article, outlet: Outlet, url: str) -> str:
    data = {"@context": "https://schema.org", "@type": "NewsArticle", "headline": art.title,
            "datePublished": art.published.isoformat(), "author": {"@type": "Person", "name": art.author},
            "publisher": {"@type": "Organization", "name": outlet.name}, "mainEntityOfPage": url,
            "description": art.summary}
    text = json.dumps(data, ensure_ascii=False)
    # JSON inside <script> is raw text: neutralise anything that could close or open markup.
    return text.replace("&", "\\u0026").replace("<", "\\u003c").replace(">", "\\u003e")


def render_article(content: Content, outlet: Outlet, art: Article, base: str) -> str:
    """Render one article page in its outlet's layout."""
    layout = LAYOUTS[outlet.layout]
    url = base + art.path
    others = [a for a in content.articles_of(outlet.id) if a.slug != art.slug]
    popular = sorted(others, key=lambda a: _stable_int(a.slug))[:5]
    related = [a for a in others if a.section == art.section][:3]
    kicker = SECTION_LABELS[art.section] + (f" · {art.column}" if art.column else "")
    head = HEAD.substitute(
        title=_e(art.title), outlet=_e(outlet.name), description=_e(art.summary), author=_e(art.author),
        url=_e(url), iso=_e(art.published.isoformat()), section=_e(SECTION_LABELS[art.section]),
        feed_links=_feed_links(outlet, base),
    )
    menu = _links([(outlet.home if i == 0 else f"{outlet.home}#{_slugify(label)}", label)
                   for i, label in enumerate(layout["menu"])])
    return PAGE_TEMPLATES[outlet.layout].substitute(
        head=head, style=_e(layout["style"]), jsonld=_json_ld(art, outlet, url),
        outlet=_e(outlet.name), tagline=_e(outlet.tagline), city=_e(outlet.city), home=_e(outlet.home),
        menu=menu, kicker=_e(kicker), title=_e(art.title), author=_e(art.author),
        iso=_e(art.published.isoformat()), date=_e(_human_date(art.published)),
        paragraphs="\n".join(f"        <p>{_e(p)}</p>" for p in art.paragraphs),
        share=_share(url, art.title, outlet.layout),
        related=_links([(a.path, a.title) for a in related]),
        popular=_links([(a.path, a.title) for a in popular]),
        ticker=" | ".join(f'<a href="{_e(a.path)}">{_e(a.title)}</a>' for a in others[:2]),
        comments=_stable_int(art.slug + "#c") % 60,
    )


def _slugify(label: str) -> str:
    table = str.maketrans("áéíóúñ", "aeioun")
    return label.lower().translate(table).replace(" ", "-")


def render_index(content: Content, outlet: Outlet, base: str) -> str:
    """Render an outlet's front page: articles by section, newest first."""
    sections = []
    for section, label in SECTION_LABELS.items():
        items = "".join(
            f'<li class="teaser"><a href="{_e(a.path)}">{_e(a.title)}</a> '
            f'<span class="autor">{_e(a.author)}</span> '
            f'<time datetime="{_e(a.published.isoformat())}">{_e(_human_date(a.published))}</time>'
            f'<p>{_e(a.summary)}</p></li>'
            for a in content.articles_of(outlet.id, section)
        )
        sections.append(f'<section id="{_e(_slugify(label))}"><h2>{_e(label)}</h2><ul>{items}</ul></section>')
    return INDEX.substitute(
        title=_e(outlet.name), description=_e(outlet.tagline), url=_e(base + outlet.home),
        feed_links=_feed_links(outlet, base), prefix=_e(LAYOUTS[outlet.layout]["prefix"]),
        sections="\n".join(sections),
    )


def render_root(content: Content, base: str) -> str:
    """Render the root page linking every outlet and its feeds."""
    blocks = []
    for o in content.outlets:
        feeds = _links([(f.path, f"{f.title} ({f.format.upper()})") for f in o.feeds])
        where = o.state or "Nacional"
        blocks.append(f'<section><h2><a href="{_e(o.home)}">{_e(o.name)}</a></h2>'
                      f'<p>{_e(where)} · {_e(o.tagline)}</p><ul>{feeds}</ul></section>')
    return INDEX.substitute(
        title="Medios de demostración", description="Sitio de noticias ficticio para probar el monitor.",
        url=_e(base + "/"), feed_links="", prefix="demo", sections="\n".join(blocks),
    )


# --------------------------------------------------------------------------- feeds

RSS = Template("""<?xml version="1.0" encoding="UTF-8"?>
<rss version="2.0" xmlns:atom="http://www.w3.org/2005/Atom" xmlns:dc="http://purl.org/dc/elements/1.1/">
<channel>
  <title>$title</title>
  <link>$home</link>
  <description>$description</description>
  <language>es-mx</language>
  <lastBuildDate>$updated</lastBuildDate>
  <atom:link href="$self" rel="self" type="application/rss+xml"/>
$items""")
RSS_END = "</channel>\n</rss>\n"
RSS_ITEM = Template("""  <item>
    <title>$title</title>
    <link>$url</link>
    <guid isPermaLink="true">$url</guid>
    <pubDate>$date</pubDate>
    <dc:creator>$author</dc:creator>
    <category>$section</category>
    <description>$summary</description>
  </item>
""")

ATOM = Template("""<?xml version="1.0" encoding="utf-8"?>
<feed xmlns="http://www.w3.org/2005/Atom" xml:lang="es-MX">
  <title>$title</title>
  <subtitle>$description</subtitle>
  <id>$id</id>
  <link rel="self" type="application/atom+xml" href="$self"/>
  <link rel="alternate" type="text/html" href="$home"/>
  <updated>$updated</updated>
  <generator>monitor.demo</generator>
$items</feed>
""")
ATOM_ENTRY = Template("""  <entry>
    <title>$title</title>
    <id>$id</id>
    <link rel="alternate" type="text/html" href="$url"/>
    <published>$date</published>
    <updated>$date</updated>
    <author><name>$author</name></author>
    <category term="$term" label="$section"/>
    <summary type="text">$summary</summary>
  </entry>
""")


def feed_items(content: Content, outlet: Outlet, feed: Feed) -> list[Article]:
    """Entries of a feed, newest first (the broken feed carries only the latest three)."""
    items = content.articles_of(outlet.id, feed.section)
    if feed.broken:
        return items[:3]
    items += [d for d in content.dead_links if d.outlet == outlet.id and d.section == feed.section]
    return sorted(items, key=lambda a: a.published, reverse=True)


def render_feed(content: Content, outlet: Outlet, feed: Feed, base: str) -> str:
    """Render a feed as RSS 2.0 or Atom 1.0 with absolute links under ``base``."""
    items = feed_items(content, outlet, feed)
    common = {"title": _e(feed.title), "description": _e(outlet.tagline), "home": _e(base + outlet.home),
              "self": _e(base + feed.path)}
    if feed.format == "atom":
        entries = "".join(ATOM_ENTRY.substitute(
            title=_e(a.title), id=_e(a.guid), url=_e(base + a.path), date=_e(a.published.isoformat()),
            author=_e(a.author), term=_e(a.section), section=_e(SECTION_LABELS[a.section]),
            summary=_e(a.summary)) for a in items)
        return ATOM.substitute(common, id=_e(f"{TAG_PREFIX}{outlet.id}/{feed.id}"), items=entries,
                               updated=_e(items[0].published.isoformat()))
    entries = [RSS_ITEM.substitute(
        title=_e(a.title), url=_e(base + a.path), date=_e(format_datetime(a.published)),
        author=_e(a.author), section=_e(SECTION_LABELS[a.section]), summary=_e(a.summary))
        for a in items]
    if not feed.broken:
        return RSS.substitute(common, updated=_e(format_datetime(items[0].published)),
                              items="".join(entries)) + RSS_END
    # Deliberately malformed: an undefined entity and a document truncated mid-element.
    last = items[-1]
    tail = (f"  <item>\n    <title>{_e(last.title)} &mdash; en desarrollo</title>\n"
            f"    <link>{_e(base + last.path)}</link>\n    <description>{_e(last.summary[:60])}")
    return RSS.substitute(common, updated=_e(format_datetime(items[0].published)),
                          items="".join(entries[:-1]) + tail)


# --------------------------------------------------------------------------- site

def _ok(body: str, content_type: str, modified: datetime | None = None, **extra: str) -> Response:
    data = body.encode("utf-8")
    headers = {"Content-Type": content_type, "ETag": '"' + hashlib.sha256(data).hexdigest()[:20] + '"'}
    if modified is not None:
        headers["Last-Modified"] = _http_date(modified)
    headers.update(extra)
    return Response(200, headers, data)


def not_found() -> Response:
    """The site's 404 page."""
    return Response(404, {"Content-Type": HTML_TYPE}, NOT_FOUND_PAGE)


def build_site(base_url: str) -> dict[str, Response]:
    """Map every URL path of the demo site to its response, with absolute links under ``base_url``."""
    base = base_url.rstrip("/")
    content = load_content()
    site = {
        "/": _ok(render_root(content, base), HTML_TYPE),
        "/robots.txt": _ok("User-agent: *\nAllow: /\n", "text/plain; charset=utf-8"),
    }
    for outlet in content.outlets:
        articles = content.articles_of(outlet.id)
        site[outlet.home] = _ok(render_index(content, outlet, base), HTML_TYPE, articles[0].published)
        site[outlet.home.rstrip("/")] = Response(301, {"Location": base + outlet.home,
                                                       "Content-Type": HTML_TYPE}, b"")
        for art in articles:
            site[art.path] = _ok(render_article(content, outlet, art, base), HTML_TYPE, art.published)
        for feed in outlet.feeds:
            newest = feed_items(content, outlet, feed)[0].published
            site[feed.path] = _ok(render_feed(content, outlet, feed, base), FEED_TYPES[feed.format],
                                  newest, **{"Cache-Control": "max-age=300"})
    return site


class _IndentDumper(yaml.SafeDumper):
    """SafeDumper that indents block sequences under their key."""

    def increase_indent(self, flow: bool = False, indentless: bool = False) -> None:
        return super().increase_indent(flow, False)


class _FlowList(list[str]):
    """A list that YAML writes in flow style (``[a, b]``)."""


_IndentDumper.add_representer(
    _FlowList, lambda dumper, data: dumper.represent_sequence("tag:yaml.org,2002:seq", data, flow_style=True))


def own_address(base_url: str) -> list[str]:
    """``allow_private`` entries (``IP:PORT``) for exactly the server at ``base_url`` (a name: each address)."""
    import ipaddress
    import socket
    from urllib.parse import urlsplit

    parts = urlsplit(base_url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    try:
        ips = [ipaddress.ip_address(host)]
    except ValueError:
        ips = [ipaddress.ip_address(a[4][0]) for a in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)]
    out = [f"[{ip}]:{port}" if ip.version == 6 else f"{ip}:{port}" for ip in ips]
    return list(dict.fromkeys(out))


def feeds_yaml(base_url: str) -> str:
    """A ``feeds.yaml`` (schema version 1) listing the demo outlets and feeds under ``base_url``."""
    base = base_url.rstrip("/")
    outlets = []
    for o in load_content().outlets:
        entry: dict[str, Any] = {"name": o.name, "id": o.id, "homepage": base + o.home, "scope": o.scope}
        if o.scope == "regional" and o.state:
            entry["state"] = o.state
        entry["tags"] = _FlowList(["demo"])
        entry["feeds"] = [{"url": base + f.path, "section": f.section, "verified": True,
                           **({"note": f.note} if f.note else {})} for f in o.feeds]
        outlets.append(entry)
    # one loopback host serves every demo outlet: a short politeness delay keeps the demo quick, and
    # allow_private lets the crawler reach exactly this server (loopback is refused otherwise)
    doc = {"version": 1, "defaults": {"language": "es", "country": "MX", "per_host_delay_s": 0.05,
                                      "allow_private": _FlowList(own_address(base))},
           "outlets": outlets}
    body = yaml.dump(doc, Dumper=_IndentDumper, sort_keys=False, allow_unicode=True,
                     default_flow_style=False, width=120)
    return "# Feeds of the offline demo news site (python -m monitor.demo.site).\n" + body


# --------------------------------------------------------------------------- server

def _not_modified(request: Mapping[str, str], headers: Mapping[str, str]) -> bool:
    """Whether a conditional GET can be answered 304 (If-None-Match wins over If-Modified-Since)."""
    if_none_match = request.get("If-None-Match")
    if if_none_match is not None:
        etag = headers.get("ETag")
        tags = [t.strip().removeprefix("W/") for t in if_none_match.split(",")]
        return etag is not None and ("*" in tags or etag in tags)
    since, modified = request.get("If-Modified-Since"), headers.get("Last-Modified")
    if not since or not modified:
        return False
    try:
        return parsedate_to_datetime(modified) <= parsedate_to_datetime(since)
    except (TypeError, ValueError):
        return False


class _SiteServer(ThreadingHTTPServer):
    daemon_threads = True
    site: dict[str, Response]


class _Handler(BaseHTTPRequestHandler):
    server_version = "DemoNews/1.0"

    def do_GET(self) -> None:  # noqa: N802 - http.server naming
        self._respond(with_body=True)

    def do_HEAD(self) -> None:  # noqa: N802
        self._respond(with_body=False)

    def _respond(self, with_body: bool) -> None:
        path = urlsplit(self.path).path or "/"
        resp = cast(_SiteServer, self.server).site.get(path) or not_found()
        if resp.status == 200 and _not_modified(self.headers, resp.headers):
            kept = {k: v for k, v in resp.headers.items() if k in ("ETag", "Last-Modified", "Cache-Control")}
            resp = Response(304, kept, b"")
        self.send_response(resp.status)
        for name, value in resp.headers.items():
            self.send_header(name, value)
        if resp.status != 304:
            self.send_header("Content-Length", str(len(resp.body)))
        self.end_headers()
        if with_body and resp.body:
            self.wfile.write(resp.body)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - signature from stdlib
        logger.debug("%s " + format, self.address_string(), *args)


class DemoServer:
    """Serve the demo site from a daemon thread; use as a context manager or via start()/stop()."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.host = host
        self.port = port
        self._httpd: _SiteServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        """Root URL of the running server, without trailing slash."""
        if self._httpd is None:
            raise RuntimeError("DemoServer is not running")
        host, port = self._httpd.server_address[:2]
        host = str(host)
        return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"

    @property
    def site(self) -> dict[str, Response]:
        """The responses being served, by path."""
        if self._httpd is None:
            raise RuntimeError("DemoServer is not running")
        return self._httpd.site

    def start(self) -> DemoServer:
        """Bind the socket, build the site for the bound address and start serving."""
        if self._httpd is not None:
            return self
        httpd = _SiteServer((self.host, self.port), _Handler)
        self._httpd = httpd
        httpd.site = build_site(self.base_url)
        self._thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.1},
                                        name="demo-news-site", daemon=True)
        self._thread.start()
        logger.info("demo news site serving at %s", self.base_url)
        return self

    def stop(self) -> None:
        """Stop serving and release the socket."""
        if self._httpd is None:
            return
        self._httpd.shutdown()
        self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._httpd, self._thread = None, None

    def __enter__(self) -> DemoServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _raise_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    """Command line: serve the demo site until Ctrl-C."""
    parser = argparse.ArgumentParser(description="Serve the offline demo news site.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--write-feeds", metavar="PATH", type=Path,
                        help="also write a feeds.yaml for the running site to PATH")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    server = DemoServer(args.host, args.port).start()
    print(f"Demo news site at {server.base_url}/ (Ctrl-C to stop)", flush=True)
    if args.write_feeds:
        args.write_feeds.write_text(feeds_yaml(server.base_url), encoding="utf-8")
        print(f"feeds.yaml written to {args.write_feeds}", flush=True)
    signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
