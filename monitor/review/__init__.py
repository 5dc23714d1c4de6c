"""The review desk: a Datasette plugin (accounts, permissions, triage queue, decisions, charts).

Active only on a Datasette whose metadata has a ``monitor-desk`` plugin section (set by
``monitor.serve.build_datasette``): ``{"database": NAME, "accounts": PATH, "public": false}``.

Roles: ``reviewer`` reads and decides; ``analyst`` reads and runs SQL; ``admin`` does all.
Anonymous visitors get the login page (or, with ``public: true``, read-only tables).
"""

from __future__ import annotations

from typing import Any

from datasette import hookimpl

from . import alerts_feed, views

VIEW_ACTIONS = {"view-instance", "view-database", "view-table", "view-query"}
READ_ROLES = {"reviewer", "analyst", "admin"}
RULES = {
    "execute-sql": {"analyst", "admin"},
    "view-database-download": {"analyst", "admin"},
    "monitor-read": READ_ROLES,
    "monitor-review": {"reviewer", "admin"},
    "monitor-admin": {"admin"},
}


def desk_config(datasette: Any) -> dict[str, Any] | None:
    """The plugin's settings, or None when this Datasette is not a monitor desk."""
    return (datasette.metadata("plugins") or {}).get("monitor-desk")


@hookimpl(tryfirst=True)
def actor_from_request(datasette: Any, request: Any) -> Any:
    """The user behind a session cookie or an ``Authorization: Bearer`` API token (checked live)."""
    if desk_config(datasette) is None:
        return None
    return views.actor_for(datasette, request)


@hookimpl
def permission_allowed(datasette: Any, actor: Any, action: str, resource: Any) -> bool | None:
    """Every read needs an account (unless public); SQL needs analyst; decisions need reviewer."""
    config = desk_config(datasette)
    if config is None:
        return None
    role = (actor or {}).get("role") if isinstance(actor, dict) else None
    if action in VIEW_ACTIONS:
        return bool(role in READ_ROLES or config.get("public"))
    if action in RULES:
        return role in RULES[action]
    return None


@hookimpl
def forbidden(datasette: Any, request: Any, message: str) -> Any:
    """Anonymous browsers are sent to the login page instead of a bare 403."""
    if desk_config(datasette) is None or request.actor:
        return None
    return views.login_redirect(datasette, request)


@hookimpl
def register_routes() -> list[tuple[str, Any]]:
    """The desk's pages and its one write endpoint."""
    return [
        (r"^/-/monitor/login$", views.login),
        (r"^/-/monitor/logout$", views.logout),
        (r"^/-/monitor/queue$", views.queue_page),
        (r"^/-/monitor/review$", views.review),
        (r"^/-/monitor/article/(?P<article_id>[0-9a-f]{64})$", views.article_page),
        (r"^/-/monitor/capture/(?P<capture_id>[0-9]+)$", views.capture_page),
        (r"^/-/monitor/charts$", views.charts_page),
        (r"^/-/monitor/static/(?P<name>[a-z0-9_-]+\.(?:css|js))$", views.static_file),
        (r"^/-/monitor/alerts\.atom$", alerts_feed.alerts_atom),
        (r"^/-/monitor/campaigns$", alerts_feed.campaigns_page),
    ]


@hookimpl
def menu_links(datasette: Any, actor: Any, request: Any) -> list[dict[str, str]] | None:
    """Links to the desk in Datasette's own menu."""
    if desk_config(datasette) is None or not actor:
        return None
    return [{"href": "/-/monitor/queue", "label": "Review desk / Mesa de revisión"},
            {"href": "/-/monitor/charts", "label": "Charts / Gráficas"}]
