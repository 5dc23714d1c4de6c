"""A scenario for campaign tests: five outlets repeat one accusation against Centro Prodh over 48 hours, amid
unrelated flagged items, served on a loopback site with publication dates."""

from __future__ import annotations

import html
from datetime import date, timedelta

from tests.pages import rss

# (key, outlet, day offset from today, section, smear paragraph)
CAMPAIGN = [
    ("a", "diario-uno", -3, "news",
     "Los abogados del Centro Prodh son agentes extranjeros que buscan desestabilizar al país con el dinero "
     "de fundaciones de otros países."),
    ("b", "diario-dos", -3, "news",  # a copy of a, lightly edited
     "Los abogados del Centro Prodh son agentes extranjeros que buscan desestabilizar al país con el dinero "
     "de fundaciones de otros países, según publicó este lunes la prensa local."),
    ("c", "diario-tres", -2, "opinion",  # paraphrases from here on
     "Los activistas del Centro Prodh, financiados desde el extranjero, trabajan para intereses foráneos y "
     "no para las víctimas de este país."),
    ("d", "diario-cuatro", -2, "news",
     "El senador Ramiro Gómez aseguró que los integrantes del Centro Pro Juárez son traidores a la patria al "
     "servicio de gobiernos de otros países."),
    ("e", "diario-cinco", -1, "news",
     "Los del Centro Prodh son golpistas pagados con dinero extranjero, y su verdadero objetivo es debilitar "
     "a las instituciones."),
]
UNRELATED = [
    # the same target and category, but ten days earlier: outside the window (it feeds the baseline)
    ("old", "diario-dos", -12, "news",
     "Hace tiempo que los abogados del Centro Prodh actúan como agentes extranjeros en cada juicio que tocan."),
    # the same target, another category, one outlet
    ("corr", "diario-seis", -2, "news",
     "El Centro Prodh montó el negocio de los derechos humanos: una red de corrupción que cobra a cada familia."),
    # another target, another category
    ("cidh", "diario-siete", -2, "opinion",
     "La CIDH miente otra vez: sus expertos a sueldo solo buscan manchar la imagen de México ante el mundo."),
    ("madres", "diario-uno", -1, "news",
     "Muchas madres buscadoras son falsas víctimas que inventan desapariciones para cobrar apoyos del gobierno."),
]
NEUTRAL = ("La nota continúa con información sobre el presupuesto estatal, las obras públicas del sexenio y las "
           "lluvias que afectaron a varios municipios de la región durante la semana.")
COUNTER = ("Relatores de la ONU condenaron la campaña de estigmatización que acusa al Centro Prodh de ser agentes "
           "extranjeros y exhortaron al gobierno a proteger a las personas defensoras.")


def day(offset: int) -> str:
    """ISO date ``offset`` days from today (UTC)."""
    return (date.today() + timedelta(days=offset)).isoformat()


def dated_page(title: str, paragraphs: list[str], published: str) -> str:
    """A news page whose publication date trafilatura reads from ``article:published_time``."""
    body = "".join(f"<p>{html.escape(p)}</p>" for p in paragraphs)
    return (f'<!doctype html><html lang="es"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
            f'<meta property="article:published_time" content="{published}T09:00:00-06:00"></head><body>'
            f'<nav><a href="/">Inicio</a></nav><article><h1>{html.escape(title)}</h1>{body}</article>'
            '<footer>© Diario de prueba.</footer></body></html>')


def publish_scenario(server, items=CAMPAIGN + UNRELATED, counter: bool = True) -> list[dict]:  # type: ignore[no-untyped-def]
    """Serve each outlet's feeds (news / opinion) with its dated articles; returns feed entries for ``config_for``."""
    feeds: dict[tuple[str, str], list[tuple[str, str]]] = {}
    for key, outlet, offset, section, smear in items:
        path = f"/{outlet}/{section}/{key}.html"
        title = f"Nota {key} de {outlet}"
        server.add(path, dated_page(title, [smear, NEUTRAL], day(offset)))
        feeds.setdefault((outlet, section), []).append((title, server.url(path)))
    if counter:
        path = "/diario-tres/news/onu.html"
        server.add(path, dated_page("La ONU y las personas defensoras", [COUNTER, NEUTRAL], day(-1)))
        feeds.setdefault(("diario-tres", "news"), []).append(("ONU", server.url(path)))
    out = []
    for (outlet, section), entries in feeds.items():
        url = server.add(f"/{outlet}/{section}/feed.xml", rss(entries), content_type="application/rss+xml")
        out.append({"url": url, "outlet": outlet, "section": section})
    return out
