"""Read and validate schedules (``schedules/*.yaml``): when each crawl or re-check runs, over which feeds."""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import yaml

from .config import SECTIONS, Config, Feed, Outlet, _Checker
from .errors import ConfigError

JOBS = ("crawl", "recheck")
_EVERY = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d)\s*$")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_KEYS: dict[str, type | tuple[type, ...]] = {
    "id": str, "job": str, "every": str, "cron": str, "jitter_s": (int, float), "outlets": list,
    "sections": list, "tags": list, "classify": bool, "days": int, "flagged_days": int, "limit": int,
    "enabled": bool, "note": str,
}


@dataclass(frozen=True, slots=True)
class Schedule:
    """One named schedule: a job, its trigger, and the feeds (crawl) or articles (recheck) it covers."""

    id: str
    job: str = "crawl"
    every_s: float | None = None       # interval trigger ...
    cron: str | None = None            # ... or a 5-field crontab line (in ``timezone``)
    jitter_s: float = 0.0
    outlets: tuple[str, ...] = ()      # crawl: feeds of these outlets (empty: all) ...
    sections: tuple[str, ...] = ()     # ... in these sections (empty: all) ...
    tags: tuple[str, ...] = ()         # ... carrying any of these tags, on the outlet or the feed (empty: all)
    classify: bool = True              # classify new articles (crawl) or new versions of edited ones (recheck)
    days: int = 7                      # recheck: articles first seen in the last N days ...
    flagged_days: int = 60             # ... and flagged articles for longer
    limit: int = 5000                  # recheck: at most this many articles per run
    enabled: bool = True
    timezone: str = "UTC"

    def fingerprint(self) -> str:
        """Hash of the definition: a changed schedule replaces its stored job, an unchanged one keeps its state."""
        return hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()[:12]

    def select(self, config: Config) -> list[tuple[Outlet, Feed]]:
        """The enabled feeds this crawl schedule covers."""
        out = []
        for outlet, feed in config.enabled_feeds():
            if self.outlets and outlet.id not in self.outlets:
                continue
            if self.sections and feed.section not in self.sections:
                continue
            if self.tags and not set(self.tags) & (set(outlet.tags) | set(feed.tags)):
                continue
            out.append((outlet, feed))
        return out


def parse_schedules(data: Any, source: str) -> list[Schedule]:
    """Validate parsed YAML into schedules.

    Raises:
        ConfigError: every problem, with its location.
    """
    c = _Checker()
    top = c.mapping(data, "(top level)", {"timezone": str, "schedules": list}, required=("schedules",))
    tz = top.get("timezone", "UTC")
    try:
        from zoneinfo import ZoneInfo

        ZoneInfo(tz)
    except Exception:  # ZoneInfoNotFoundError, ValueError for odd strings
        c.fail("timezone", f"unknown time zone {tz!r} (e.g. UTC, America/Mexico_City)")
    out: list[Schedule] = []
    seen: set[str] = set()
    for i, raw in enumerate(top.get("schedules", [])):
        where = f"schedules[{i}]"
        s = c.mapping(raw, where, _KEYS, required=("id", "job"))
        sid = s.get("id", f"schedule-{i}")
        if not re.fullmatch(r"[a-z0-9][a-z0-9_-]*", sid):
            c.fail(f"{where}.id", f"must be a lower-case slug, got {sid!r}")
        if sid in seen:
            c.fail(f"{where}.id", f"duplicate schedule id {sid!r}")
        seen.add(sid)
        job = s.get("job", "crawl")
        c.choice(job, f"{where}.job", JOBS)
        every_s = None
        if ("every" in s) == ("cron" in s):
            c.fail(where, "give exactly one of `every` (e.g. 15m) or `cron` (e.g. \"0 * * * *\")")
        if "every" in s:
            m = _EVERY.match(s["every"])
            if not m:
                c.fail(f"{where}.every", f"must look like 30s, 15m, 6h or 1d, got {s['every']!r}")
            else:
                every_s = float(m.group(1)) * _UNIT_S[m.group(2)]
                if every_s < 1:
                    c.fail(f"{where}.every", "must be at least 1 second")
        if "cron" in s:
            _check_cron(c, s["cron"], f"{where}.cron", tz)
        sections = c.str_list(s.get("sections"), f"{where}.sections")
        for sec in sections:
            c.choice(sec, f"{where}.sections", SECTIONS)
        if job == "recheck":
            for key in ("outlets", "sections", "tags"):
                if key in s:
                    c.fail(f"{where}.{key}", "applies to crawl schedules only")
        for key in ("jitter_s", "days", "flagged_days", "limit"):
            if key in s and s[key] < 0:
                c.fail(f"{where}.{key}", "must not be negative")
        out.append(Schedule(
            id=sid, job=job, every_s=every_s, cron=s.get("cron"), jitter_s=float(s.get("jitter_s", 0)),
            outlets=c.str_list(s.get("outlets"), f"{where}.outlets"), sections=sections,
            tags=c.str_list(s.get("tags"), f"{where}.tags"), classify=s.get("classify", True),
            days=s.get("days", 7), flagged_days=s.get("flagged_days", 60), limit=s.get("limit", 5000),
            enabled=s.get("enabled", True), timezone=tz,
        ))
    if isinstance(top.get("schedules"), list) and not top["schedules"]:
        c.fail("schedules", "is empty: define at least one schedule")
    if c.problems:
        raise ConfigError(source, c.problems)
    return out


_WEEKDAYS = ["sun", "mon", "tue", "wed", "thu", "fri", "sat", "sun"]


def _weekday_field(field: str) -> str:
    """Crontab weekday numbers (0 or 7 = Sunday) as names: APScheduler 3 counts 0 as Monday."""
    def name(token: str) -> str:
        return _WEEKDAYS[int(token)] if token.isdigit() and int(token) <= 7 else token

    parts = []
    for item in field.split(","):
        base, slash, step = item.partition("/")
        parts.append("-".join(name(t) for t in base.split("-")) + (slash + step if slash else ""))
    return ",".join(parts)


def cron_trigger(expr: str, timezone: str = "UTC", jitter_s: float = 0.0) -> Any:
    """An APScheduler CronTrigger for a standard 5-field crontab line (weekdays as cron counts them).

    Raises:
        ValueError: not 5 fields, or a field APScheduler rejects.
    """
    from apscheduler.triggers.cron import CronTrigger

    fields = expr.split()
    if len(fields) != 5:
        raise ValueError(f"must have 5 fields (minute hour day month weekday), got {expr!r}")
    minute, hour, day, month, weekday = fields
    return CronTrigger(minute=minute, hour=hour, day=day, month=month, day_of_week=_weekday_field(weekday),
                       timezone=timezone, jitter=int(jitter_s) or None)


def _check_cron(c: _Checker, expr: str, where: str, tz: str) -> None:
    if len(expr.split()) != 5:
        c.fail(where, f"must have 5 fields (minute hour day month weekday), got {expr!r}")
        return
    try:
        cron_trigger(expr, "UTC")
    except ValueError as e:
        c.fail(where, f"invalid crontab {expr!r}: {e}")


def load_schedules(path: str | Path) -> list[Schedule]:
    """Read a schedules YAML file, or every ``*.yaml`` in a directory (ids must be unique across files).

    Raises:
        ConfigError: missing path, invalid YAML, or invalid schedules (every problem listed).
    """
    p = Path(path)
    files = sorted(p.glob("*.yaml")) if p.is_dir() else [p]
    if p.is_dir() and not files:
        raise ConfigError(str(p), ["no *.yaml schedule files in this directory"])
    schedules: list[Schedule] = []
    for f in files:
        try:
            data = yaml.safe_load(f.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(str(f), ["file not found"]) from None
        except yaml.YAMLError as e:
            mark = getattr(e, "problem_mark", None)
            where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "(parse)"
            raise ConfigError(str(f), [f"{where}: not valid YAML: {getattr(e, 'problem', e)}"]) from None
        schedules += parse_schedules(data, str(f))
    ids = [s.id for s in schedules]
    dupes = sorted({i for i in ids if ids.count(i) > 1})
    if dupes:
        raise ConfigError(str(p), [f"schedule id {d!r} defined in more than one file" for d in dupes])
    return schedules


def check_against_config(schedules: list[Schedule], config: Config, source: str) -> None:
    """Crawl schedules must name outlets and tags that exist and cover at least one feed.

    Raises:
        ConfigError: listing each schedule that names an unknown outlet or selects no feed.
    """
    outlet_ids = {o.id for o in config.outlets}
    problems = []
    for s in schedules:
        if s.job != "crawl":
            continue
        for o in s.outlets:
            if o not in outlet_ids:
                problems.append(f"schedule {s.id}: unknown outlet {o!r} (not in {config.source})")
        if s.enabled and not s.select(config):
            problems.append(f"schedule {s.id}: selects no enabled feed of {config.source}")
    if problems:
        raise ConfigError(source, problems)
