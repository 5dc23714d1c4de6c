"""The daily digest: the last 24 hours of flags, campaigns and alerts, as plain text and HTML."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any

import jinja2
import sqlite_utils

from .. import store
from .config import AlertingSettings

_FMT = "%Y-%m-%dT%H:%M:%S.%fZ"
_HTML = jinja2.Environment(autoescape=True).from_string("""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{{ title }}</title></head>
<body style="font-family: sans-serif; max-width: 48em">
<h1>{{ title }}</h1>
<p>{{ figures.flagged }} flagged article(s) first seen between {{ since[:16] }} and {{ until[:16] }} UTC.</p>
<h2>Campaigns ({{ campaigns|length }})</h2>
{% if campaigns %}<ul>{% for c in campaigns %}
<li><strong>{{ c.target or "defenders" }}</strong> — {{ c.category or "" }}: {{ c.n_outlets }} outlets, {{ c.articles }} articles,
{{ c.first_seen[:16] }} to {{ c.last_seen[:16] }}, burst score {{ c.burst_score }} ({{ c.outlets_list|join(", ") }})</li>
{% endfor %}</ul>{% else %}<p>None.</p>{% endif %}
<h2>Alerts ({{ alerts|length }})</h2>
{% if alerts %}<ul>{% for a in alerts %}<li><a href="{{ a.url }}">{{ a.title }}</a><br>{{ a.summary }}</li>{% endfor %}</ul>
{% else %}<p>None.</p>{% endif %}
<h2>Most named targets</h2>
<ul>{% for t in figures.targets %}<li>{{ t.label }}: {{ t.n }}</li>{% else %}<li>None.</li>{% endfor %}</ul>
<h2>Outlets</h2>
<ul>{% for o in figures.outlets %}<li>{{ o.label }}: {{ o.n }}</li>{% else %}<li>None.</li>{% endfor %}</ul>
<p><a href="{{ desk }}">Review desk</a> · <a href="{{ feed }}">Atom feed of alerts</a></p>
</body></html>
""")


def build_digest(db: sqlite_utils.Database, settings: AlertingSettings, until: datetime,
                 hours: float = 24.0) -> dict[str, Any]:
    """Title, one-line summary, text, HTML and figures of the ``hours`` before ``until``."""
    since_dt = until - timedelta(hours=hours)
    since, end = since_dt.strftime(_FMT), until.strftime(_FMT)
    figures = store.digest_counts(db, since)
    campaigns = [dict(c, outlets_list=json.loads(c["outlets"] or "[]"))
                 for c in store.list_campaigns(db, include_ended=True, limit=200)
                 if c["last_seen"] >= since_dt.strftime("%Y-%m-%dT%H:%M:%SZ") or c["updated_at"] >= since]
    alerts = [a for a in store.list_alerts(db, limit=200, since=since) if a["kind"] != "digest"]
    title = f"Monitor digest {until.strftime('%Y-%m-%d')}: {figures['flagged']} flags, {len(campaigns)} campaign(s)"
    summary = (f"{figures['flagged']} flagged article(s), {len(campaigns)} campaign(s) and {len(alerts)} alert(s) "
               f"in the {hours:g} hours to {end[:16]} UTC.")
    lines = [title, "", summary, "", "Campaigns:"]
    lines += [f"- {c['target'] or 'defenders'} / {c['category'] or ''}: {c['n_outlets']} outlets, {c['articles']} articles, "
              f"burst {c['burst_score']} ({', '.join(c['outlets_list'])})" for c in campaigns] or ["- none"]
    lines += ["", "Alerts:"] + ([f"- {a['title']}\n  {a['url']}" for a in alerts] or ["- none"])
    lines += ["", "Most named targets:"] + ([f"- {t['label']}: {t['n']}" for t in figures["targets"]] or ["- none"])
    html = _HTML.render(title=title, figures=figures, campaigns=campaigns, alerts=alerts, since=since, until=end,
                        desk=f"{settings.base_url}/-/monitor/queue", feed=f"{settings.base_url}/-/monitor/alerts.atom")
    return {"title": title, "summary": summary, "text": "\n".join(lines) + "\n", "html": html,
            "figures": {"since": since, "until": end, "flagged": figures["flagged"], "campaigns": len(campaigns),
                        "alerts": len(alerts), "targets": figures["targets"], "outlets": figures["outlets"]}}
