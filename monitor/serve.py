"""Datasette on the monitor database: metadata (titles, facets, hidden tables) and the triage query."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

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
                    "facets": ["outlet_id", "section", "language"],
                    "sort_desc": "published",
                    "fts_table": "articles_fts", "fts_pk": "rowid",
                    "label_column": "title",
                },
                "classifications": {
                    "description": "Every verdict of every model version (never overwritten).",
                    "facets": ["stigmatising", "top_category", "voice", "model_version"],
                    "sort_desc": "score",
                },
                "passages": {
                    "description": "Flagged passages with character offsets into articles.text "
                                   "(start = -1: the passage is the headline).",
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
                "_migrations": {"hidden": True},
            },
            "queries": {
                "triage": {
                    "title": "Triage: unreviewed flagged articles, highest score first",
                    "description": "What a monitor should read first. Leave outlet empty for all outlets.",
                    "sql": TRIAGE_SQL.strip(),
                },
                "feed_health": {"title": "Feed health", "sql": FEED_HEALTH_SQL.strip()},
            },
        }},
    }


def build_datasette(db_path: str | Path) -> Any:
    """A Datasette instance on ``db_path`` with the monitor's metadata."""
    from datasette.app import Datasette

    path = Path(db_path)
    return Datasette([str(path)], metadata=metadata(path.stem),
                     settings={"sql_time_limit_ms": 5000, "facet_time_limit_ms": 500, "default_page_size": 50})


def serve(db_path: str | Path, host: str = "127.0.0.1", port: int = 8001) -> None:
    """Run Datasette until interrupted."""
    import uvicorn

    ds = build_datasette(db_path)
    LOGGER.info("Datasette on http://%s:%s/ (triage: /%s/triage)", host, port, Path(db_path).stem)
    uvicorn.run(ds.app(), host=host, port=port, log_level="warning")
