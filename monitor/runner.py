"""``monitor run``: execute the schedules for months, surviving restarts (APScheduler 3 + SQLite job store).

- Jobs live in a SQLAlchemy job store on SQLite (``<db>.schedule.sqlite`` beside the database),
  so their next run times survive restarts; a schedule whose definition is unchanged keeps its
  stored state, a changed one is replaced, a removed one is deleted.
- One instance of a job at a time; misfired runs (the process was down) are coalesced into one
  run as soon as it is back.
- A run interrupted by a stop or a crash is started again at the next start-up (its queued
  entries were never lost: each page is stored in one transaction).
- SIGTERM/SIGINT: no new request starts, the pages in flight are stored, the scheduler shuts
  down, exit code 0.
"""

from __future__ import annotations

import json
import logging
import signal
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from . import store
from .alerts.config import default_path, load_alerting
from .config import load_config
from .errors import MonitorError
from .schedules import Schedule, check_against_config, cron_trigger, load_schedules

LOGGER = logging.getLogger(__name__)
STOP = threading.Event()
_classifiers: dict[str, Any] = {}
_classifier_lock = threading.Lock()


@dataclass(frozen=True)
class RunnerSettings:
    """Paths and names a scheduled job needs (plain strings: they are pickled into the job store)."""

    db: str
    feeds: str
    schedules: str
    classifier: str


def jobstore_path(db: str) -> Path:
    """Where the scheduler keeps its jobs: next to the database."""
    p = Path(db)
    return p.with_name(p.name + ".schedule.sqlite")


def run_job(schedule_id: str, db: str, feeds: str, schedules: str, classifier: str) -> None:
    """Run one scheduled job (the function APScheduler calls; reads the current files each time)."""
    from .pipeline import crawl_once
    from .recheck import recheck

    try:
        config = load_config(feeds)
        by_id = {s.id: s for s in load_schedules(schedules)}
    except Exception as e:  # a config edited into an invalid state: say so, keep the scheduler alive
        LOGGER.error("job %s not run: %s", schedule_id, e)
        return
    try:  # campaigns and alerts after each crawl; a broken alerts.yaml must not stop the crawling
        alerting = load_alerting(default_path(feeds))
    except MonitorError as e:
        LOGGER.error("job %s: crawling without campaigns and alerts: %s", schedule_id, e)
        alerting = None
    schedule = by_id.get(schedule_id)
    if schedule is None:
        LOGGER.warning("job %s: no such schedule any more; skipped", schedule_id)
        return
    database = store.connect(db)
    started = time.monotonic()
    LOGGER.info("job %s started", schedule_id, extra={"schedule": schedule_id, "event": "job_started"})
    try:
        clf = None
        if schedule.classify:
            try:
                clf = _classifier(classifier)
            except MonitorError as e:  # no model yet: store articles now, `monitor classify` later
                LOGGER.error("job %s: running without classification: %s", schedule_id, e)
        if schedule.job == "recheck":
            result: Any = recheck(database, config, schedule.days, schedule.flagged_days, schedule.limit,
                                  should_stop=STOP.is_set, schedule_id=schedule_id, classifier=clf,
                                  alerting=alerting if clf is not None else None)
        else:
            result = crawl_once(database, config, clf, feeds=schedule.select(config), should_stop=STOP.is_set,
                                schedule_id=schedule_id, alerting=alerting)
        LOGGER.info("job %s finished: %s", schedule_id, result.line(),
                    extra={"schedule": schedule_id, "event": "job_finished", "run_id": result.run_id,
                           "seconds": round(time.monotonic() - started, 1)})
    finally:
        database.close()


def _classifier(name: str) -> Any:
    """The classifier, loaded once per process (model loading takes seconds)."""
    from .classifier.registry import load_classifier

    with _classifier_lock:
        if name not in _classifiers:
            _classifiers[name] = load_classifier(name)
        return _classifiers[name]


def _trigger(s: Schedule) -> Any:
    from apscheduler.triggers.interval import IntervalTrigger

    if s.cron:
        return cron_trigger(s.cron, s.timezone, s.jitter_s)
    return IntervalTrigger(seconds=s.every_s, jitter=int(s.jitter_s) or None, timezone=s.timezone)


def build_scheduler(settings: RunnerSettings) -> Any:
    """A BackgroundScheduler with the SQLite job store, one instance per job, coalesced misfires."""
    from apscheduler.executors.pool import ThreadPoolExecutor
    from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
    from apscheduler.schedulers.background import BackgroundScheduler

    return BackgroundScheduler(
        jobstores={"default": SQLAlchemyJobStore(url=f"sqlite:///{jobstore_path(settings.db).resolve()}")},
        executors={"default": ThreadPoolExecutor(max_workers=2)},
        job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": None},
        timezone=timezone.utc,
    )


def sync_jobs(scheduler: Any, schedules: list[Schedule], settings: RunnerSettings,
              db: Any) -> dict[str, str]:
    """Make the stored jobs match the schedules; returns what happened to each (kept/added/replaced/removed)."""
    actions: dict[str, str] = {}
    wanted = {s.id: s for s in schedules if s.enabled}
    for job in scheduler.get_jobs():
        if job.id not in wanted:
            scheduler.remove_job(job.id)
            actions[job.id] = "removed"
    interrupted = store.interrupted_schedules(db)
    for s in wanted.values():
        name = f"{s.id} [{s.fingerprint()}]"
        job = scheduler.get_job(s.id)
        if job is not None and job.name == name:
            actions[s.id] = "kept"
        else:
            scheduler.add_job(run_job, _trigger(s), id=s.id, name=name, replace_existing=True,
                              kwargs={"schedule_id": s.id, "db": settings.db, "feeds": settings.feeds,
                                      "schedules": settings.schedules, "classifier": settings.classifier})
            actions[s.id] = "replaced" if job is not None else "added"
        if s.id in interrupted:  # stopped or crashed mid-run last time: run it again now
            scheduler.modify_job(s.id, next_run_time=datetime.now(timezone.utc))
            actions[s.id] += ", resumed"
    return actions


def next_runs(db: str) -> dict[str, str]:
    """Next run time of each stored job (for ``monitor status``); empty when nothing is scheduled."""
    path = jobstore_path(db)
    if not path.is_file():
        return {}
    from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore

    jobstore = SQLAlchemyJobStore(url=f"sqlite:///{path.resolve()}")
    try:
        return {row.id: row.next_run_time.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
                for row in jobstore.get_all_jobs() if row.next_run_time}
    except LookupError:  # a job whose function moved: report nothing rather than crash status
        return {}
    finally:
        jobstore.shutdown()


def run_forever(settings: RunnerSettings, now: bool = False) -> int:
    """Start the scheduler and block until SIGTERM/SIGINT; returns the exit code."""
    config = load_config(settings.feeds)
    schedules = load_schedules(settings.schedules)
    check_against_config(schedules, config, settings.schedules)
    load_alerting(default_path(settings.feeds))  # an invalid alerts.yaml stops the start, listing every problem
    db = store.connect(settings.db)
    STOP.clear()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda signum, frame: _request_stop(signum))
    scheduler = build_scheduler(settings)
    scheduler.start(paused=True)
    actions = sync_jobs(scheduler, schedules, settings, db)
    if now:
        for s in schedules:
            if s.enabled:
                scheduler.modify_job(s.id, next_run_time=datetime.now(timezone.utc))
    db.close()
    for sid, action in sorted(actions.items()):
        LOGGER.info("schedule %s: %s", sid, action, extra={"schedule": sid, "event": "schedule_" + action.split(",")[0]})
    scheduler.resume()
    LOGGER.info("scheduler running with %d schedule(s); stop with Ctrl-C or SIGTERM", len(actions),
                extra={"event": "scheduler_started"})
    while not STOP.wait(1.0):
        pass
    LOGGER.info("stopping: finishing the pages in flight", extra={"event": "scheduler_stopping"})
    scheduler.shutdown(wait=True)
    from .pageworker import shutdown_pool

    shutdown_pool()
    LOGGER.info("stopped", extra={"event": "scheduler_stopped"})
    return 0


def _request_stop(signum: int) -> None:
    LOGGER.info("received %s", signal.Signals(signum).name, extra={"event": "signal"})
    STOP.set()


class JsonFormatter(logging.Formatter):
    """One JSON object per log line (time, level, logger, message and any ``extra`` fields)."""

    _STANDARD = set(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {"message", "asctime"}

    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
            "level": record.levelname.lower(), "logger": record.name, "message": record.getMessage(),
        }
        data.update({k: v for k, v in record.__dict__.items() if k not in self._STANDARD})
        if record.exc_info:
            data["exception"] = self.formatException(record.exc_info)
        return json.dumps(data, ensure_ascii=False, default=str)
