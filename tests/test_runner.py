"""`monitor run`: schedules validated up front; SIGTERM mid-crawl loses no job and duplicates no row."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from monitor.config import parse_config
from monitor.errors import ConfigError
from monitor.schedules import check_against_config, parse_schedules
from tests.pages import article_html, rss, story_text

ROOT = Path(__file__).resolve().parents[1]


def schedules(*items: dict) -> list:  # type: ignore[type-arg]
    return parse_schedules({"schedules": list(items)}, "test.yaml")


def test_schedule_validation_lists_every_problem() -> None:
    with pytest.raises(ConfigError) as err:
        schedules({"id": "a", "job": "crawl", "every": "15 minutes"},
                  {"id": "a", "job": "fetch", "cron": "* * *"},
                  {"id": "c", "job": "crawl", "every": "1h", "cron": "0 * * * *", "sections": ["sports"]},
                  {"id": "d", "job": "recheck", "every": "1d", "sections": ["news"]},
                  {"id": "e", "job": "crawl", "cron": "61 * * * *"})
    text = str(err.value)
    for expected in ("schedules[0].every: must look like 30s, 15m, 6h or 1d", "schedules[1].id: duplicate schedule id 'a'",
                     "schedules[1].job: must be one of crawl, recheck", "schedules[1].cron: must have 5 fields",
                     "schedules[2]: give exactly one of `every`", "schedules[2].sections: must be one of news, opinion",
                     "schedules[3].sections: applies to crawl schedules only", "schedules[4].cron: invalid crontab"):
        assert expected in text, expected
    with pytest.raises(ConfigError, match="unknown time zone"):
        parse_schedules({"timezone": "Mars/Olympus", "schedules": [{"id": "a", "job": "crawl", "every": "1h"}]}, "t")


def test_schedule_selects_feeds_by_outlet_section_tag() -> None:
    config = parse_config({"outlets": [
        {"name": "Uno", "tags": ["oaxaca"], "feeds": [{"url": "http://a.test/n", "section": "news"},
                                                       {"url": "http://a.test/o", "section": "opinion"}]},
        {"name": "Dos", "feeds": [{"url": "http://b.test/n", "section": "news", "tags": ["wire"]}]}]}, "t")
    pick = lambda **kw: sorted(f.url for _o, f in schedules({"id": "s", "job": "crawl", "every": "1h", **kw})[0].select(config))  # noqa: E731
    assert pick() == ["http://a.test/n", "http://a.test/o", "http://b.test/n"]
    assert pick(sections=["opinion"]) == ["http://a.test/o"]
    assert pick(tags=["oaxaca"]) == ["http://a.test/n", "http://a.test/o"]
    assert pick(tags=["wire"], outlets=["dos"]) == ["http://b.test/n"]
    with pytest.raises(ConfigError, match="unknown outlet 'tres'"):
        check_against_config(schedules({"id": "s", "job": "crawl", "every": "1h", "outlets": ["tres"]}), config, "t")


def test_shipped_schedules_are_valid() -> None:
    from monitor.config import load_config
    from monitor.schedules import load_schedules

    loaded = load_schedules(ROOT / "schedules")
    assert {s.id for s in loaded} >= {"news", "opinion", "recheck"}
    check_against_config(loaded, load_config(ROOT / "feeds.yaml"), "schedules")


def _start(tmp: Path, *extra: str) -> subprocess.Popen:  # type: ignore[type-arg]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, "-m", "monitor.cli", "--db", str(tmp / "m.db"), "--feeds", str(tmp / "feeds.yaml"),
                             "--classifier", "keyword-baseline", "run", "--schedules", str(tmp / "s.yaml"), "--log-json", *extra],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _count(db: Path, sql: str) -> int:
    con = sqlite3.connect(db)
    try:
        return con.execute(sql).fetchone()[0]
    except sqlite3.OperationalError:  # not created yet
        return 0
    finally:
        con.close()


def _wait_for(predicate, timeout: float) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return False


def test_sigterm_mid_crawl_then_restart_loses_nothing(make_server, tmp_path: Path) -> None:
    site = make_server()
    n = 24
    items = []
    for i in range(n):
        site.add(f"/n/{i}.html", article_html(f"Nota {i}", story_text(100 + i)))
        items.append((f"Nota {i}", site.url(f"/n/{i}.html")))
    site.add("/feed.xml", rss(items), content_type="application/rss+xml")
    site.latency["/n/"] = 0.25  # a slow outlet: the crawl takes several seconds
    (tmp_path / "feeds.yaml").write_text(yaml.safe_dump({
        "defaults": {"per_host_delay_s": 0.05, "per_host_concurrency": 1, "retries": 0, "extract_workers": 1,
                     "allow_private": [site.allow]},
        "outlets": [{"name": "Lento", "feeds": [{"url": site.url("/feed.xml"), "section": "news"}]}]}))
    (tmp_path / "s.yaml").write_text(yaml.safe_dump({"schedules": [{"id": "all", "job": "crawl", "every": "1h"}]}))
    db = tmp_path / "m.db"

    first = _start(tmp_path, "--now")
    if not _wait_for(lambda: _count(db, "SELECT count(*) FROM captures") >= 3, 60):
        first.kill()
        pytest.fail(f"crawl did not start; monitor run said:\n{first.communicate(timeout=10)[1][-3000:]}")
    first.send_signal(signal.SIGTERM)
    out, err = first.communicate(timeout=60)
    assert first.returncode == 0, err
    assert '"event": "scheduler_stopped"' in err
    stored = _count(db, "SELECT count(*) FROM articles")
    assert 3 <= stored < n
    # nothing half-written: every capture has its article and its entry marked done
    assert _count(db, "SELECT count(*) FROM captures") == stored
    assert _count(db, "SELECT count(*) FROM entries WHERE status = 'stored'") == stored
    assert _count(db, "SELECT count(*) FROM entries WHERE status = 'pending'") == n - stored
    assert _count(db, "SELECT count(*) FROM runs WHERE status = 'stopped' AND schedule_id = 'all'") == 1

    second = _start(tmp_path)  # no --now: the interrupted run resumes by itself
    assert _wait_for(lambda: _count(db, "SELECT count(*) FROM runs WHERE status = 'ok'") >= 1, 90), "no resumed run"
    second.send_signal(signal.SIGTERM)
    out, err = second.communicate(timeout=60)
    assert second.returncode == 0, err
    assert "schedule all: kept, resumed" in err
    assert _count(db, "SELECT count(*) FROM articles") == n
    assert _count(db, "SELECT count(*) FROM captures") == n
    assert _count(db, "SELECT count(DISTINCT url) FROM captures") == n
    assert _count(db, "SELECT count(*) FROM classifications") == n
    for i in range(n):
        assert site.hits[f"/n/{i}.html"] == 1, f"page {i} fetched twice"
    # the job survived both restarts in the job store, with its next run in the future
    jobs = sqlite3.connect(tmp_path / "m.db.schedule.sqlite").execute("SELECT id, next_run_time FROM apscheduler_jobs").fetchall()
    assert [j[0] for j in jobs] == ["all"] and jobs[0][1] > time.time() + 3000


def test_cron_weekdays_count_like_cron() -> None:
    """APScheduler 3 counts weekday 0 as Monday; a crontab line means Sunday. We follow cron."""
    from datetime import datetime, timezone

    from monitor.schedules import cron_trigger

    start = datetime(2026, 11, 22, 12, 0, tzinfo=timezone.utc)  # a Sunday
    fire = lambda expr: cron_trigger(expr).get_next_fire_time(None, start)  # noqa: E731
    assert fire("0 9 * * 1").strftime("%a %H:%M") == "Mon 09:00"
    assert fire("0 13 * * 0").strftime("%a") == "Sun" and fire("0 13 * * 7").strftime("%a") == "Sun"
    assert fire("0 9 * * 1-5").strftime("%a") == "Mon"
    assert fire("30 3 * * *").strftime("%a %H:%M") == "Mon 03:30"
    assert fire("0 9 * * sat").strftime("%a") == "Sat"
