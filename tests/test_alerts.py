"""Alerts: a local webhook receiver and a local SMTP server get each alert exactly once (across a restart),
a refusing webhook is retried with backoff then recorded as failed, and the Atom feed validates."""

from __future__ import annotations

import asyncio
import json
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from email import message_from_bytes
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import feedparser
import pytest
from click.testing import CliRunner

from monitor import store
from monitor.alerts import rules
from monitor.alerts.channels import SIGNATURE_HEADER, TIMESTAMP_HEADER, verify_signature
from monitor.alerts.config import AlertingSettings, Channel, DeliverySettings, DigestSettings, Rule
from monitor.alerts.deliver import deliver_pending, queue_digest
from monitor.classifier.registry import load_classifier
from monitor.cli import cli
from monitor.pipeline import crawl_once, deliver_alerts
from monitor.serve import build_datasette
from tests.campaign_site import CAMPAIGN, publish_scenario
from tests.test_campaigns import KEYWORD, scenario, site  # noqa: F401  (module fixtures reused)
from tests.test_crawling import config_for

SECRET = "s3cret-for-tests"


class Receiver(ThreadingHTTPServer):
    """A webhook endpoint on loopback: records every POST, answers ``status``."""

    daemon_threads = True

    def __init__(self, status: int = 200) -> None:
        super().__init__(("127.0.0.1", 0), _Hook)
        self.status = status
        self.posts: list[tuple[dict[str, str], bytes]] = []
        threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/hook"


class _Hook(BaseHTTPRequestHandler):
    server: Receiver

    def log_message(self, *args: object) -> None:
        return None

    def do_POST(self) -> None:  # noqa: N802
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        self.server.posts.append((dict(self.headers.items()), body))
        self.send_response(self.server.status)
        self.send_header("Content-Length", "0")
        self.end_headers()


class Mailbox:
    """aiosmtpd handler keeping every message received."""

    def __init__(self) -> None:
        self.messages: list[Any] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        self.messages.append(message_from_bytes(envelope.content))
        return "250 OK"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.shutdown()
    r.server_close()


def settings_for(hook_url: str, smtp_port: int | None, **delivery: float) -> AlertingSettings:
    """Default-like rules plus an opinion-score rule; a webhook and (with a port) an SMTP channel."""
    hook = Channel(id="hook", type="webhook", url=hook_url, secret_env="MONITOR_TEST_HOOK_SECRET", timeout_s=2)
    mail = Channel(id="mail", type="email", host="127.0.0.1", port=smtp_port or 25, tls="none",
                   sender="monitor@test.example", to=("equipo@test.example",), timeout_s=2)
    return AlertingSettings(
        rules=(Rule(id="new-campaign", when="new_campaign", min_burst=2.0),
               Rule(id="official-statement", when="official_statement"),
               Rule(id="watchlist-confirmed", when="confirmed_item", targets="watchlist"),
               Rule(id="hot-column", when="score_above", score=0.9, section="opinion")),
        channels=(hook, mail) if smtp_port else (hook,),
        delivery=DeliverySettings(**{"max_attempts": 3, "backoff_s": 0.0, **delivery}),
        base_url="http://desk.test")


def test_alerts_reach_webhook_and_smtp_exactly_once_across_a_restart(make_server, receiver: Receiver, tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    from aiosmtpd.controller import Controller

    monkeypatch.setenv("MONITOR_TEST_HOOK_SECRET", SECRET)
    port = free_port()
    settings = settings_for(receiver.url, port)
    feeds = publish_scenario(make_server())
    path = tmp_path / "monitor.db"
    db = store.connect(path)
    # first run: the mail server is down; the webhook gets everything
    summary = crawl_once(db, config_for([dict(f) for f in feeds]), load_classifier(KEYWORD), alerting=settings)
    assert summary.campaigns == 1 and summary.alerts == 3, summary.line()
    keys = sorted(json.loads(body)["id"] for _h, body in receiver.posts)
    assert [k.split(":")[0] for k in keys] == ["hot-column", "new-campaign", "official-statement"]
    for headers, body in receiver.posts:
        assert verify_signature(SECRET.encode(), headers[TIMESTAMP_HEADER], body, headers[SIGNATURE_HEADER])
        assert not verify_signature(b"wrong", headers[TIMESTAMP_HEADER], body, headers[SIGNATURE_HEADER])
    campaign_doc = next(json.loads(b) for _h, b in receiver.posts if json.loads(b)["kind"] == "new_campaign")
    assert campaign_doc["payload"]["target"] == "Centro Prodh" and len(campaign_doc["payload"]["members"]) == 5
    mail = {d["channel"]: d["status"] for d in store.delivery_rows(db) if d["channel"] == "mail"}
    assert mail == {"mail": "pending"}
    db.close()

    # restart: a new process (new connection), the mail server is back; the same pages are crawled again
    mailbox = Mailbox()
    controller = Controller(mailbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        db = store.connect(path)
        again = crawl_once(db, config_for([dict(f) for f in feeds]), load_classifier(KEYWORD), alerting=settings)
        assert again.new_articles == 0 and again.alerts == 0
        deliver_alerts(db, settings)  # and once more: nothing is due any more
        assert len(receiver.posts) == 3
        assert len(mailbox.messages) == 3
        subjects = sorted(m["Subject"] for m in mailbox.messages)
        assert any("Campaign against Centro Prodh" in s for s in subjects)
        assert len({m["Message-ID"] for m in mailbox.messages}) == 3
        assert {d["status"] for d in store.delivery_rows(db)} == {"sent"}
    finally:
        controller.stop()


def test_a_refusing_webhook_is_retried_with_backoff_then_failed(make_server, tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MONITOR_TEST_HOOK_SECRET", SECRET)
    refused = f"http://127.0.0.1:{free_port()}/hook"   # nothing listens: connection refused
    settings = settings_for(refused, None, backoff_s=60.0)
    db = store.connect(tmp_path / "monitor.db")
    feeds = publish_scenario(make_server(), CAMPAIGN[:3], counter=False)
    started = time.monotonic()
    summary = crawl_once(db, config_for(feeds), load_classifier(KEYWORD), alerting=settings)
    assert time.monotonic() - started < 10 and summary.alerts == 1  # a dead channel does not hold the crawl
    assert db.execute("SELECT status FROM runs").fetchone()[0] == "ok"
    hook = [d for d in store.delivery_rows(db) if d["channel"] == "hook"][0]
    assert (hook["status"], hook["attempts"]) == ("pending", 1) and "ConnectError" in hook["last_error"]

    # a receiver that answers 503: retried after 60 s, then 120 s, then given up
    answering = Receiver(status=503)
    try:
        settings = settings_for(answering.url, None, backoff_s=60.0)
        now = datetime.now(timezone.utc)
        assert deliver_pending(db, settings, now=now + timedelta(seconds=30)).retrying == 0  # not due yet
        first = deliver_pending(db, settings, now=now + timedelta(seconds=61))
        assert first.retrying == 1 and len(answering.posts) == 1
        hook = [d for d in store.delivery_rows(db) if d["channel"] == "hook"][0]
        assert hook["attempts"] == 2 and "HTTP 503" in hook["last_error"]
        assert hook["next_attempt_at"] > (now + timedelta(seconds=61 + 119)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        last = deliver_pending(db, settings, now=now + timedelta(seconds=61 + 121))
        assert last.failed == 1 and len(answering.posts) == 2
        assert deliver_pending(db, settings, now=now + timedelta(days=1)).failed == 0  # failed is final
        hook = [d for d in store.delivery_rows(db) if d["channel"] == "hook"][0]
        assert (hook["status"], hook["attempts"]) == ("failed", 3)
        stage, message = db.execute("SELECT stage, message FROM failures WHERE stage = 'alert'").fetchone()
        assert "gave up after 3 attempt(s)" in message and "HTTP 503" in message
    finally:
        answering.shutdown()
        answering.server_close()


@pytest.fixture
def alerted_db(scenario, tmp_path: Path) -> Path:  # type: ignore[no-untyped-def]  # noqa: F811
    path = tmp_path / "monitor.db"
    shutil.copy(scenario[0], path)
    return path


def test_atom_feed_validates_and_lists_the_alerts(alerted_db: Path) -> None:
    runner = CliRunner()
    assert runner.invoke(cli, ["--db", str(alerted_db), "user", "add", "lee", "--role", "analyst", "--password-stdin"],
                         input="contraseña-larga\n").exit_code == 0
    token = runner.invoke(cli, ["--db", str(alerted_db), "user", "token", "lee"]).output.strip()
    db = store.connect(alerted_db)
    alerts = store.list_alerts(db)
    assert {a["rule"] for a in alerts} == {"new-campaign", "official-statement"}

    async def fetch() -> list[Any]:
        ds = build_datasette(alerted_db)
        await ds.invoke_startup()
        anonymous = await ds.client.get("/-/monitor/alerts.atom")
        wrong = await ds.client.get("/-/monitor/alerts.atom?token=smt_nope")
        by_token = await ds.client.get(f"/-/monitor/alerts.atom?token={token}")
        by_bearer = await ds.client.get("/-/monitor/alerts.atom", headers={"Authorization": f"Bearer {token}"})
        page = await ds.client.get(f"/-/monitor/campaigns?token={token}")
        return [anonymous, wrong, by_token, by_bearer, page]

    anonymous, wrong, by_token, by_bearer, page = asyncio.run(fetch())
    assert anonymous.status_code == 401 and wrong.status_code == 401
    assert by_token.status_code == 200 and by_token.headers["content-type"].startswith("application/atom+xml")
    feed = feedparser.parse(by_token.content, response_headers={"content-type": by_token.headers["content-type"]})
    assert feed.bozo == 0, feed.get("bozo_exception")
    assert feed.version == "atom10" and len(feed.entries) == len(alerts)
    assert {e.title for e in feed.entries} == {a["title"] for a in alerts}
    assert all(e.id.startswith("urn:uuid:") and e.link.startswith("http://127.0.0.1:8001/") for e in feed.entries)
    assert "token" not in feed.feed.links[0].href  # the self link never carries the reader's token
    again = feedparser.parse(by_bearer.content)
    assert [e.id for e in again.entries] == [e.id for e in feed.entries]  # stable ids: readers show each once
    assert page.status_code == 200 and "<svg" in page.text and "Centro Prodh" in page.text


def test_confirmed_items_about_watchlisted_targets_alert(alerted_db: Path) -> None:
    db = store.connect(alerted_db)
    by_title = {r["title"]: r["id"] for r in db.query("SELECT id, title FROM articles")}
    store.record_review(db, by_title["Nota a de diario-uno"], "rita", "confirm")
    store.record_review(db, by_title["Nota madres de diario-uno"], "rita", "confirm")  # generic target only
    store.record_review(db, by_title["Nota corr de diario-seis"], "rita", "reject")
    created = rules.generate(db, AlertingSettings(), generic={"madres buscadoras", "activistas", "defensores"})
    titles = [a["title"] for a in store.list_alerts(db) if a["id"] in created]
    assert titles == ["Confirmed: Centro Prodh stigmatised by diario-uno"]
    assert rules.generate(db, AlertingSettings()) == []  # each decision is looked at once


def test_daily_digest_once_a_day_by_email(alerted_db: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from aiosmtpd.controller import Controller

    port = free_port()
    settings = AlertingSettings(channels=(Channel(id="mail", type="email", host="127.0.0.1", port=port, tls="none",
                                                  sender="m@test.example", to=("t@test.example",)),),
                                digest=DigestSettings(enabled=True, at="07:00", timezone="America/Mexico_City",
                                                      channels=("mail",)))
    db = store.connect(alerted_db)
    # yesterday, so every time below is in the past whatever the hour the test runs (deliveries are due at "now")
    morning = (datetime.now(timezone.utc) - timedelta(days=1)).replace(hour=12, minute=0)   # 06:00 in Mexico City: too early
    assert queue_digest(db, settings, now=morning) is None
    assert queue_digest(db, settings, now=morning + timedelta(hours=2)) is not None
    assert queue_digest(db, settings, now=morning + timedelta(hours=5)) is None  # once per local day
    mailbox = Mailbox()
    controller = Controller(mailbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        report = deliver_pending(db, settings)
    finally:
        controller.stop()
    assert report.sent == 1 and len(mailbox.messages) == 1
    msg = mailbox.messages[0]
    assert msg["Subject"].startswith("[monitor] Monitor digest") and msg.is_multipart()
    html = next(p for p in msg.walk() if p.get_content_type() == "text/html").get_payload(decode=True).decode()
    assert "Centro Prodh" in html and "<script" not in html
    monkeypatch.setenv("MONITOR_ALERTS", str(tmp_path / "none.yaml"))
    out = tmp_path / "digest.html"
    result = CliRunner().invoke(cli, ["--db", str(alerted_db), "alerts", "digest", "--out", str(out)])
    assert result.exit_code == 0 and "campaign(s)" in out.read_text()
    listed = CliRunner().invoke(cli, ["--db", str(alerted_db), "alerts", "list"])
    assert listed.exit_code == 0 and "new-campaign" in listed.output and "mail:sent" in listed.output


def test_scheduled_crawl_job_detects_and_alerts(make_server, receiver: Receiver, tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """`monitor run`'s crawl job reads alerts.yaml beside feeds.yaml: campaigns and signed alerts after the crawl."""
    import yaml

    from monitor.runner import run_job

    monkeypatch.setenv("MONITOR_TEST_HOOK_SECRET", SECRET)
    monkeypatch.delenv("MONITOR_ALERTS", raising=False)
    site = make_server()
    feeds = publish_scenario(site, CAMPAIGN[:4], counter=False)
    outlets: dict[str, list[dict]] = {}
    for f in feeds:
        outlets.setdefault(f["outlet"], []).append({"url": f["url"], "section": f["section"]})
    (tmp_path / "feeds.yaml").write_text(yaml.safe_dump({
        "defaults": {"per_host_delay_s": 0, "retries": 0, "extract_workers": 1, "failure_backoff_s": 0,
                     "allow_private": [site.allow]},
        "outlets": [{"name": name, "id": name, "feeds": fs} for name, fs in outlets.items()]}))
    (tmp_path / "schedules.yaml").write_text(yaml.safe_dump({"schedules": [{"id": "all", "job": "crawl", "every": "1h"}]}))
    (tmp_path / "alerts.yaml").write_text(yaml.safe_dump({
        "campaigns": {"min_outlets": 3},
        "alerts": {"rules": [{"id": "new-campaign", "when": "new_campaign"}],
                   "channels": [{"id": "hook", "type": "webhook", "url": receiver.url,
                                 "secret_env": "MONITOR_TEST_HOOK_SECRET"}]}}))
    db_path = tmp_path / "monitor.db"
    run_job("all", str(db_path), str(tmp_path / "feeds.yaml"), str(tmp_path / "schedules.yaml"), str(KEYWORD))
    db = store.connect(db_path)
    assert [c["n_outlets"] for c in store.list_campaigns(db, include_ended=True)] == [4]
    assert [json.loads(b)["kind"] for _h, b in receiver.posts] == ["new_campaign"]
    # an alerts.yaml edited into an invalid state: the next job still crawls, without campaigns
    (tmp_path / "alerts.yaml").write_text("campaigns: {min_outlets: 0}\n")
    run_job("all", str(db_path), str(tmp_path / "feeds.yaml"), str(tmp_path / "schedules.yaml"), str(KEYWORD))
    assert db.execute("SELECT count(*), min(status) FROM runs").fetchone() == (2, "ok")
