"""Datasette on the monitor database: metadata (titles, facets, hidden tables) and the triage query."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from .store import COUNTED_FLAGS

LOGGER = logging.getLogger(__name__)

TRIAGE_SQL = """
SELECT c.score, a.published, o.name AS outlet, a.section, a.columnist, a.title, a.url,
       c.top_category, c.categories, c.voice, c.speaker, c.speaker_is_official, c.targets,
       (SELECT group_concat(p.text, ' […] ') FROM passages p WHERE p.classification_id = c.id) AS passages,
       a.id AS article_id, c.model_id, c.model_version
FROM latest_classifications c
JOIN articles a ON a.id = c.article_id
LEFT JOIN outlets o ON o.id = a.outlet_id
WHERE c.stigmatising = 1
  AND NOT EXISTS (SELECT 1 FROM reviews r WHERE r.article_id = a.id)
  AND (:outlet = '' OR o.name = :outlet)
ORDER BY c.score DESC, a.published DESC
LIMIT 200
"""

FEED_HEALTH_SQL = """
SELECT f.id, o.name AS outlet, f.section, f.url, f.verified, f.last_ok_at, f.last_status,
       f.consecutive_failures, f.last_error, f.last_error_at, f.last_entries, f.feed_warning
FROM feeds f JOIN outlets o ON o.id = f.outlet_id
ORDER BY f.consecutive_failures DESC, f.id
"""


WEEK = "date(substr(coalesce(a.published, a.first_seen_at), 1, 10), 'weekday 0', '-6 days')"
ANALYST_QUERIES = {
    "flags_by_week": ("Flags per week and category", f"SELECT {WEEK} AS week, c.top_category AS category, count(*) AS flags "
                      f"{COUNTED_FLAGS} GROUP BY week, category ORDER BY week DESC, flags DESC"),
    "flags_by_outlet": ("Flags per outlet and section", "SELECT o.name AS outlet, a.section, count(*) AS flags, "
                        "round(avg(c.score), 3) AS mean_score, max(a.published) AS latest " + COUNTED_FLAGS +
                        "GROUP BY outlet, a.section ORDER BY flags DESC"),
    "flags_by_columnist": ("Flags per columnist", "SELECT a.columnist, o.name AS outlet, count(*) AS flags, "
                           "group_concat(DISTINCT c.top_category) AS categories " + COUNTED_FLAGS +
                           "AND a.columnist != '' GROUP BY a.columnist, outlet ORDER BY flags DESC"),
    "flags_by_category": ("Flags per category and voice", "SELECT c.top_category AS category, c.voice, count(*) AS flags "
                          + COUNTED_FLAGS + "GROUP BY category, c.voice ORDER BY flags DESC"),
    "flags_by_target": ("Flags per target", "SELECT t.value AS target, count(*) AS flags, count(DISTINCT a.outlet_id) "
                        "AS outlets, min(a.published) AS first, max(a.published) AS latest "
                        + COUNTED_FLAGS.replace("WHERE c.stigmatising", "JOIN json_each(c.targets) t WHERE c.stigmatising")
                        + "GROUP BY target ORDER BY flags DESC"),
    "flags_by_speaker_type": ("Flags by speaker type (public official or not)",
                              "SELECT CASE WHEN c.voice = 'attributed' AND c.speaker_is_official = 1 THEN 'public official' "
                              "WHEN c.voice = 'attributed' THEN 'other speaker' ELSE 'the outlet (authorial)' END AS speaker_type, "
                              "count(*) AS flags, count(DISTINCT c.speaker) AS speakers " + COUNTED_FLAGS +
                              "GROUP BY speaker_type ORDER BY flags DESC"),
    "flags_by_speaker": ("Who says it: attributed speakers", "SELECT c.speaker, c.speaker_is_official, count(*) AS flags, "
                         "group_concat(DISTINCT o.name) AS outlets " + COUNTED_FLAGS +
                         "AND c.speaker != '' GROUP BY c.speaker ORDER BY flags DESC"),
}

# Campaigns and alerts (monitor/campaigns.py, monitor/alerts/, docs/campaigns.md).
CAMPAIGN_TABLES = {
    "campaigns": {"description": "Coordinated attacks: one target in one category from several outlets within the window, "
                                 "or one smear copied or paraphrased across outlets. Burst score = -log10 P(a count this "
                                 "high at the target's usual rate). Members: the campaign query.",
                  "facets": ["status", "target", "category", "via"], "sort_desc": "last_seen"},
    "campaign_members": {"description": "The flagged passages of each campaign and why they belong (target, copy, paraphrase).",
                         "facets": ["link", "outlet_id"], "sort": "at"},
    "alerts": {"description": "Alerts raised by the rules of alerts.yaml, each once.", "facets": ["rule", "kind", "target"],
               "sort_desc": "created_at"},
    "deliveries": {"description": "Each alert's delivery per channel: sent, pending (retrying with backoff) or failed.",
                   "facets": ["status", "channel"]},
    "campaign_items": {"hidden": True}, "campaign_keys": {"hidden": True}, "monitor_state": {"hidden": True},
}
CAMPAIGN_QUERIES = {
    "campaigns_recent": {
        "title": "Campaigns, most recent activity first",
        "description": "Leave status empty for all, or active / ended.",
        "sql": "SELECT id, status, target, category, n_outlets AS outlets_n, articles, first_seen, last_seen, burst_score, "
               "burst_z, baseline_per_window, officials, outlets, speakers, via FROM campaigns "
               "WHERE (:status = '' OR status = :status) ORDER BY last_seen DESC, id DESC LIMIT 200",
    },
    "campaign": {
        "title": "One campaign: its passages in time order",
        "sql": "SELECT m.at, coalesce(o.name, m.outlet_id) AS outlet, a.title, a.url, m.link, m.similarity, p.text AS passage, "
               "p.top_category, p.speaker, p.speaker_is_official, a.id AS article_id FROM campaign_members m "
               "JOIN passages p ON p.id = m.passage_id JOIN articles a ON a.id = m.article_id "
               "LEFT JOIN outlets o ON o.id = m.outlet_id WHERE m.campaign_id = :id ORDER BY m.at, m.passage_id",
    },
    "alerts_recent": {
        "title": "Alerts and their deliveries",
        "sql": "SELECT a.created_at, a.rule, a.title, a.summary, a.url, (SELECT group_concat(d.channel || ': ' || d.status "
               "|| CASE WHEN d.last_error IS NULL THEN '' ELSE ' (' || d.last_error || ')' END, '; ') FROM deliveries d "
               "WHERE d.alert_id = a.id) AS deliveries FROM alerts a ORDER BY a.created_at DESC LIMIT 200",
    },
}


def metadata(db_name: str) -> dict[str, Any]:
    """Datasette metadata for the monitor database ``db_name`` (the file's stem)."""
    return {
        "title": "Smear-campaign monitor",
        "description": "Press articles that stigmatise human rights defenders in Mexico, flagged passage by "
                       "passage. Start with the triage query; every flag keeps its raw capture and model version.",
        "databases": {db_name: {
            "tables": {
                "articles": {
                    "description": "One row per article: text and metadata extracted from its first capture.",
                    # no default facets: grouping a million rows on every page view costs seconds;
                    # add ?_facet=outlet_id (or use flagged_articles, which has them)
                    "sort_desc": "published",
                    "fts_table": "articles_fts", "fts_pk": "rowid",
                    "label_column": "title",
                },
                "classifications": {
                    "description": "Every verdict of every model version on every text of an article (never "
                                   "overwritten); version_id: the article_versions row of an edit, empty for the "
                                   "text first captured.",
                    "sort_desc": "score",
                },
                "passages": {
                    "description": "Flagged passages with character offsets into the text their verdict "
                                   "classified (articles.text, or article_versions.text for an edit; "
                                   "start = -1: the passage is the headline).",
                    "facets": ["top_category", "voice", "speaker_is_official"],
                    "sort_desc": "score",
                },
                "captures": {"description": "Raw responses as served (gzip in body_gz), SHA-256 of the raw bytes, UTC capture time.",
                             "sort_desc": "captured_at"},
                "feeds": {"description": "Feeds from feeds.yaml with their health.", "facets": ["outlet_id", "section", "verified"]},
                "outlets": {"description": "Outlets from feeds.yaml.", "facets": ["scope", "state"], "label_column": "name"},
                "failures": {"description": "Every failed feed, fetch, extraction or classification, with its reason.",
                             "facets": ["stage", "error_type"], "sort_desc": "occurred_at"},
                "runs": {"description": "One row per crawl run.", "sort_desc": "id"},
                "reviews": {"description": "Reviewers' decisions, append-only.", "facets": ["decision", "reviewer"]},
                "entries": {"description": "Feed entries and their fetch state (the crawl queue).", "facets": ["status", "feed_id"]},
                "flagged_articles": {
                    "description": "Flagged articles (latest verdict) with passages, story, edits, removal and review.",
                    "facets": ["outlet", "section", "columnist", "top_category", "voice", "speaker_is_official",
                               "review_decision"],
                    "sort_desc": "score",
                },
                "article_checks": {"description": "Every re-check of an article: unchanged, changed, removed, restored, error.",
                                   "facets": ["outcome"], "sort_desc": "checked_at"},
                "article_versions": {"description": "Later texts of edited articles, with a diff against the previous text."},
                "flag_targets": {"description": "One row per target named by a flag (for per-target timelines).",
                                 "facets": ["target"]},
                "_migrations": {"hidden": True},
                "article_signatures": {"hidden": True},
                "story_bands": {"hidden": True},
                **CAMPAIGN_TABLES,
            },
            "queries": {
                "triage": {
                    "title": "Triage: unreviewed flagged articles, highest score first",
                    "description": "What a monitor should read first. Leave outlet empty for all outlets.",
                    "sql": TRIAGE_SQL.strip(),
                },
                "feed_health": {"title": "Feed health", "sql": FEED_HEALTH_SQL.strip()},
                **{name: {"title": title, "sql": sql.strip()} for name, (title, sql) in ANALYST_QUERIES.items()},
                **CAMPAIGN_QUERIES,
            },
        }},
    }


def secret_for(db_path: str | Path) -> str:
    """The signing secret for login cookies: ``$MONITOR_SECRET``, else a file beside the database.

    A fixed secret keeps sessions valid across restarts; the file is created once, mode 0600.
    """
    import os
    import secrets

    if os.environ.get("MONITOR_SECRET"):
        return os.environ["MONITOR_SECRET"]
    path = Path(db_path).with_name(Path(db_path).name + ".secret")
    if not path.is_file():
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_hex(32))
    return path.read_text().strip()


def build_datasette(db_path: str | Path, public: bool = False) -> Any:
    """A Datasette instance on ``db_path`` with the monitor's metadata and the review desk.

    Args:
        public: anonymous visitors may read tables and queries (never SQL, decisions or the desk).
    """
    from datasette.app import Datasette
    from datasette.plugins import pm

    from . import review, store

    if not pm.is_registered(review):
        pm.register(review, name="monitor-desk")
    path = Path(db_path)
    store.connect(path).close()            # migrations applied before Datasette opens it
    store.connect_accounts(path).close()
    meta = metadata(path.stem)
    meta["plugins"] = {"monitor-desk": {"database": path.stem, "database_path": str(path.resolve()), "public": public}}
    return Datasette([str(path)], metadata=meta, secret=secret_for(path),
                     settings={"sql_time_limit_ms": 5000, "facet_time_limit_ms": 500, "default_page_size": 50,
                               # suggested facets try every column on every page view: 2 s on a
                               # million-article full-text search (docs/benchmarks.md)
                               "suggest_facets": False})


def serve(db_path: str | Path, host: str = "127.0.0.1", port: int = 8001, public: bool = False) -> None:
    """Run Datasette until interrupted."""
    import uvicorn

    ds = build_datasette(db_path, public=public)
    LOGGER.info("Datasette on http://%s:%s/ (review desk: /-/monitor/queue)", host, port)
    uvicorn.run(ds.app(), host=host, port=port, log_level="warning")
