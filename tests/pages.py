"""Small original news pages for crawler tests (HTML that trafilatura extracts)."""

from __future__ import annotations

import html


def article_html(title: str, paragraphs: list[str], canonical: str | None = None, author: str = "",
                 charset: str = "utf-8") -> str:
    """A plausible news page: navigation, the article with a byline, a footer."""
    canon = f'<link rel="canonical" href="{html.escape(canonical)}">' if canonical else ""
    byline = f'<p class="byline">Por {html.escape(author)}</p>' if author else ""
    body = "".join(f"<p>{html.escape(p)}</p>" for p in paragraphs)
    return (f'<!doctype html><html lang="es"><head><meta charset="{charset}"><title>{html.escape(title)}</title>'
            f'{canon}<meta name="author" content="{html.escape(author)}"></head><body>'
            '<nav><a href="/">Inicio</a> <a href="/politica">Política</a></nav>'
            f'<article><h1>{html.escape(title)}</h1>{byline}{body}</article>'
            '<footer>© Diario de prueba. Todos los derechos reservados.</footer></body></html>')


def rss(items: list[tuple[str, str]], title: str = "Feed de prueba") -> str:
    """An RSS 2.0 document with (title, link) items."""
    entries = "".join(f"<item><title>{html.escape(t)}</title><link>{html.escape(u)}</link><guid>{html.escape(u)}</guid></item>"
                      for t, u in items)
    return (f'<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel><title>{title}</title>'
            f"<link>http://example.invalid/</link><description>prueba</description>{entries}</channel></rss>")


STORY = [
    "La fiscalía estatal informó este martes que abrió una carpeta de investigación por el derrumbe de un puente "
    "peatonal en la zona oriente de la ciudad, donde cinco personas resultaron heridas durante la madrugada.",
    "De acuerdo con protección civil, la estructura presentaba daños desde hace dos años y los vecinos habían "
    "presentado al menos tres quejas formales ante el ayuntamiento sin recibir respuesta alguna.",
    "El alcalde declaró en conferencia de prensa que se revisarán todos los puentes del municipio y que la "
    "empresa constructora deberá responder por la calidad de los materiales utilizados en la obra.",
    "Los heridos fueron trasladados al hospital general, donde permanecen en observación; dos de ellos presentan "
    "fracturas y serán operados en los próximos días, informó la secretaría de salud local.",
    "Comerciantes de la zona señalaron que el cierre de la avenida afecta sus ventas y pidieron a las autoridades "
    "una fecha para la reapertura del paso peatonal, que usan diariamente miles de estudiantes.",
]


_SUBJECTS = ["el cabildo", "la secretaría de obras", "un grupo de vecinos", "la universidad", "el sindicato de maestros",
             "la cámara de comercio", "el comité de salud", "la orquesta juvenil", "el club deportivo",
             "la biblioteca pública", "el mercado municipal", "la cooperativa pesquera", "el hospital regional",
             "la liga de béisbol", "el museo de historia", "la feria del libro"]
_VERBS = ["anunció", "presentó", "inauguró", "suspendió", "amplió", "discutió", "celebró", "revisó", "aprobó", "pospuso"]
_OBJECTS = ["un programa de becas", "la temporada de conciertos", "el nuevo horario de atención", "un torneo infantil",
            "las obras de drenaje", "una campaña de vacunación", "la ruta de transporte", "un taller de lectura",
            "el presupuesto anual", "la exposición de fotografía", "una jornada de limpieza", "el calendario escolar"]
_PLACES = ["en el centro histórico", "en la colonia Juárez", "frente al palacio municipal", "en la costa norte",
           "en el barrio de San Juan", "junto a la presa", "en la sierra", "en el puerto", "en la zona industrial"]


def story_text(variant: int = 0) -> list[str]:
    """Distinct article bodies: variant 0 is STORY; others are unrelated texts (seeded by ``variant``)."""
    import random

    if variant == 0:
        return list(STORY)
    rng = random.Random(variant)
    paragraphs = []
    for _ in range(4):
        sentences = [f"{rng.choice(_SUBJECTS).capitalize()} {rng.choice(_VERBS)} {rng.choice(_OBJECTS)} "
                     f"{rng.choice(_PLACES)}, según {rng.choice(_SUBJECTS)}." for _ in range(3)]
        paragraphs.append(" ".join(sentences))
    return paragraphs
