"""The desk's alert routes: the Atom feed of alerts (token in the URL for feed readers) and a campaigns timeline page."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from html import escape
from typing import Any
from urllib.parse import urlencode

import sqlite_utils
from datasette.utils.asgi import Response

from .. import store
from ..alerts.atom import render_atom
from . import accounts

READ_ROLES = {"reviewer", "analyst", "admin"}
FEED_LIMIT = 100
LINK_COLOURS = {"target": "#1b6ca8", "copy": "#d1495b", "paraphrase": "#edae49"}


def _config(datasette: Any) -> dict[str, Any]:
    return (datasette.metadata("plugins") or {}).get("monitor-desk") or {}


def _reader(datasette: Any, request: Any) -> dict[str, Any] | None:
    """The account reading: the session or ``Authorization: Bearer`` (request.actor), else ``?token=``.

    Feed readers cannot log in or send headers, so the feed also takes an API token (from
    `monitor user token NAME`) as a query parameter; revoke it with `monitor user remove`.
    """
    actor = request.actor
    if isinstance(actor, dict) and actor.get("role") in READ_ROLES:
        return actor
    token = request.args.get("token", "")
    if not token:
        return None
    accounts_db = store.connect_accounts(_config(datasette)["database_path"])
    try:
        user = store.user_for_token(accounts_db, accounts.token_hash(token))
    finally:
        accounts_db.close()
    return {"id": user["name"], "role": user["role"], "via": "token"} if user and user["role"] in READ_ROLES else None


async def _read(datasette: Any, fn: Any) -> Any:
    database = datasette.get_database(_config(datasette)["database"])
    return await database.execute_fn(lambda conn: fn(sqlite_utils.Database(conn)))


def _unauthorised() -> Response:
    response = Response.text("login required: use a session, `Authorization: Bearer TOKEN`, or ?token=TOKEN "
                             "(create one with `monitor user token NAME`)\n", status=401)
    response.headers["WWW-Authenticate"] = 'Bearer realm="smear-monitor"'
    return response


async def alerts_atom(request: Any, datasette: Any) -> Response:
    """``/-/monitor/alerts.atom``: the latest alerts (digests left out) as Atom, for any reader role."""
    if _reader(datasette, request) is None:
        return _unauthorised()
    rows = await _read(datasette, lambda db: [a for a in store.list_alerts(db, limit=FEED_LIMIT) if a["kind"] != "digest"])
    base = f"{request.scheme}://{request.host}"
    body = render_atom(rows, feed_url=f"{base}/-/monitor/alerts.atom", site_url=f"{base}/-/monitor/campaigns",
                       updated=datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"))
    response = Response(body, content_type="application/atom+xml; charset=utf-8")
    response.headers["Cache-Control"] = "private, max-age=60"
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response


def timeline_svg(campaign: dict[str, Any], members: list[dict[str, Any]]) -> str:
    """One campaign as an inline SVG: a row per outlet, a dot per passage (colour: target, copy, paraphrase)."""
    from ..campaigns import epoch

    outlets = sorted({m["outlet"] for m in members})
    times = [epoch(m["at"]) for m in members]
    t0, t1 = min(times), max(times)
    span = max(t1 - t0, 3600.0)
    left, width, row = 170, 560, 22
    height = row * len(outlets) + 40
    parts = [f'<svg class="chart" viewBox="0 0 {left + width + 20} {height}" role="img" '
             f'xmlns="http://www.w3.org/2000/svg"><title>{escape(campaign["target"] or "")}</title>']
    for i, outlet in enumerate(outlets):
        y = 20 + i * row
        parts.append(f'<text x="0" y="{y + 4}" font-size="11">{escape(outlet[:26])}</text>'
                     f'<line x1="{left}" y1="{y}" x2="{left + width}" y2="{y}" stroke="#ddd"/>')
    for m, t in zip(members, times):
        x = left + (t - t0) / span * width
        y = 20 + outlets.index(m["outlet"]) * row
        parts.append(f'<circle cx="{x:.1f}" cy="{y}" r="6" fill="{LINK_COLOURS.get(m["link"], "#666")}">'
                     f'<title>{escape(m["at"][:16])} · {escape(m["outlet"])} · {escape(m["link"])}: '
                     f'{escape(" ".join((m["text"] or "").split())[:200])}</title></circle>')
    parts.append(f'<text x="{left}" y="{height - 6}" font-size="10">{escape(campaign["first_seen"][:16])} UTC</text>'
                 f'<text x="{left + width}" y="{height - 6}" font-size="10" text-anchor="end">'
                 f'{escape(campaign["last_seen"][:16])} UTC</text></svg>')
    return "".join(parts)


async def campaigns_page(request: Any, datasette: Any) -> Response:
    """``/-/monitor/campaigns``: campaigns, most recent first, each with its timeline and passages."""
    reader = _reader(datasette, request)
    if reader is None:
        if request.actor:
            return Response.text("forbidden", status=403)
        return Response.redirect("/-/monitor/login?" + urlencode({"next": request.path}))
    include_ended = request.args.get("all") == "1"

    def load(db: sqlite_utils.Database) -> list[tuple[dict[str, Any], list[dict[str, Any]]]]:
        return [(c, store.campaign_member_rows(db, c["id"])) for c in store.list_campaigns(db, include_ended, 50)]

    data = await _read(datasette, load)
    dbname = _config(datasette).get("database", "")
    sections = []
    for c, members in data:
        if not members:
            continue
        items = "".join(
            f'<li>{escape(m["at"][:16])} · <strong>{escape(m["outlet"])}</strong> [{escape(m["link"])}] '
            f'<a href="/-/monitor/article/{escape(m["article_id"])}">{escape(m["title"] or "")}</a><br>'
            f'<q>{escape(" ".join((m["text"] or "").split())[:300])}</q></li>' for m in members)
        speakers = "; ".join(f'{s["speaker"]}{" (servidor público / official)" if s["official"] else ""}'
                             for s in json.loads(c["speakers"] or "[]"))
        sections.append(
            f'<section id="c{c["id"]}"><h2>#{c["id"]} {escape(c["target"] or "")} · {escape(c["category"] or "")} '
            f'({escape(c["status"])})</h2><p>{c["n_outlets"]} outlets, {c["articles"]} articles · '
            f'burst {c["burst_score"]} (z {c["burst_z"]}, expected {c["baseline_per_window"]}/window) · '
            f'{escape(speakers)} · <a href="/{escape(dbname)}/campaign?id={c["id"]}">SQL</a></p>'
            f'{timeline_svg(c, members)}<ol>{items}</ol></section>')
    toggle = '<a href="?all=1">+ ended</a>' if not include_ended else '<a href="?">active only</a>'
    body = ("<!doctype html><html lang=\"es\"><head><meta charset=\"utf-8\"><title>Campañas / Campaigns</title>"
            '<link rel="stylesheet" href="/-/monitor/static/desk.css"><link rel="alternate" '
            'type="application/atom+xml" title="Alerts" href="/-/monitor/alerts.atom"></head><body><main>'
            f'<h1>Campañas / Campaigns</h1><p><a href="/-/monitor/queue">Cola / Queue</a> · {toggle} · '
            '<a href="/-/monitor/alerts.atom">Atom</a> · colours: <span>blue = target + category</span>, '
            '<span>red = copy</span>, <span>yellow = paraphrase</span></p>'
            + ("".join(sections) or "<p>No campaigns.</p>") + "</main></body></html>")
    response = Response.html(body)
    response.headers["Content-Security-Policy"] = ("default-src 'self'; style-src 'self'; img-src 'self' data:; "
                                                   "object-src 'none'; base-uri 'none'; frame-ancestors 'self'")
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response
