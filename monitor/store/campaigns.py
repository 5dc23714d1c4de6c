"""Campaign index, campaigns, alerts and their deliveries (written inside the caller's transaction)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import sqlite_utils

from .review import COUNTED_FLAGS, not_rejected

__all__ = ['edit_verdicts_after', 'flagged_removals_after', 'max_check_id', 'max_classification_id',
           'add_alert',
           'add_campaign_items',
           'add_campaign_members',
           'alert_exists',
           'atomic',
           'campaign_by_key',
           'campaign_for_key',
           'campaign_items_between',
           'campaign_key_items',
           'campaign_member_facts',
           'campaign_member_ids',
           'campaign_member_rows',
           'campaign_row',
           'campaigns_of_articles',
           'campaigns_of_passages',
           'campaigns_updated_since',
           'create_campaign',
           'delivery_rows',
           'digest_counts',
           'due_deliveries',
           'flagged_passages_after',
           'list_alerts',
           'list_campaigns',
           'max_passage_id',
           'max_review_id',
           'record_delivery',
           'reset_campaigns',
           'reviewed_articles_after',
           'reviews_after',
           'set_campaign_status',
           'state_get',
           'state_set',
           'target_flag_count',
           'update_campaign']


# --- campaigns and alerts (monitor/campaigns.py, monitor/alerts/) --------------------------------
# Campaign and alert functions write inside the caller's transaction (``atomic``), so one
# incremental update, watermark included, commits or rolls back as a whole.

@contextmanager
def atomic(db: sqlite_utils.Database) -> Iterator[None]:
    """One transaction around several of the functions below (commit on success, roll back on error)."""
    with db.conn:
        yield


def state_get(db: sqlite_utils.Database, name: str, default: str = "0") -> str:
    """A named watermark or setting from ``monitor_state``."""
    row = db.execute("SELECT value FROM monitor_state WHERE name = ?", [name]).fetchone()
    return row[0] if row else default


def state_set(db: sqlite_utils.Database, name: str, value: str | int) -> None:
    """Set a named watermark (inside the caller's transaction)."""
    db.execute("INSERT INTO monitor_state (name, value) VALUES (?, ?) "
               "ON CONFLICT(name) DO UPDATE SET value = excluded.value", [name, str(value)])


def flagged_passages_after(db: sqlite_utils.Database, after_id: int, limit: int | None = None) -> list[dict[str, Any]]:
    """Flagged passages with id > ``after_id`` of each article's latest verdict, unless a reviewer rejected it.

    Each row carries what campaign detection and alert rules need: the article's outlet, section,
    dates and title, the classification's targets and score, and the passage's embedding.
    """
    return list(db.query(
        f"""
        SELECT p.id AS passage_id, p.classification_id, p.article_id, p.text, p.score, p.categories, p.top_category,
               p.voice, p.speaker, p.speaker_is_official, p.targets, p.embedding,
               c.targets AS article_targets, c.top_category AS article_category, c.score AS article_score,
               a.outlet_id, coalesce(o.name, a.outlet_id) AS outlet, a.section, a.published, a.first_seen_at,
               a.title, a.url, a.columnist,
               EXISTS (SELECT 1 FROM classifications e WHERE e.article_id = c.article_id AND e.model_id = c.model_id
                       AND e.model_version = c.model_version AND e.id < c.id AND e.stigmatising = 1) AS earlier_flagged
        FROM passages p
        JOIN classifications c ON c.id = p.classification_id
        JOIN articles a ON a.id = p.article_id
        LEFT JOIN outlets o ON o.id = a.outlet_id
        WHERE p.id > ?
          AND c.id = (SELECT lc.id FROM latest_classifications lc WHERE lc.article_id = p.article_id)
          AND {not_rejected("p.article_id")}
        ORDER BY p.id {f'LIMIT {int(limit)}' if limit else ''}
        """, [int(after_id)]))


def max_passage_id(db: sqlite_utils.Database) -> int:
    """The highest passage id (0 when there is none)."""
    return int(db.execute("SELECT coalesce(max(id), 0) FROM passages").fetchone()[0])


def add_campaign_items(db: sqlite_utils.Database, items: list[dict[str, Any]]) -> None:
    """Index flagged passages for campaign detection: one ``campaign_items`` row each, one ``campaign_keys`` row per key."""
    db.conn.executemany(
        "INSERT OR REPLACE INTO campaign_items (passage_id, classification_id, article_id, outlet_id, at, keys, signature) "
        "VALUES (?, ?, ?, ?, ?, ?, ?)",
        [(i["passage_id"], i["classification_id"], i["article_id"], i["outlet_id"], i["at"],
          json.dumps(i["keys"], ensure_ascii=False), i["signature"]) for i in items])
    db.conn.executemany(
        "INSERT OR IGNORE INTO campaign_keys (target, category, at, passage_id, article_id, outlet_id) "
        "VALUES (?, ?, ?, ?, ?, ?)",
        [(t, c, i["at"], i["passage_id"], i["article_id"], i["outlet_id"]) for i in items for t, c in i["keys"]])


def campaign_items_between(db: sqlite_utils.Database, lo: str, hi: str) -> list[tuple[Any, ...]]:
    """Indexed passages dated in [lo, hi], not rejected by a reviewer: (passage_id, article_id, outlet_id, at,
    keys, signature, embedding)."""
    return db.execute(
        "SELECT i.passage_id, i.article_id, i.outlet_id, i.at, i.keys, i.signature, p.embedding "
        "FROM campaign_items i JOIN passages p ON p.id = i.passage_id WHERE i.at BETWEEN ? AND ? AND "
        + not_rejected("i.article_id") + " ORDER BY i.passage_id", [lo, hi]).fetchall()


def campaign_key_items(db: sqlite_utils.Database, target: str, category: str, lo: str, hi: str,
                       max_passage_id: int) -> list[dict[str, Any]]:
    """Indexed passages naming ``target`` in ``category`` dated in [lo, hi], up to a passage id, by date
    (not those of articles a reviewer rejected)."""
    return list(db.query(
        "SELECT passage_id, article_id, outlet_id, at FROM campaign_keys k WHERE target = ? AND category = ? "
        "AND at BETWEEN ? AND ? AND passage_id <= ? AND " + not_rejected("k.article_id") + " ORDER BY at, passage_id",
        [target, category, lo, hi, int(max_passage_id)]))


def campaign_for_key(db: sqlite_utils.Database, target: str, category: str, lo: str, hi: str,
                     started_after: str = "") -> int | None:
    """The campaign on (target, category) whose span comes within [lo, hi] and that started at or after
    ``started_after`` (most outlets first)."""
    row = db.execute("SELECT id FROM campaigns WHERE target = ? AND category = ? AND last_seen >= ? AND first_seen <= ? "
                     "AND first_seen >= ? ORDER BY n_outlets DESC, id LIMIT 1",
                     [target, category, lo, hi, started_after]).fetchone()
    return int(row[0]) if row else None


def campaigns_of_passages(db: sqlite_utils.Database, passage_ids: list[int], lo: str,
                          started_after: str = "") -> list[int]:
    """Campaigns (last seen at or after ``lo``, started at or after ``started_after``) holding any of these
    passages, oldest first."""
    if not passage_ids:
        return []
    return [int(r[0]) for r in db.execute(
        "SELECT DISTINCT c.id FROM campaign_members m JOIN campaigns c ON c.id = m.campaign_id "
        "WHERE m.passage_id IN (SELECT value FROM json_each(?)) AND c.last_seen >= ? AND c.first_seen >= ? ORDER BY c.id",
        [json.dumps(passage_ids), lo, started_after])]


def campaigns_of_articles(db: sqlite_utils.Database, article_ids: list[str]) -> list[int]:
    """Campaigns with a member passage from any of these articles."""
    if not article_ids:
        return []
    return [int(r[0]) for r in db.execute(
        "SELECT DISTINCT campaign_id FROM campaign_members WHERE article_id IN (SELECT value FROM json_each(?)) "
        "ORDER BY campaign_id", [json.dumps(article_ids)])]


def reviewed_articles_after(db: sqlite_utils.Database, after_id: int) -> tuple[int, list[str]]:
    """The highest review id and the articles reviewed after review ``after_id``."""
    rows = db.execute("SELECT id, article_id FROM reviews WHERE id > ? ORDER BY id", [after_id]).fetchall()
    return (int(rows[-1][0]) if rows else after_id), sorted({r[1] for r in rows})


def campaign_by_key(db: sqlite_utils.Database, key: str) -> int | None:
    """The id of the campaign with this key."""
    row = db.execute("SELECT id FROM campaigns WHERE key = ?", [key]).fetchone()
    return int(row[0]) if row else None


def campaign_member_ids(db: sqlite_utils.Database, campaign_id: int) -> set[int]:
    """Passage ids of a campaign's members."""
    return {int(r[0]) for r in db.execute("SELECT passage_id FROM campaign_members WHERE campaign_id = ?", [campaign_id])}


def create_campaign(db: sqlite_utils.Database, key: str, target: str | None, category: str | None, via: str,
                    first_seen: str, last_seen: str, now: str) -> int:
    """Insert a campaign (its members and figures come next, in the same transaction)."""
    return int(db.execute(
        "INSERT INTO campaigns (key, target, category, via, first_seen, last_seen, detected_at, updated_at) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?)", [key, target, category, via, first_seen, last_seen, now, now]).lastrowid)


def add_campaign_members(db: sqlite_utils.Database, campaign_id: int, members: list[dict[str, Any]], now: str) -> int:
    """Add passages to a campaign (already members are kept as they were); returns how many were new."""
    before = db.conn.total_changes
    db.conn.executemany(
        "INSERT OR IGNORE INTO campaign_members (campaign_id, passage_id, article_id, outlet_id, at, link, similarity, "
        "added_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        [(campaign_id, m["passage_id"], m["article_id"], m["outlet_id"], m["at"], m["link"], m.get("similarity"), now)
         for m in members])
    return db.conn.total_changes - before


def campaign_member_rows(db: sqlite_utils.Database, campaign_id: int) -> list[dict[str, Any]]:
    """A campaign's members with their passage, article and outlet, by date (not those reviewers rejected)."""
    return list(db.query(
        """
        SELECT m.passage_id, m.article_id, m.outlet_id, coalesce(o.name, m.outlet_id) AS outlet, m.at, m.link,
               m.similarity, p.text, p.score, p.categories, p.top_category, p.voice, p.speaker, p.speaker_is_official,
               p.targets, a.title, a.url, a.section, a.columnist
        FROM campaign_members m JOIN passages p ON p.id = m.passage_id JOIN articles a ON a.id = m.article_id
        LEFT JOIN outlets o ON o.id = m.outlet_id
        WHERE m.campaign_id = ? AND """ + not_rejected("m.article_id") + """ ORDER BY m.at, m.passage_id
        """, [campaign_id]))


def campaign_member_facts(db: sqlite_utils.Database, campaign_id: int) -> list[tuple[Any, ...]]:
    """What a campaign's figures are computed from, per member (no text): (article_id, at, outlet, targets,
    categories, top_category, speaker, speaker_is_official). Members whose article a reviewer rejected
    do not count (their rows stay: a later confirmation counts them again)."""
    return db.execute(
        "SELECT m.article_id, m.at, coalesce(o.name, m.outlet_id), p.targets, p.categories, p.top_category, p.speaker, "
        "p.speaker_is_official FROM campaign_members m JOIN passages p ON p.id = m.passage_id "
        "LEFT JOIN outlets o ON o.id = m.outlet_id WHERE m.campaign_id = ? AND " + not_rejected("m.article_id"),
        [campaign_id]).fetchall()


def update_campaign(db: sqlite_utils.Database, campaign_id: int, fields: dict[str, Any]) -> None:
    """Write a campaign's recomputed figures."""
    allowed = {"first_seen", "last_seen", "items", "articles", "n_outlets", "outlets", "targets", "categories",
               "speakers", "officials", "peak_articles", "baseline_per_window", "burst_z", "burst_score", "updated_at",
               "status", "target", "category"}
    values = {k: v for k, v in fields.items() if k in allowed}
    sets = ", ".join(f"{k} = ?" for k in values)
    db.execute(f"UPDATE campaigns SET {sets} WHERE id = ?", [*values.values(), campaign_id])


def set_campaign_status(db: sqlite_utils.Database, active_since: str) -> None:
    """Campaigns last seen at or after ``active_since`` are 'active', older ones 'ended'; 'dismissed' ones
    (reviewers rejected enough of them) stay so."""
    db.execute("UPDATE campaigns SET status = CASE WHEN last_seen >= ? THEN 'active' ELSE 'ended' END "
               "WHERE status != 'dismissed' AND status != CASE WHEN last_seen >= ? THEN 'active' ELSE 'ended' END",
               [active_since, active_since])


def target_flag_count(db: sqlite_utils.Database, target: str, day_from: str, day_before: str) -> int:
    """Flagged articles naming ``target`` dated on days in [day_from, day_before) (flag_targets index)."""
    return int(db.execute("SELECT count(DISTINCT article_id) FROM flag_targets WHERE target = ? AND day >= ? AND day < ?",
                          [target, day_from, day_before]).fetchone()[0])


def reset_campaigns(db: sqlite_utils.Database) -> None:
    """Forget every campaign and the campaign index (``monitor campaigns --rebuild``); alerts stay."""
    for table in ("campaign_members", "campaigns", "campaign_keys", "campaign_items"):
        db.execute(f"DELETE FROM {table}")
    state_set(db, "campaigns.passage_id", 0)


def list_campaigns(db: sqlite_utils.Database, include_ended: bool = False, limit: int = 50) -> list[dict[str, Any]]:
    """Campaigns, most recent activity first (active ones only unless ``include_ended``)."""
    where = "" if include_ended else "WHERE status = 'active'"
    return list(db.query(f"SELECT * FROM campaigns {where} ORDER BY last_seen DESC, id DESC LIMIT ?", [int(limit)]))


def campaign_row(db: sqlite_utils.Database, campaign_id: int) -> dict[str, Any] | None:
    """One campaign."""
    rows = list(db.query("SELECT * FROM campaigns WHERE id = ?", [campaign_id]))
    return rows[0] if rows else None


def campaigns_updated_since(db: sqlite_utils.Database, since: str) -> list[dict[str, Any]]:
    """Campaigns created or changed at or after ``since`` (for alert rules)."""
    return list(db.query("SELECT * FROM campaigns WHERE updated_at >= ? ORDER BY id", [since]))


def reviews_after(db: sqlite_utils.Database, after_id: int) -> list[dict[str, Any]]:
    """Review decisions with id > ``after_id``, with the article and its latest verdict's targets and score."""
    return list(db.query(
        """
        SELECT r.id AS review_id, r.article_id, r.reviewer, r.decision, r.targets AS review_targets,
               r.categories AS review_categories, r.created_at, a.title, a.url, a.section, a.published,
               coalesce(o.name, a.outlet_id) AS outlet, c.targets, c.top_category, c.score
        FROM reviews r JOIN articles a ON a.id = r.article_id LEFT JOIN outlets o ON o.id = a.outlet_id
        LEFT JOIN latest_classifications c ON c.article_id = r.article_id
        WHERE r.id > ? ORDER BY r.id
        """, [int(after_id)]))


def edit_verdicts_after(db: sqlite_utils.Database, after_id: int) -> list[dict[str, Any]]:
    """Verdicts on edited texts (classification id > ``after_id``) beside the verdict on the text before.

    ``before_*`` columns are the same model's verdict on the nearest earlier classified text of the
    article (the first capture or an earlier edit); rows with no such verdict are left out. The
    passages are those of the flagged side: the edit's when it added a smear, the earlier text's
    when the edit removed one.
    """
    rows = list(db.query(
        """
        SELECT x.*, b.stigmatising AS before_stigmatising, b.score AS before_score, b.targets AS before_targets,
               b.top_category AS before_category, b.version_id AS before_version_id,
               a.title, a.url, a.section, a.published, coalesce(o.name, a.outlet_id) AS outlet,
               v.capture_id, v.detected_at
        FROM (SELECT c.id AS classification_id, c.article_id, c.version_id, c.stigmatising, c.score, c.targets,
                     c.top_category, c.model_id, c.model_version,
                     (SELECT p.id FROM classifications p WHERE p.article_id = c.article_id AND p.model_id = c.model_id
                        AND p.model_version = c.model_version AND coalesce(p.version_id, 0) < c.version_id
                      ORDER BY coalesce(p.version_id, 0) DESC LIMIT 1) AS before_id
              FROM classifications c WHERE c.version_id IS NOT NULL AND c.id > ?) x
        JOIN classifications b ON b.id = x.before_id
        JOIN articles a ON a.id = x.article_id
        JOIN article_versions v ON v.id = x.version_id
        LEFT JOIN outlets o ON o.id = a.outlet_id
        ORDER BY x.classification_id
        """, [int(after_id)]))
    for r in rows:
        flagged_side = r["classification_id"] if r["stigmatising"] else r["before_id"]
        r["passages"] = [t for (t,) in db.execute("SELECT text FROM passages WHERE classification_id = ? ORDER BY start",
                                                   [flagged_side]).fetchall()]
    return rows


def max_classification_id(db: sqlite_utils.Database) -> int:
    """The highest classification id (0 when there is none)."""
    return int(db.execute("SELECT coalesce(max(id), 0) FROM classifications").fetchone()[0])


def flagged_removals_after(db: sqlite_utils.Database, after_id: int) -> list[dict[str, Any]]:
    """Re-checks (id > ``after_id``) that found a page gone (404/410) whose article's verdict is flagged."""
    rows = list(db.query(
        """
        SELECT k.id AS check_id, k.article_id, k.checked_at, k.http_status, c.id AS classification_id, c.score,
               c.targets, c.top_category, a.title, a.url, a.section, a.published, coalesce(o.name, a.outlet_id) AS outlet,
               coalesce(a.last_capture_id, a.capture_id) AS capture_id
        FROM article_checks k
        JOIN latest_classifications c ON c.article_id = k.article_id AND c.stigmatising = 1
        JOIN articles a ON a.id = k.article_id LEFT JOIN outlets o ON o.id = a.outlet_id
        WHERE k.id > ? AND k.outcome = 'removed' ORDER BY k.id
        """, [int(after_id)]))
    for r in rows:
        r["passages"] = [t for (t,) in db.execute("SELECT text FROM passages WHERE classification_id = ? ORDER BY start",
                                                   [r["classification_id"]]).fetchall()]
    return rows


def max_check_id(db: sqlite_utils.Database) -> int:
    """The highest re-check id (0 when there is none)."""
    return int(db.execute("SELECT coalesce(max(id), 0) FROM article_checks").fetchone()[0])


def max_review_id(db: sqlite_utils.Database) -> int:
    """The highest review id (0 when there is none)."""
    return int(db.execute("SELECT coalesce(max(id), 0) FROM reviews").fetchone()[0])


def add_alert(db: sqlite_utils.Database, alert: dict[str, Any], channels: list[str], now: str) -> int | None:
    """Insert an alert once (its ``key`` is unique) with one pending delivery per channel; None if it exists."""
    cursor = db.execute(
        "INSERT OR IGNORE INTO alerts (key, rule, kind, created_at, title, summary, url, article_id, campaign_id, target, "
        "payload) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [alert["key"], alert["rule"], alert["kind"], now, alert["title"], alert["summary"], alert.get("url"),
         alert.get("article_id"), alert.get("campaign_id"), alert.get("target"),
         json.dumps(alert.get("payload", {}), ensure_ascii=False, sort_keys=True)])
    if cursor.rowcount == 0:
        return None
    alert_id = int(cursor.lastrowid)
    db.conn.executemany("INSERT OR IGNORE INTO deliveries (alert_id, channel, next_attempt_at, updated_at) "
                        "VALUES (?, ?, ?, ?)", [(alert_id, ch, now, now) for ch in channels])
    return alert_id


def alert_exists(db: sqlite_utils.Database, key: str) -> bool:
    """Whether an alert with this key was ever created."""
    return db.execute("SELECT 1 FROM alerts WHERE key = ?", [key]).fetchone() is not None


def list_alerts(db: sqlite_utils.Database, limit: int = 50, since: str | None = None,
                kinds: tuple[str, ...] | None = None) -> list[dict[str, Any]]:
    """Alerts, newest first, with each delivery's channel and status (``deliveries``: "channel:status, ...")."""
    clauses, params = [], []
    if since:
        clauses.append("a.created_at >= ?")
        params.append(since)
    if kinds:
        clauses.append("a.kind IN (SELECT value FROM json_each(?))")
        params.append(json.dumps(list(kinds)))
    where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
    return list(db.query(
        f"SELECT a.*, (SELECT group_concat(d.channel || ':' || d.status, ', ') FROM deliveries d WHERE d.alert_id = a.id) "
        f"AS deliveries FROM alerts a {where} ORDER BY a.created_at DESC, a.id DESC LIMIT ?", [*params, int(limit)]))


def due_deliveries(db: sqlite_utils.Database, now: str) -> list[dict[str, Any]]:
    """Pending deliveries whose next attempt is due, oldest alert first, with their alert."""
    return list(db.query(
        "SELECT d.alert_id, d.channel, d.attempts, a.key, a.rule, a.kind, a.created_at, a.title, a.summary, a.url, "
        "a.article_id, a.campaign_id, a.target, a.payload FROM deliveries d JOIN alerts a ON a.id = d.alert_id "
        "WHERE d.status = 'pending' AND d.next_attempt_at <= ? ORDER BY d.alert_id, d.channel", [now]))


def record_delivery(db: sqlite_utils.Database, alert_id: int, channel: str, status: str, now: str,
                    error: str | None = None, next_attempt_at: str | None = None) -> None:
    """One delivery attempt's outcome: 'sent', 'failed' (given up) or 'pending' (retry at ``next_attempt_at``)."""
    with db.conn:
        db.execute(
            "UPDATE deliveries SET status = ?, attempts = attempts + 1, last_error = ?, updated_at = ?, "
            "sent_at = CASE WHEN ? = 'sent' THEN ? ELSE sent_at END, next_attempt_at = coalesce(?, next_attempt_at) "
            "WHERE alert_id = ? AND channel = ?",
            [status, (error or None) and error[:2000], now, status, now, next_attempt_at, alert_id, channel])


def delivery_rows(db: sqlite_utils.Database, alert_id: int | None = None) -> list[dict[str, Any]]:
    """Deliveries (of one alert, or all), in order."""
    where = "WHERE alert_id = ?" if alert_id is not None else ""
    return list(db.query(f"SELECT * FROM deliveries {where} ORDER BY alert_id, channel",
                         [alert_id] if alert_id is not None else []))


def digest_counts(db: sqlite_utils.Database, since: str) -> dict[str, Any]:
    """Flags (latest verdicts) of articles first seen since ``since``: total, per target and per outlet."""
    base = f"{COUNTED_FLAGS} AND a.first_seen_at >= ?"
    total = db.execute(f"SELECT count(*) {base}", [since]).fetchone()[0]
    targets = list(db.query(
        f"SELECT t.value AS label, count(*) AS n {base.replace('WHERE c.stigmatising', ', json_each(c.targets) t WHERE c.stigmatising')} "
        "GROUP BY label ORDER BY n DESC, label LIMIT 10", [since]))
    outlets = list(db.query(
        f"SELECT coalesce(o.name, a.outlet_id) AS label, count(*) AS n "
        f"{base} "
        "GROUP BY label ORDER BY n DESC, label LIMIT 10", [since]))
    return {"flagged": total, "targets": targets, "outlets": outlets}
