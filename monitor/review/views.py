"""Request handlers of the review desk (login, queue, decisions, article, capture, charts)."""

from __future__ import annotations

import gzip
import json
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import sqlite_utils
from datasette.utils.asgi import Response
from itsdangerous import BadSignature

from .. import store
from ..classifier.registry import CATEGORIES
from . import accounts, charts
from .throttle import LoginThrottle
from ..highlight import highlight_segments
from .i18n import DEFAULT, LANGUAGES, translator

SESSION_COOKIE = "monitor_session"
LANG_COOKIE = "monitor_lang"
SESSION_MAX_AGE_S = 7 * 24 * 3600
STATIC = Path(__file__).with_name("static")
VOICES = ("authorial", "attributed", "counter", "none")
DECISIONS = ("confirm", "reject", "relabel")
# Our pages load only our own files; nothing inline runs, nothing leaves the server.
PAGE_CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; frame-src 'self'; "
            "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'self'")
# An archived capture: rendered inert (no scripts, forms, plugins, or requests of any kind).
CAPTURE_CSP = "sandbox; default-src 'none'; style-src 'unsafe-inline'; img-src data:; form-action 'none'"


# --- who is asking --------------------------------------------------------------------------

def _config(datasette: Any) -> dict[str, Any]:
    return (datasette.metadata("plugins") or {}).get("monitor-desk") or {}


def _accounts(datasette: Any) -> sqlite_utils.Database:
    return store.connect_accounts(_config(datasette)["database_path"])


def actor_for(datasette: Any, request: Any) -> dict[str, str] | None:
    """Resolve the actor from a Bearer token or the signed session cookie, against the live accounts."""
    auth = request.headers.get("authorization", "")
    accounts_db = _accounts(datasette)
    try:
        if auth.startswith("Bearer "):
            user = store.user_for_token(accounts_db, accounts.token_hash(auth[7:].strip()))
            return {"id": user["name"], "role": user["role"], "via": "token"} if user else None
        cookie = request.cookies.get(SESSION_COOKIE)
        if not cookie:
            return None
        try:
            data = datasette.unsign(cookie, "monitor-session")
        except BadSignature:
            return None
        if not isinstance(data, dict) or time.time() - float(data.get("t", 0)) > SESSION_MAX_AGE_S:
            return None
        user = store.get_user(accounts_db, str(data.get("u", "")))
        return {"id": user["name"], "role": user["role"]} if user else None
    finally:
        accounts_db.close()


def _lang(request: Any) -> str:
    lang = request.args.get("lang") or request.cookies.get(LANG_COOKIE) or DEFAULT
    return lang if lang in LANGUAGES else DEFAULT


async def _allowed(datasette: Any, request: Any, action: str) -> bool:
    return bool(await datasette.permission_allowed(request.actor, action, default=False))


def login_redirect(datasette: Any, request: Any) -> Response:
    """Send an anonymous browser to the login page (API clients get a JSON 403)."""
    if _wants_json(request):
        return Response.json({"ok": False, "error": "login required"}, status=403)
    target = request.path + (f"?{request.query_string}" if request.query_string else "")
    return Response.redirect("/-/monitor/login?" + urlencode({"next": target}))


def _forbidden(datasette: Any, request: Any) -> Response:
    if not request.actor:
        return login_redirect(datasette, request)
    _ = translator(_lang(request))
    if _wants_json(request):
        return Response.json({"ok": False, "error": _("forbidden")}, status=403)
    return Response.html(f"<!doctype html><meta charset=utf-8><title>403</title><p>{_('forbidden')}</p>", status=403)


def _wants_json(request: Any) -> bool:
    return ("application/json" in request.headers.get("accept", "")
            or request.headers.get("content-type", "").startswith("application/json")
            or request.headers.get("authorization", "").startswith("Bearer "))


async def _page(datasette: Any, request: Any, template: str, context: dict[str, Any], status: int = 200) -> Response:
    lang = _lang(request)
    _ = translator(lang)
    other = "en" if lang == "es" else "es"
    base = {"_": _, "lang": lang, "other_lang": other, "actor": request.actor,
            "lang_switch": request.path + "?" + urlencode({**{k: request.args.get(k) for k in request.args.keys()}, "lang": other}),
            "can_review": await _allowed(datasette, request, "monitor-review"),
            "can_sql": await _allowed(datasette, request, "execute-sql"),
            "database": _config(datasette).get("database", "")}
    html = await datasette.render_template(template, {**base, **context}, request=request)
    response = Response.html(html, status=status)
    response.headers["Content-Security-Policy"] = PAGE_CSP
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "same-origin"
    if request.args.get("lang") in LANGUAGES:
        response.set_cookie(LANG_COOKIE, lang, max_age=365 * 86400, samesite="lax")
    return response


async def _read(datasette: Any, fn: Any) -> Any:
    database = datasette.get_database(_config(datasette)["database"])
    return await database.execute_fn(lambda conn: fn(sqlite_utils.Database(conn)))


# --- login / logout ----------------------------------------------------------------------------

def _safe_next(value: str | None) -> str:
    value = value or "/-/monitor/queue"
    return value if value.startswith("/") and not value.startswith("//") and "\\" not in value else "/-/monitor/queue"


def _throttle(datasette: Any) -> LoginThrottle:
    """This Datasette instance's failed-login counters (created on first use)."""
    throttle = getattr(datasette, "_monitor_login_throttle", None)
    if throttle is None:
        throttle = datasette._monitor_login_throttle = LoginThrottle()
    return throttle


async def login(request: Any, datasette: Any) -> Response:
    """GET: the login form. POST: check the password, set the session cookie, go on."""
    _ = translator(_lang(request))
    error = ""
    next_url = _safe_next(request.args.get("next"))
    if request.method == "POST":
        form = await request.post_vars()
        next_url = _safe_next(form.get("next"))
        name = form.get("username", "").strip()
        client = (request.scope.get("client") or ("?",))[0]
        throttle = _throttle(datasette)
        wait_s = throttle.retry_after(name, client)
        if wait_s:
            response = await _page(datasette, request, "monitor_login.html",
                                   {"error": _("too_many_logins").format(minutes=max(1, round(wait_s / 60))),
                                    "next": next_url}, status=429)
            response.headers["Retry-After"] = str(wait_s)
            return response
        accounts_db = _accounts(datasette)
        try:
            user = store.get_user(accounts_db, name)
        finally:
            accounts_db.close()
        if user and accounts.verify_password(form.get("password", ""), user["password_hash"]):
            throttle.succeeded(name)
            response = Response.redirect(next_url)
            response.set_cookie(SESSION_COOKIE, datasette.sign({"u": user["name"], "t": time.time()}, "monitor-session"),
                                max_age=SESSION_MAX_AGE_S, httponly=True, samesite="lax",
                                secure=request.scheme == "https")
            return response
        throttle.failed(name, client)
        error = _("bad_login")
    return await _page(datasette, request, "monitor_login.html", {"error": error, "next": next_url},
                       status=401 if error else 200)


async def logout(request: Any, datasette: Any) -> Response:
    """POST: end the session."""
    if request.method != "POST":
        return Response.text("POST only", status=405)
    response = Response.redirect("/-/monitor/login")
    response.set_cookie(SESSION_COOKIE, "", expires=0, httponly=True, samesite="lax")
    return response


# --- the queue ---------------------------------------------------------------------------------

def fold_stories(rows: list[dict[str, Any]], limit: int) -> list[dict[str, Any]]:
    """Keep the best-ranked flagged article of each story; the others become its ``flagged_copies``."""
    leads: dict[str, dict[str, Any]] = {}
    for row in rows:
        key = row["story_id"] or row["article_id"]
        if key in leads:
            leads[key]["flagged_copies"].append(row)
        elif len(leads) < limit:
            leads[key] = {**row, "flagged_copies": []}
    return list(leads.values())


def _decorate(row: dict[str, Any]) -> dict[str, Any]:
    row = dict(row)
    cats = json.loads(row.get("categories") or "{}")
    row["category_list"] = sorted((c for c, v in cats.items() if v >= 0.4), key=lambda c: -cats[c]) or (
        [row["top_category"]] if row.get("top_category") else [])
    row["target_list"] = json.loads(row.get("targets") or "[]")
    return row


async def queue_page(request: Any, datasette: Any) -> Response:
    """Unreviewed flagged stories, by score or by uncertainty, copies folded, passages highlighted."""
    if not await _allowed(datasette, request, "monitor-read"):
        return _forbidden(datasette, request)
    order = request.args.get("order", "score")
    order = order if order in store.QUEUE_ORDERS else "score"
    limit = 50

    def load(db: sqlite_utils.Database) -> dict[str, Any]:
        stories = fold_stories(store.queue(db, order, limit * 3), limit)
        members = store.story_members(db, [s["story_id"] for s in stories if s["story_id"]])
        for s in stories:
            detail = store.article_detail(db, s["article_id"]) or {}
            s["segments"] = highlight_segments(detail.get("verdict_text", ""), detail.get("passages", []))
            s["smear_changes"] = detail.get("smear_changes", [])
            s["passages"] = detail.get("passages", [])
            s["copies"] = [m for m in members.get(s["story_id"], []) if m["id"] != s["article_id"]]
        return {"stories": [_decorate(s) for s in stories], "agreement": store.review_agreement(db)}

    data = await _read(datasette, load)
    if _wants_json(request):
        return Response.json({"order": order, "stories": [{k: v for k, v in s.items() if k != "segments"}
                                                          for s in data["stories"]]}, default=str)
    message = request.args.get("done", "")
    return await _page(datasette, request, "monitor_queue.html",
                       {**data, "order": order, "message": message, "categories": CATEGORIES, "voices": VOICES})


# --- decisions ---------------------------------------------------------------------------------

def _list_field(value: Any) -> list[str] | None:
    if value is None or value == "":
        return None
    if isinstance(value, list):
        return [str(v).strip() for v in value if str(v).strip()]
    return [v.strip() for v in str(value).split(",") if v.strip()]


def parse_decision(data: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """Validate a decision from a form or JSON body; returns (fields, problems)."""
    problems = []
    article_id = str(data.get("article_id", ""))
    if len(article_id) != 64:
        problems.append("article_id: required (64 hex characters)")
    decision = data.get("decision")
    if decision not in DECISIONS:
        problems.append(f"decision: must be one of {', '.join(DECISIONS)}")
    categories = _list_field(data.get("categories"))
    for c in categories or []:
        if c not in CATEGORIES:
            problems.append(f"categories: unknown category {c!r}")
    voice = data.get("voice") or None
    if voice is not None and voice not in VOICES:
        problems.append(f"voice: must be one of {', '.join(VOICES)}")
    fields = {"article_id": article_id, "decision": decision, "categories": categories, "voice": voice,
              "speaker": (data.get("speaker") or None), "targets": _list_field(data.get("targets")),
              "note": str(data.get("note") or "")[:5000]}
    return fields, problems


async def review(request: Any, datasette: Any) -> Response:
    """POST a decision (form with CSRF token, or JSON with a Bearer token). Appends to ``reviews``."""
    if request.method != "POST":
        return Response.text("POST only", status=405)
    if not await _allowed(datasette, request, "monitor-review"):
        return _forbidden(datasette, request)
    is_json = request.headers.get("content-type", "").startswith("application/json")
    if is_json:
        try:
            data = json.loads((await request.post_body()) or b"{}")
        except json.JSONDecodeError as e:
            return Response.json({"ok": False, "errors": [f"invalid JSON: {e}"]}, status=400)
        if not isinstance(data, dict):
            return Response.json({"ok": False, "errors": ["the body must be a JSON object"]}, status=400)
    else:
        data = dict(await request.post_vars())
    fields, problems = parse_decision(data)
    if problems:
        return Response.json({"ok": False, "errors": problems}, status=400)
    reviewer = request.actor["id"]
    database = datasette.get_database(_config(datasette)["database"])
    try:
        review_id = await database.execute_write_fn(
            lambda conn: store.record_review(sqlite_utils.Database(conn), reviewer=reviewer, **fields), block=True)
    except KeyError:
        return Response.json({"ok": False, "errors": [f"no article {fields['article_id']}"]}, status=404)
    if is_json or _wants_json(request):
        return Response.json({"ok": True, "review_id": review_id, "reviewer": reviewer, **fields})
    back = _safe_next(data.get("next"))
    sep = "&" if "?" in back else "?"
    return Response.redirect(f"{back}{sep}done={quote(fields['decision'])}")


# --- article and capture -----------------------------------------------------------------------

async def article_page(request: Any, datasette: Any) -> Response:
    """One article: text with flagged passages highlighted, verdict, captures (sandboxed), versions, reviews."""
    if not await _allowed(datasette, request, "monitor-read"):
        return _forbidden(datasette, request)
    article_id = request.url_vars["article_id"]
    detail = await _read(datasette, lambda db: store.article_detail(db, article_id))
    if detail is None:
        return Response.text("no such article", status=404)
    cls = detail["classification"] or {}
    view = _decorate({**detail, **{k: cls.get(k) for k in ("score", "categories", "top_category", "targets", "voice",
                                                            "speaker", "speaker_is_official")}})
    view["segments"] = highlight_segments(detail["verdict_text"], detail["passages"])
    for v in view["text_versions"]:
        v["segments"] = highlight_segments(v["text"], v["passages"])
    decisions = {r["reviewer"]: r["decision"] for r in detail["reviews"]}
    view["disagreement"] = len({d == "reject" for d in decisions.values()}) > 1
    return await _page(datasette, request, "monitor_article.html",
                       {"a": view, "c": cls, "categories": CATEGORIES, "voices": VOICES})


async def capture_page(request: Any, datasette: Any) -> Response:
    """An archived capture, decoded, served inert (CSP sandbox: no script, no request leaves)."""
    if not await _allowed(datasette, request, "monitor-read"):
        return _forbidden(datasette, request)
    cid = int(request.url_vars["capture_id"])
    row = await _read(datasette, lambda db: store.capture_row(db, cid))
    if row is None:
        return Response.text("no such capture", status=404)
    raw = gzip.decompress(row["body_gz"])
    headers = dict(json.loads(row["headers"]))
    encoding = {k.lower(): v for k, v in headers.items()}.get("content-encoding", "").lower()
    body = gzip.decompress(raw) if encoding in ("gzip", "x-gzip") else raw
    response = Response(body, status=200, content_type="text/html; charset=" + _charset(row["content_type"] or ""))
    response.headers["Content-Security-Policy"] = CAPTURE_CSP
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["X-Capture-SHA256"] = row["sha256"]
    return response


def _charset(content_type: str) -> str:
    for part in content_type.split(";"):
        key, _, value = part.strip().partition("=")
        if key.lower() == "charset" and value:
            return value.strip('"')
    return "utf-8"


# --- charts and static -------------------------------------------------------------------------

async def charts_page(request: Any, datasette: Any) -> Response:
    """Weekly counts by category, top outlets and targets, and a per-target timeline (inline SVG)."""
    if not await _allowed(datasette, request, "monitor-read"):
        return _forbidden(datasette, request)
    target = request.args.get("target", "")
    data = await _read(datasette, lambda db: charts.chart_data(db, target))
    _ = translator(_lang(request))
    return await _page(datasette, request, "monitor_charts.html",
                       {**data, "target": target, "svg": charts.render_all(data, _)})


async def static_file(request: Any, datasette: Any) -> Response:
    """The desk's own CSS and JavaScript (shipped with the project: no CDN)."""
    name = request.url_vars["name"]
    path = STATIC / name
    if not path.is_file():
        return Response.text("not found", status=404)
    ctype = "text/css" if name.endswith(".css") else "application/javascript"
    response = Response(path.read_bytes(), content_type=f"{ctype}; charset=utf-8")
    response.headers["Cache-Control"] = "max-age=3600"
    return response
