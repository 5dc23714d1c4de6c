"""Turn new flagged passages, campaigns and review decisions into alerts, each exactly once (by its key)."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Iterator
from typing import Any

import sqlite_utils

from .. import store
from ..fetch import utc_now
from .config import AlertingSettings, Rule

LOGGER = logging.getLogger(__name__)
WATERMARK_PASSAGE = "alerts.passage_id"
WATERMARK_REVIEW = "alerts.review_id"
WATERMARK_CAMPAIGNS = "alerts.campaigns_at"
WATERMARK_EDITS = "alerts.classification_id"   # verdicts on edited texts (smear_added_by_edit / smear_removed)
WATERMARK_CHECKS = "alerts.check_id"           # re-checks that found a flagged page gone (smear_removed)
SNIPPET = 600


def database_name(db: sqlite_utils.Database, settings: AlertingSettings) -> str:
    """The Datasette name of the database (its file's stem), for links."""
    if settings.database:
        return settings.database
    path = store.database_file(db)
    return path.stem if path else "monitor"


def article_link(settings: AlertingSettings, article_id: str) -> str:
    """The article's page on the review desk."""
    return f"{settings.base_url}/-/monitor/article/{article_id}"


def campaign_link(settings: AlertingSettings, dbname: str, campaign_id: int) -> str:
    """The campaign's row in Datasette (with its members through the ``campaign`` canned query)."""
    return f"{settings.base_url}/{dbname}/campaign?id={campaign_id}"


def targets_match(rule: Rule, targets: Iterable[str], generic: set[str]) -> bool:
    """Whether the targets satisfy the rule's ``targets`` filter (any / watchlist / a list of names)."""
    names = list(targets)
    if rule.targets == "any":
        return True
    if rule.targets == "watchlist":
        return any(t not in generic for t in names)
    wanted = {t.casefold() for t in rule.targets}
    return any(t.casefold() in wanted for t in names)


def _snippet(text: str) -> str:
    text = " ".join((text or "").split())
    return text if len(text) <= SNIPPET else text[:SNIPPET - 1] + "…"


def _passage_alerts(rule: Rule, rows: list[dict[str, Any]], settings: AlertingSettings,
                    generic: set[str]) -> Iterator[dict[str, Any]]:
    """official_statement and score_above: at most one alert per classified article."""
    seen: set[int] = set()
    for r in rows:
        if r["classification_id"] in seen or r.get("earlier_flagged"):
            continue
        targets = json.loads(r["targets"] or "[]") or json.loads(r["article_targets"] or "[]")
        if rule.section and r["section"] != rule.section:
            continue
        if not targets_match(rule, targets, generic):
            continue
        if rule.when == "official_statement":
            if not r["speaker_is_official"] or not r["speaker"]:
                continue
            title = f"Public official {r['speaker']} on {', '.join(targets) or 'defenders'} ({r['outlet']})"
        elif rule.when == "score_above":
            if (r["article_score"] or 0) < rule.score:
                continue
            title = (f"{'Opinion column' if r['section'] == 'opinion' else 'Article'} scoring {r['article_score']:.2f} "
                     f"against {', '.join(targets) or 'defenders'} ({r['outlet']})")
        else:
            continue
        seen.add(r["classification_id"])
        yield {
            "key": f"{rule.id}:{r['classification_id']}", "rule": rule.id, "kind": rule.when, "title": title,
            "summary": f"“{_snippet(r['text'])}” — {r['outlet']}: {r['title']}",
            "url": article_link(settings, r["article_id"]), "article_id": r["article_id"],
            "target": targets[0] if targets else None,
            "payload": {"outlet": r["outlet"], "section": r["section"], "columnist": r["columnist"],
                        "article_title": r["title"], "article_url": r["url"], "published": r["published"],
                        "passage": r["text"], "score": r["article_score"], "passage_score": r["score"],
                        "category": r["top_category"], "voice": r["voice"], "speaker": r["speaker"],
                        "speaker_is_official": bool(r["speaker_is_official"]), "targets": targets},
        }


def _review_alerts(rule: Rule, reviews: list[dict[str, Any]], settings: AlertingSettings,
                   generic: set[str]) -> Iterator[dict[str, Any]]:
    """confirmed_item: one alert per article a reviewer confirmed (or re-labelled as stigmatising)."""
    for r in reviews:
        if r["decision"] not in ("confirm", "relabel"):
            continue
        targets = json.loads(r["review_targets"]) if r["review_targets"] is not None else json.loads(r["targets"] or "[]")
        if not targets or not targets_match(rule, targets, generic):
            continue
        yield {
            "key": f"{rule.id}:{r['article_id']}", "rule": rule.id, "kind": rule.when,
            "title": f"Confirmed: {', '.join(targets)} stigmatised by {r['outlet']}",
            "summary": f"{r['reviewer']} confirmed “{r['title']}” ({r['outlet']}, {r['published'] or 'undated'}).",
            "url": article_link(settings, r["article_id"]), "article_id": r["article_id"], "target": targets[0],
            "payload": {"outlet": r["outlet"], "article_title": r["title"], "article_url": r["url"],
                        "published": r["published"], "reviewer": r["reviewer"], "decision": r["decision"],
                        "targets": targets, "score": r["score"], "category": r["top_category"]},
        }


def _edit_alert(rule: Rule, r: dict[str, Any], targets: list[str], key: str, title: str,
                settings: AlertingSettings, facts: dict[str, Any]) -> dict[str, Any]:
    """An alert about an article's change after capture, quoting the flagged passages it concerns."""
    return {
        "key": f"{rule.id}:{key}", "rule": rule.id, "kind": rule.when, "title": title,
        "summary": f"“{_snippet(' […] '.join(r['passages']))}” — {r['outlet']}: {r['title']}",
        "url": article_link(settings, r["article_id"]), "article_id": r["article_id"],
        "target": targets[0] if targets else None,
        "payload": {"outlet": r["outlet"], "section": r["section"], "article_title": r["title"],
                    "article_url": r["url"], "published": r["published"], "passages": r["passages"],
                    "targets": targets, **facts},
    }


def _edit_alerts(rule: Rule, edits: list[dict[str, Any]], removals: list[dict[str, Any]], settings: AlertingSettings,
                 generic: set[str]) -> Iterator[dict[str, Any]]:
    """smear_added_by_edit / smear_removed: a stealth edit changed the verdict, or a flagged page went away.

    One alert per edited text (the key names the ``article_versions`` row, so a new model's
    verdict on the same edit raises nothing new) and one per removed flagged article.
    """
    added = rule.when == "smear_added_by_edit"
    for r in edits:
        if bool(r["stigmatising"]) != added or bool(r["before_stigmatising"]) != (not added):
            continue
        targets = json.loads((r["targets"] if added else r["before_targets"]) or "[]")
        if targets_match(rule, targets, generic):
            yield _edit_alert(
                rule, r, targets, f"version:{r['version_id']}",
                f"Smear {'added to' if added else 'removed from'} an article by an edit ({r['outlet']}, "
                f"{r['detected_at'][:16]} UTC)", settings,
                {"edited_at": r["detected_at"], "capture_id": r["capture_id"], "score": r["score"],
                 "score_before": r["before_score"], "version_id": r["version_id"],
                 "before_version_id": r["before_version_id"]})
    for r in [] if added else removals:
        targets = json.loads(r["targets"] or "[]")
        if targets_match(rule, targets, generic):
            yield _edit_alert(
                rule, r, targets, f"removed:{r['article_id']}",
                f"Flagged article taken down (HTTP {r['http_status']}) by {r['outlet']}, {r['checked_at'][:16]} UTC",
                settings, {"removed_at": r["checked_at"], "http_status": r["http_status"],
                           "last_capture_id": r["capture_id"], "score": r["score"]})


def campaign_alert(rule: Rule, c: dict[str, Any], members: list[dict[str, Any]], settings: AlertingSettings,
                   dbname: str) -> dict[str, Any]:
    """The alert for a new campaign, with its members."""
    outlets = json.loads(c["outlets"] or "[]")
    categories = json.loads(c["categories"] or "[]")
    title = (f"Campaign against {c['target'] or 'defenders'}: {c['category'] or ', '.join(categories[:2])} — "
             f"{c['n_outlets']} outlets, {c['articles']} articles, {c['first_seen'][:16]} to {c['last_seen'][:16]} UTC")
    summary = (f"{', '.join(outlets)}. Burst score {c['burst_score']} (expected {c['baseline_per_window']} "
               f"per window at the target's usual rate, peak {c['peak_articles']}). First: "
               f"“{_snippet(members[0]['text']) if members else ''}”")
    return {
        "key": f"{rule.id}:{c['key']}", "rule": rule.id, "kind": rule.when, "title": title, "summary": summary,
        "url": campaign_link(settings, dbname, c["id"]), "campaign_id": c["id"], "target": c["target"],
        "payload": {"campaign_id": c["id"], "target": c["target"], "category": c["category"], "via": c["via"],
                    "targets": json.loads(c["targets"] or "[]"), "categories": categories, "outlets": outlets,
                    "speakers": json.loads(c["speakers"] or "[]"), "first_seen": c["first_seen"],
                    "last_seen": c["last_seen"], "items": c["items"], "articles": c["articles"],
                    "burst_score": c["burst_score"], "burst_z": c["burst_z"],
                    "baseline_per_window": c["baseline_per_window"],
                    "members": [{"outlet": m["outlet"], "at": m["at"], "title": m["title"], "url": m["url"],
                                 "passage": _snippet(m["text"]), "link": m["link"], "speaker": m["speaker"],
                                 "article": article_link(settings, m["article_id"])} for m in members]},
    }


def generate(db: sqlite_utils.Database, settings: AlertingSettings, generic: Iterable[str] = (),
             now: str | None = None) -> list[int]:
    """Evaluate every rule on what is new since the last call; store new alerts and their deliveries.

    New = flagged passages, review decisions, verdicts on edited texts and re-checks past their
    watermarks, and campaigns created or changed since the last call. An alert's key (rule + campaign / classification / article) is
    unique, so an alert is never created twice, across restarts and rebuilds. One transaction.

    Returns:
        The ids of the alerts created.
    """
    now = now or utc_now()
    generic_set = set(generic)
    created: list[int] = []
    with store.atomic(db):
        after = int(store.state_get(db, WATERMARK_PASSAGE, "0"))
        review_after = int(store.state_get(db, WATERMARK_REVIEW, "0"))
        since = store.state_get(db, WATERMARK_CAMPAIGNS, "")
        rows = store.flagged_passages_after(db, after)
        reviews = store.reviews_after(db, review_after)
        campaigns = store.campaigns_updated_since(db, since)
        edits_after = int(store.state_get(db, WATERMARK_EDITS, "0"))
        checks_after = int(store.state_get(db, WATERMARK_CHECKS, "0"))
        edits = store.edit_verdicts_after(db, edits_after)
        removals = store.flagged_removals_after(db, checks_after)
        dbname = database_name(db, settings)
        for rule in settings.rules:
            if rule.when == "new_campaign":
                alerts: Iterable[dict[str, Any]] = (
                    campaign_alert(rule, c, store.campaign_member_rows(db, c["id"]), settings, dbname)
                    for c in campaigns
                    if c["status"] != "dismissed"
                    and c["n_outlets"] >= rule.min_outlets and (c["burst_score"] or 0) >= rule.min_burst
                    and targets_match(rule, json.loads(c["targets"] or "[]") or [c["target"] or ""], generic_set)
                    and not store.alert_exists(db, f"{rule.id}:{c['key']}"))
            elif rule.when == "confirmed_item":
                alerts = _review_alerts(rule, reviews, settings, generic_set)
            elif rule.when in ("smear_added_by_edit", "smear_removed"):
                alerts = _edit_alerts(rule, edits, removals, settings, generic_set)
            else:
                alerts = _passage_alerts(rule, rows, settings, generic_set)
            for alert in alerts:
                alert_id = store.add_alert(db, alert, settings.channels_for(rule), now)
                if alert_id is not None:
                    created.append(alert_id)
                    LOGGER.info("alert %s: %s", alert["key"], alert["title"])
        store.state_set(db, WATERMARK_PASSAGE, max([after, *(int(r["passage_id"]) for r in rows)]))
        store.state_set(db, WATERMARK_REVIEW, max([review_after, *(int(r["review_id"]) for r in reviews)]))
        store.state_set(db, WATERMARK_CAMPAIGNS, now)
        store.state_set(db, WATERMARK_EDITS, max([edits_after, *(int(r["classification_id"]) for r in edits)]))
        store.state_set(db, WATERMARK_CHECKS, max([checks_after, *(int(r["check_id"]) for r in removals)]))
    return created


def skip_campaigns_until(db: sqlite_utils.Database, now: str) -> None:
    """Campaigns changed before ``now`` raise no alert (after ``monitor campaigns --rebuild``)."""
    with store.atomic(db):
        store.state_set(db, WATERMARK_CAMPAIGNS, now)
