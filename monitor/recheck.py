"""Re-check recent articles: a changed page becomes a new capture with a diff, a vanished one is marked removed.

Edits and deletions are evidence: an outlet that quietly rewrites or deletes a smear after
complaints has done something a lawyer needs to show. Old captures are never touched. Every new
version of the text is classified like the first one (an edit can add a smear as well as remove
one), then campaigns and alert rules run (``smear_added_by_edit``, ``smear_removed``).
"""

from __future__ import annotations

import difflib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import sqlite_utils

from . import pageworker, store
from .config import Config
from .errors import FetchError
from .evidence.recorder import Evidence
from .fetch import Fetcher
from .hostqueue import run_by_host

if TYPE_CHECKING:
    from .alerts.config import AlertingSettings
    from .classifier.registry import Classifier

LOGGER = logging.getLogger(__name__)
GONE = (404, 410)
MAX_DIFF_CHARS = 200_000


@dataclass
class RecheckSummary:
    """Counters of one re-check run."""

    run_id: int = 0
    checked: int = 0
    unchanged: int = 0
    changed: int = 0
    removed: int = 0
    restored: int = 0
    errors: int = 0
    classified: int = 0
    flagged: int = 0
    campaigns: int = 0
    alerts: int = 0

    def line(self) -> str:
        """The one-line summary printed after a run."""
        return (f"recheck run {self.run_id}: checked {self.checked}; unchanged {self.unchanged}, changed {self.changed}, "
                f"removed {self.removed}, restored {self.restored}; classified {self.classified}, flagged "
                f"{self.flagged}; alerts {self.alerts}; errors {self.errors}")


def text_diff(old: str, new: str) -> str:
    """Unified diff of two article texts, paragraph per line (capped at 200k characters)."""
    lines = difflib.unified_diff(old.splitlines(), new.splitlines(), "captured before", "captured now", lineterm="", n=1)
    out = "\n".join(lines)
    return out if len(out) <= MAX_DIFF_CHARS else out[:MAX_DIFF_CHARS] + "\n[… diff truncated]"


def recheck(db: sqlite_utils.Database, config: Config, days: int = 7, flagged_days: int = 60, limit: int = 5000,
            fetcher: Fetcher | None = None, should_stop: Callable[[], bool] = lambda: False,
            schedule_id: str | None = None, progress: Callable[[str, int, int], None] = lambda *a: None,
            classifier: Classifier | None = None, alerting: AlertingSettings | None = None) -> RecheckSummary:
    """Re-fetch articles first seen in the last ``days`` (flagged: ``flagged_days``) and record what changed.

    With a ``classifier``, every new version of a text is classified; with ``alerting`` too,
    campaigns and alert rules run on the new verdicts and removals, and due alerts are sent.
    """
    summary = RecheckSummary(run_id=store.start_run(db, "recheck"))
    if schedule_id:
        store.set_run_schedule(db, summary.run_id, schedule_id)
    own = fetcher is None
    fetcher = fetcher or Fetcher(config.fetch)
    evidence = Evidence(db, config.evidence, summary.run_id)
    status = "interrupted"
    try:
        rows = store.articles_to_recheck(db, days, flagged_days, limit)
        for row, future in run_by_host(rows, lambda r: r["url"], lambda r: _fetch(fetcher, r["url"]),
                                       config.fetch.concurrency, config.fetch.per_host_concurrency, should_stop, "recheck"):
            summary.checked += 1
            progress("recheck", summary.checked, len(rows))
            _record(db, summary, row, future, evidence)
        if not should_stop():
            evidence.stamp()
        if classifier is not None:
            _classify_versions(db, classifier, summary, progress)
        if alerting is not None:
            from .pipeline import after_crawl, generic_targets

            after_crawl(db, alerting, summary, generic_targets(classifier))
        status = "stopped" if should_stop() else "ok"
    finally:
        store.finish_run(db, summary.run_id, status, {"errors": summary.errors, "classified": summary.classified,
                                                       "flagged": summary.flagged, "alerts": summary.alerts})
        if own:
            fetcher.close()
    if alerting is not None and status == "ok":
        from .pipeline import deliver_alerts

        deliver_alerts(db, alerting, summary.run_id)
    return summary


def _classify_versions(db: sqlite_utils.Database, classifier: Classifier, summary: RecheckSummary,
                       progress: Callable[[str, int, int], None]) -> None:
    """Classify the texts still without a verdict by this model (the new versions; a failure is recorded)."""
    from .pipeline import CrawlSummary, classify_pending

    done = classify_pending(db, classifier, CrawlSummary(run_id=summary.run_id), progress)
    summary.classified += done.classified
    summary.flagged += done.flagged


def _fetch(fetcher: Fetcher, url: str) -> Any:
    fetched = fetcher.fetch(url)
    return fetched, pageworker.process_page(fetched, pack=False)  # most re-checks store nothing: compress on change


def _record(db: sqlite_utils.Database, summary: RecheckSummary, row: dict[str, Any], future: Any,
            evidence: Evidence) -> None:
    try:
        fetched, result = future.result()
    except FetchError as e:
        if e.status in GONE:
            store.record_check(db, summary.run_id, row, "removed", e.status, str(e))
            summary.removed += 1
        else:  # a timeout or a 500 says nothing about deletion
            store.record_check(db, summary.run_id, row, "error", e.status, str(e))
            store.record_failure(db, summary.run_id, "recheck", e.kind, str(e), url=row["url"], feed_id=row["feed_id"])
            summary.errors += 1
        return
    except Exception as e:  # never let one page stop the run
        LOGGER.exception("recheck of %s failed", row["url"])
        store.record_check(db, summary.run_id, row, "error", None, f"{type(e).__name__}: {e}")
        summary.errors += 1
        return
    was_removed = bool(row["removed_at"])
    if result.article is None:
        store.record_check(db, summary.run_id, row, "error", fetched.status, result.error or "no text extracted")
        summary.errors += 1
        return
    text_same = result.article.text == row["text"]
    if was_removed:
        store.record_check(db, summary.run_id, row, "restored", fetched.status, "answers again", fetched,
                           result.article, "" if text_same else text_diff(row["text"], result.article.text),
                           evidence.write(fetched))
        summary.restored += 1
    elif text_same:
        note = "same bytes" if fetched.sha256 == row["capture_sha256"] else "page bytes changed, article text did not"
        store.record_check(db, summary.run_id, row, "unchanged", fetched.status, note)
        summary.unchanged += 1
    else:
        store.record_check(db, summary.run_id, row, "changed", fetched.status, "article text changed", fetched,
                           result.article, text_diff(row["text"], result.article.text), evidence.write(fetched))
        summary.changed += 1
