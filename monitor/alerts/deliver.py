"""Send due deliveries, each alert once per channel; retry failures with exponential backoff; queue the daily digest."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any
from zoneinfo import ZoneInfo

import sqlite_utils

from .. import store
from .channels import alert_document, send
from .config import AlertingSettings, Channel
from .digest import build_digest

LOGGER = logging.getLogger(__name__)
_FMT = "%Y-%m-%dT%H:%M:%S.%fZ"
Sender = Callable[[Channel, dict[str, Any]], None]


@dataclass
class DeliveryReport:
    """What one delivery pass did."""

    sent: int = 0
    retrying: int = 0
    failed: int = 0
    skipped: int = 0

    def line(self) -> str:
        """One line for logs and the CLI."""
        return f"alerts: sent {self.sent}, retrying {self.retrying}, failed {self.failed}, skipped {self.skipped}"


def _now() -> datetime:
    return datetime.now(timezone.utc)


def retry_delay(settings: AlertingSettings, attempts: int) -> float:
    """Seconds before the next attempt after ``attempts`` failures: ``backoff_s * 2**(attempts-1)``, capped."""
    d = settings.delivery
    return min(d.backoff_s * 2 ** max(0, attempts - 1), d.max_backoff_s)


def deliver_pending(db: sqlite_utils.Database, settings: AlertingSettings, run_id: int | None = None,
                    now: datetime | None = None, sender: Sender = send) -> DeliveryReport:
    """Try every due delivery once; record each outcome as it happens (so a crash never resends a sent one).

    - success: ``sent``; failure: retried after :func:`retry_delay`, ``failed`` after ``max_attempts``
      (and a ``failures`` row, stage ``alert``);
    - a channel that fails is not tried again in this pass (a dead webhook costs one timeout, not
      one per alert); a disabled or removed channel's deliveries wait;
    - no send starts after ``pass_budget_s``: what is left waits for the next pass.
    """
    report = DeliveryReport()
    started = time.monotonic()
    dead: set[str] = set()
    now_dt = now or _now()
    for row in store.due_deliveries(db, now_dt.strftime(_FMT)):
        channel = settings.channel(row["channel"])
        if channel is None or not channel.enabled or channel.id in dead:
            report.skipped += 1
            continue
        if time.monotonic() - started > settings.delivery.pass_budget_s:
            report.skipped += 1
            continue
        attempt_at = (now or _now()).strftime(_FMT)
        try:
            sender(channel, alert_document(row))
        except Exception as e:  # a channel's failure is recorded, never raised into the crawl
            dead.add(channel.id)
            attempts = row["attempts"] + 1
            message = f"{type(e).__name__}: {e}" if not str(e).startswith(("webhook", "email")) else str(e)
            if attempts >= settings.delivery.max_attempts:
                store.record_delivery(db, row["alert_id"], channel.id, "failed", attempt_at, message)
                store.record_failure(db, run_id, "alert", "delivery",
                                     f"alert {row['key']} via {channel.id}: gave up after {attempts} attempt(s): {message}")
                report.failed += 1
                LOGGER.error("alert %s via %s failed for good after %d attempts: %s", row["key"], channel.id, attempts,
                             message)
            else:
                next_at = (now or _now()) + timedelta(seconds=retry_delay(settings, attempts))
                store.record_delivery(db, row["alert_id"], channel.id, "pending", attempt_at, message,
                                      next_at.strftime(_FMT))
                report.retrying += 1
                LOGGER.warning("alert %s via %s failed (attempt %d), retry after %s: %s", row["key"], channel.id,
                               attempts, next_at.strftime(_FMT), message)
            continue
        store.record_delivery(db, row["alert_id"], channel.id, "sent", attempt_at)
        report.sent += 1
        LOGGER.info("alert %s sent via %s", row["key"], channel.id)
    return report


def queue_digest(db: sqlite_utils.Database, settings: AlertingSettings, now: datetime | None = None,
                 force: bool = False) -> int | None:
    """Create today's digest alert once the configured local time has passed (or now, with ``force``).

    One digest per local day (its key is ``digest:YYYY-MM-DD``). Returns the new alert's id.
    """
    digest = settings.digest
    if not (digest.enabled or force):
        return None
    now = now or _now()
    local = now.astimezone(ZoneInfo(digest.timezone))
    hour, minute = (int(x) for x in digest.at.split(":"))
    if not force and (local.hour, local.minute) < (hour, minute):
        return None
    key = f"digest:{local.date().isoformat()}"
    if store.alert_exists(db, key):
        return None
    built = build_digest(db, settings, now)
    alert = {"key": key, "rule": "daily-digest", "kind": "digest", "title": built["title"],
             "summary": built["summary"], "url": f"{settings.base_url}/-/monitor/queue",
             "payload": {"text": built["text"], "html": built["html"], **built["figures"]}}
    channels = [c for c in digest.channels if (ch := settings.channel(c)) is not None and ch.enabled]
    with store.atomic(db):
        return store.add_alert(db, alert, channels, now.strftime(_FMT))
