"""Extraction: article text and metadata from real-looking pages; clear errors otherwise."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from monitor.errors import ExtractError
from monitor.extract import extract_article, guess_language

SHARED_ES = Path(__file__).resolve().parents[2] / "shared" / "data" / "extraction" / "trafilatura_es"


def test_demo_article_text_and_metadata(demo_site) -> None:
    path, resp = next((p, r) for p, r in demo_site.site.items() if p.endswith(".html") and "/20" in p)
    article = extract_article(resp.body, demo_site.base_url + path)
    assert len(article.text) > 500
    assert article.title and article.published and article.language == "es"
    assert "Lo más leído" not in article.text  # boilerplate stays out


def test_script_text_stays_text(demo_site) -> None:
    path, resp = next((p, r) for p, r in demo_site.site.items() if b"&lt;script&gt;alert(1)" in r.body)
    article = extract_article(resp.body, demo_site.base_url + path)
    assert "<script>alert(1)</script>" in article.text  # the reader-visible text, kept verbatim


@pytest.mark.parametrize("body,reason", [
    (b"%PDF-1.7 binary", "not an HTML document"),
    (b"", "not an HTML document"),
    (b"<html><body><nav>Inicio</nav></body></html>", "(no article text found|extracted text too short)"),
])
def test_unextractable(body: bytes, reason: str) -> None:
    with pytest.raises(ExtractError, match=reason):
        extract_article(body, "https://x.example/a")


def test_broken_html_does_not_crash() -> None:
    body = b"<html><body><article><p>" + "Texto con acentos: canción, niño. ".encode() * 20 + b"<div><p><b>sin cerrar"
    article = extract_article(body, "https://x.example/roto")
    assert "canción" in article.text


def test_guess_language() -> None:
    assert guess_language("El gobernador dijo que las organizaciones de la sociedad civil son un estorbo para el desarrollo") == "es"
    assert guess_language("The governor said that the organisations of civil society are an obstacle to development") == "en"


@pytest.mark.skipif(not SHARED_ES.is_dir(), reason="../shared/data/extraction is not present")
def test_real_spanish_pages_extract() -> None:
    """Real Spanish news pages yield text with their first gold snippet and without boilerplate."""
    gold = json.loads((SHARED_ES / "gold.json").read_text())
    ok = total = 0
    for rel, g in gold.items():
        html = gzip.decompress((SHARED_ES / rel).read_bytes())
        total += 1
        try:
            text = extract_article(html, g.get("url") or "https://example.test/").text
        except ExtractError:
            continue
        ok += bool(g["expected_snippets"]) and g["expected_snippets"][0] in text
    assert total >= 40 and ok / total >= 0.8, f"{ok}/{total}"


BODY = "<p>" + "La organización presentó su informe anual sobre desapariciones en el estado. " * 6 + "</p>"


def test_metadata_from_meta_tags_and_json_ld() -> None:
    """<meta> and JSON-LD give title, author, date, site, canonical URL and description."""
    page = f"""<html lang="es"><head><title>Portada | Diario</title>
      <meta property="og:title" content="Informe sobre desapariciones">
      <meta property="og:site_name" content="Diario del Sur">
      <meta name="description" content="Resumen del informe &amp; sus cifras">
      <link rel="canonical" href="https://diario.example/nota/informe">
      <script type="application/ld+json">{{"@context": "https://schema.org", "@type": "NewsArticle",
        "headline": "Informe sobre desapariciones", "datePublished": "2024-05-02T10:00:00-06:00",
        "author": {{"@type": "Person", "name": "Lucía Ramírez Soto"}}}}</script>
      </head><body><article><h1>Informe sobre desapariciones</h1>{BODY}</article></body></html>""".encode()
    a = extract_article(page, "https://diario.example/nota/informe?utm_source=rss")
    assert a.title == "Informe sobre desapariciones"
    assert a.author == "Lucía Ramírez Soto"
    assert a.published == "2024-05-02"
    assert a.site_name == "Diario del Sur"
    assert a.canonical_url == "https://diario.example/nota/informe"
    assert a.description.startswith("Resumen del informe")
    assert a.language == "es"


def test_metadata_from_markup_when_no_meta() -> None:
    """Without <meta>: the <title>, a byline in the markup and a date in the URL still count."""
    page = f"""<html><head><title>Columna: el agua de Xochimilco</title></head><body><article>
      <h1>Columna: el agua de Xochimilco</h1><div class="author">Por Martín Esquivel Ríos</div>
      {BODY}</article></body></html>""".encode()
    a = extract_article(page, "https://diario.example/2023/11/14/columna-agua.html")
    assert a.title.startswith("Columna: el agua de Xochimilco")
    assert "Martín Esquivel Ríos" in a.author
    assert a.published == "2023-11-14"
    assert a.canonical_url == ""       # the page's own URL is not repeated as its canonical


def test_feed_author_stands_in_for_the_byline_search() -> None:
    """<meta> author first; then the feed item's author; the markup's byline only when neither has one."""
    page = f"""<html><head><title>Nota</title></head><body><article><h1>Nota</h1>
      <div class="author">Por Martín Esquivel Ríos</div>{BODY}</article></body></html>""".encode()
    assert extract_article(page, "https://diario.example/n.html", author_hint="Ana Beltrán").author == "Ana Beltrán"
    assert "Martín Esquivel Ríos" in extract_article(page, "https://diario.example/n.html").author
    with_meta = page.replace(b"<title>", b'<meta name="author" content="Rosa Medina Flores"><title>')
    assert extract_article(with_meta, "https://diario.example/n.html", author_hint="Ana Beltrán").author == "Rosa Medina Flores"
