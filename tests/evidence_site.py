"""A small news site with smears against Centro Prodh, crawled, classified, reviewed, then edited and deleted.

Used by the evidence and dossier tests: the real pipeline over loopback, the keyword baseline.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from monitor import store
from monitor.classifier.registry import load_classifier
from monitor.pipeline import crawl_once
from monitor.recheck import recheck
from tests.pages import article_html, rss, story_text
from tests.test_crawling import config_for

ROOT = Path(__file__).resolve().parents[1]
COLUMN = [
    "Hay preguntas que en este país parecen prohibidas y que los lectores merecen ver respondidas con claridad.",
    "Los abogados del Centro Prodh son agentes extranjeros al servicio de intereses oscuros y buscan desestabilizar "
    "al país con cada informe que publican desde sus oficinas.",
    "Nadie pide cerrar organizaciones, pero la sociedad tiene derecho a saber quién financia a esos grupos y con qué fines.",
]
COLUMN_EDITED = COLUMN[:1] + ["El Centro Prodh publicó un informe que merece ser discutido con seriedad."] + COLUMN[2:]
GENERAL = [
    "En conferencia de prensa en la zona militar, el mando castrense respondió a las preguntas de los reporteros.",
    "El general Juan Montenegro Ruiz dijo que los abogados del Centro Prodh son defensores de delincuentes y que la "
    "tortura inventada sirve para liberar criminales.",
    "La conferencia terminó sin preguntas sobre los expedientes judiciales que se mencionaron durante la mañana.",
]
XSS = [
    "Un texto con marcado peligroso <script>alert('xss')</script> y <img src=x onerror=alert(1)> publicado hoy.",
    "Para el autor, el Centro Prodh forma parte de una red de corrupción que lucra con las víctimas y vive de donativos "
    "extranjeros que nadie audita.",
    "El columnista cerró su texto pidiendo una auditoría a todas las organizaciones civiles del país.",
]
GIEI = [
    "Los integrantes del GIEI son traidores a la patria y expertos a sueldo que vinieron a desacreditar al ejército.",
    "La columna fue publicada en la sección de opinión del diario y compartida en redes sociales.",
    "El autor no respondió a las solicitudes de comentario enviadas por este medio durante la semana.",
]
PAGES = {"/opinion/agentes.html": ("¿Quién paga al Centro Prodh?", COLUMN, "Pedro Columnista"),
         "/nacional/general.html": ("General acusa a ONG de defender delincuentes", GENERAL, ""),
         "/opinion/peligro.html": ("<script>alert('título')</script> La red del Centro Prodh", XSS, ""),
         "/opinion/giei.html": ("Expertos a sueldo", GIEI, ""),
         "/nacional/puente.html": ("Se derrumba un puente", story_text(0), "")}


def build(site: Any, db_path: Path, **defaults: Any) -> tuple[Any, Any]:
    """Publish, crawl + classify, review, then edit one article and delete another and re-check: (db, config)."""
    for path, (title, paragraphs, author) in PAGES.items():
        site.add(path, article_html(title, paragraphs, author=author))
    feed = site.add("/feed.xml", rss([(t, site.url(p)) for p, (t, _, _) in PAGES.items()]),
                    content_type="application/rss+xml")
    config = config_for([{"url": feed, "outlet": "diario-prueba"}], **defaults)
    db = store.connect(db_path)
    classifier = load_classifier(ROOT / "classifiers" / "keyword-baseline")
    crawl_once(db, config, classifier)
    ids = article_ids(db)
    store.record_review(db, ids["agentes"], "ana", "confirm", note="columna firmada")
    store.record_review(db, ids["giei"], "luis", "reject", note="no es sobre Prodh")
    site.add("/opinion/agentes.html", article_html(PAGES["/opinion/agentes.html"][0], COLUMN_EDITED,
                                                   author="Pedro Columnista"))
    site.add("/nacional/general.html", "<h1>No encontrada</h1>", status=404)
    recheck(db, config)
    return db, config


def article_ids(db: Any) -> dict[str, str]:
    """Short page name -> article id."""
    return {r["url"].rsplit("/", 1)[1].removesuffix(".html"): r["id"] for r in db.query("SELECT id, url FROM articles")}
