"""Campaign detection through the real pipeline: members, no unrelated item, paraphrases, incremental = rebuild."""

from __future__ import annotations

import json
import shutil
import sqlite3
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from monitor import campaigns, store
from monitor.alerts.config import AlertingSettings, CampaignSettings, load_alerting, parse_alerting
from monitor.classifier.registry import load_classifier
from monitor.cli import cli
from monitor.dedup import jaccard
from monitor.errors import ConfigError
from monitor.pipeline import crawl_once
from tests.campaign_site import CAMPAIGN, UNRELATED, dated_page, day, publish_scenario
from tests.httpserver import FixtureServer
from tests.pages import rss
from tests.test_crawling import config_for

ROOT = Path(__file__).resolve().parents[1]
KEYWORD = ROOT / "classifiers" / "keyword-baseline"


@pytest.fixture(scope="module")
def site() -> Iterator[FixtureServer]:
    server = FixtureServer()
    server.thread.start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def scenario(site: FixtureServer, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[dict]]:
    """The scenario crawled once through the pipeline with the keyword baseline (copied per test)."""
    feeds = publish_scenario(site)
    path = tmp_path_factory.mktemp("scenario") / "monitor.db"
    db = store.connect(path)
    summary = crawl_once(db, config_for([dict(f) for f in feeds]), load_classifier(KEYWORD), alerting=AlertingSettings())
    assert summary.flagged == len(CAMPAIGN) + len(UNRELATED), summary.line()
    db.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.close()
    return path, feeds


@pytest.fixture
def db_copy(scenario: tuple[Path, list[dict]], tmp_path: Path) -> Path:
    path = tmp_path / "monitor.db"
    shutil.copy(scenario[0], path)
    return path


def members_by_key(db, campaign_id: int) -> dict[str, dict]:  # type: ignore[no-untyped-def]
    """Members keyed by the scenario key in their URL (/outlet/section/KEY.html)."""
    return {m["url"].rsplit("/", 1)[1].removesuffix(".html"): m for m in store.campaign_member_rows(db, campaign_id)}


def test_campaign_detected_with_its_members_and_nothing_else(db_copy: Path) -> None:
    db = store.connect(db_copy)
    rows = store.list_campaigns(db, include_ended=True)
    assert len(rows) == 1, rows
    c = rows[0]
    assert (c["target"], c["category"], c["via"], c["status"]) == ("Centro Prodh", "disloyalty_foreign",
                                                                   "target_category", "active")
    members = members_by_key(db, c["id"])
    assert set(members) == {key for key, *_ in CAMPAIGN}  # every repetition, no unrelated item
    assert json.loads(c["outlets"]) == sorted(outlet for _k, outlet, *_ in CAMPAIGN)
    assert (c["n_outlets"], c["articles"], c["items"]) == (5, 5, 5)
    assert c["first_seen"] == f"{day(-3)}T12:00:00Z" and c["last_seen"] == f"{day(-1)}T12:00:00Z"
    assert json.loads(c["speakers"]) == [{"speaker": "senador Ramiro Gómez", "official": True, "items": 1}]
    assert c["officials"] == 1
    # burst: 5 articles in the window against one flag in the 28 days before: lam = (1 + 1) / 28 * 2
    assert c["baseline_per_window"] == pytest.approx(2 / 28 * 2, abs=1e-4) and c["peak_articles"] == 5
    assert c["burst_score"] > 5 and c["burst_z"] > 10
    # paraphrases, not only copies: c, d and e share few word shingles with a (b is the copy)
    h = campaigns.hasher(3)
    sig = {k: h.signature(campaigns.without_title(m["text"], m["title"])) for k, m in members.items()}
    assert jaccard(sig["a"], sig["b"]) >= 0.5
    assert all(jaccard(sig["a"], sig[k]) < 0.2 for k in ("c", "d", "e"))


def test_incremental_update_extends_the_campaign_and_equals_a_rebuild(db_copy: Path, site: FixtureServer,
                                                                      scenario: tuple[Path, list[dict]]) -> None:
    db = store.connect(db_copy)
    before = store.list_campaigns(db)[0]
    assert campaigns.update(db, CampaignSettings()).items == 0  # nothing new: nothing read
    # a sixth outlet repeats it the next day; an unrelated outlet attacks someone else
    site.add("/diario-ocho/news/f.html", dated_page("Nota f", [
        "Según el diputado Pedro Luna, el Centro Prodh es un nido de agentes extranjeros que atacan al ejército.",
        "Resto de la nota sin relación alguna con el tema, sobre el clima y la economía del estado."], day(0)))
    site.add("/diario-nueve/news/g.html", dated_page("Nota g", [
        "Los defensores de Tlachinollan son enemigos del progreso que frenan el desarrollo de la Montaña.",
        "Resto de la nota sin relación alguna con el tema, sobre el clima y la economía del estado."], day(0)))
    feeds = [*(dict(f) for f in scenario[1]),
             {"url": site.add("/diario-ocho/news/feed.xml", rss([("f", site.url("/diario-ocho/news/f.html"))]),
                              content_type="application/rss+xml"), "outlet": "diario-ocho"},
             {"url": site.add("/diario-nueve/news/feed.xml", rss([("g", site.url("/diario-nueve/news/g.html"))]),
                              content_type="application/rss+xml"), "outlet": "diario-nueve"}]
    summary = crawl_once(db, config_for(feeds), load_classifier(KEYWORD), alerting=AlertingSettings())
    assert summary.new_articles == 2 and summary.campaigns == 0
    after = store.list_campaigns(db)
    assert len(after) == 1 and after[0]["id"] == before["id"] and after[0]["n_outlets"] == 6
    assert "f" in members_by_key(db, before["id"]) and "g" not in members_by_key(db, before["id"])
    incremental = {(c["key"], c["n_outlets"], c["first_seen"], c["last_seen"], c["burst_score"])
                   for c in store.list_campaigns(db, include_ended=True)}
    members = {m["passage_id"] for m in store.campaign_member_rows(db, before["id"])}
    result = campaigns.rebuild(db, CampaignSettings())
    assert result.items == store.max_passage_id(db) == int(store.state_get(db, campaigns.WATERMARK))
    rebuilt = store.list_campaigns(db, include_ended=True)
    assert {(c["key"], c["n_outlets"], c["first_seen"], c["last_seen"], c["burst_score"]) for c in rebuilt} == incremental
    assert {m["passage_id"] for m in store.campaign_member_rows(db, rebuilt[0]["id"])} == members


def test_more_outlets_required_means_no_campaign(db_copy: Path) -> None:
    db = store.connect(db_copy)
    assert campaigns.rebuild(db, CampaignSettings(min_outlets=6)).created == []
    narrow = campaigns.rebuild(db, CampaignSettings(window_hours=24))  # a and e are 48 h apart: chained day by day
    assert len(narrow.created) == 1


def _concept_vector(text: str) -> bytes:
    """A stand-in for e5: passages about the same accusation get nearly the same unit vector."""
    v = np.zeros(32, dtype=np.float32)
    v[0 if "Tlachinollan" in text else 1 + len(text) % 31] = 1.0
    v += np.random.default_rng(len(text)).normal(0, 0.05, 32).astype(np.float32)
    return (v / np.linalg.norm(v)).astype("<f2").tobytes()


class EmbeddingKeywordClassifier:
    """The keyword baseline with passage embeddings attached, as the transformer classifier stores them."""

    def __init__(self) -> None:
        self.inner = load_classifier(KEYWORD)
        self.model_id, self.model_version, self.watchlist = "emb-test", "1", self.inner.watchlist

    def classify(self, texts: list[str]):  # type: ignore[no-untyped-def]
        return [replace(r, passages=tuple(replace(p, embedding=_concept_vector(p.text)) for p in r.passages))
                for r in self.inner.classify(texts)]


PARAPHRASES = [  # one accusation against Tlachinollan, worded differently, each in another category
    ("p1", "diario-uno", "Los abogados de Tlachinollan son agentes extranjeros que reciben órdenes de fuera."),
    ("p2", "diario-dos", "Tlachinollan montó una red de corrupción con dinero que llega de otros países."),
    ("p3", "diario-tres", "En la Montaña, Tlachinollan son agitadores profesionales pagados desde el exterior."),
    ("x", "diario-cuatro", "La CIDH miente otra vez: sus expertos a sueldo solo buscan manchar a México."),
]


@pytest.mark.parametrize("with_embeddings", [True, False], ids=["embeddings", "keyword-minhash-only"])
def test_paraphrases_grouped_by_passage_embeddings(make_server, tmp_path: Path, with_embeddings: bool) -> None:
    server = make_server()
    items = [(k, outlet, -1, "news", text) for k, outlet, text in PARAPHRASES]
    feeds = publish_scenario(server, items, counter=False)
    db = store.connect(tmp_path / "m.db")
    classifier = EmbeddingKeywordClassifier() if with_embeddings else load_classifier(KEYWORD)
    crawl_once(db, config_for(feeds), classifier, alerting=AlertingSettings())
    stored = db.execute("SELECT count(*), count(embedding) FROM passages").fetchone()
    assert stored == (4, 4 if with_embeddings else 0)
    if with_embeddings:
        assert len(db.execute("SELECT embedding FROM passages LIMIT 1").fetchone()[0]) == 32 * 2  # float16
    rows = store.list_campaigns(db, include_ended=True)
    if not with_embeddings:  # three categories, one outlet each, no shared shingles: MinHash alone finds nothing
        assert rows == []
        return
    assert len(rows) == 1 and rows[0]["via"] == "similar_text" and rows[0]["target"] == "Tlachinollan"
    members = members_by_key(db, rows[0]["id"])
    assert set(members) == {"p1", "p2", "p3"}
    assert {m["link"] for m in members.values()} == {"paraphrase"}
    assert all(m["similarity"] >= 0.9 for m in members.values())


def test_a_failing_detection_is_recorded_and_the_crawl_goes_on(make_server, tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("detector exploded")

    monkeypatch.setattr(campaigns, "update", broken)
    feeds = publish_scenario(make_server(), CAMPAIGN[:3], counter=False)
    db = store.connect(tmp_path / "m.db")
    summary = crawl_once(db, config_for(feeds), load_classifier(KEYWORD), alerting=AlertingSettings())
    assert summary.flagged == 3
    assert db.execute("SELECT status FROM runs").fetchone()[0] == "ok"
    stage, message = db.execute("SELECT stage, message FROM failures").fetchone()
    assert stage == "campaigns" and "detector exploded" in message
    assert store.state_get(db, campaigns.WATERMARK) == "0"  # the next run retries those flags
    monkeypatch.undo()
    assert len(campaigns.update(db, CampaignSettings()).created) == 1


def test_campaigns_cli_lists_shows_and_rebuilds(db_copy: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MONITOR_ALERTS", str(tmp_path / "none.yaml"))
    runner = CliRunner()
    listed = runner.invoke(cli, ["--db", str(db_copy), "campaigns"])
    assert listed.exit_code == 0, listed.output
    assert "Centro Prodh / disloyalty_foreign: 5 outlets, 5 articles" in listed.output
    assert "senador Ramiro Gómez (official)" in listed.output
    cid = store.list_campaigns(store.connect(db_copy))[0]["id"]
    shown = runner.invoke(cli, ["--db", str(db_copy), "campaigns", "--show", str(cid)])
    assert shown.exit_code == 0 and shown.output.count("[target]") == 5
    rebuilt = runner.invoke(cli, ["--db", str(db_copy), "campaigns", "--rebuild", "--json"])
    assert rebuilt.exit_code == 0, rebuilt.output
    assert "1 new campaign(s)" in rebuilt.stderr and json.loads(rebuilt.stdout.splitlines()[0])["n_outlets"] == 5


def test_poisson_burst_formula() -> None:
    assert campaigns.poisson_tail(0, 2.0) == 1.0
    assert campaigns.poisson_tail(1, 2.0) == pytest.approx(1 - np.exp(-2.0))
    assert campaigns.poisson_tail(3, 2.0) == pytest.approx(1 - np.exp(-2.0) * (1 + 2 + 2), rel=1e-9)
    tiny = campaigns.poisson_tail(60, 0.1)  # far in the tail: computed directly, not as 1 - (almost 1)
    assert 0 < tiny < 1e-100
    lam, z, score = campaigns.burst(5, 0, 28, 48)
    assert lam == pytest.approx(1 / 28 * 2, abs=1e-4) and score > 7 and z > 15
    assert campaigns.burst(2, 56, 28, 48)[2] < 1  # a target attacked every day: two in a window is no burst


def test_item_time_prefers_the_publication_time() -> None:
    assert campaigns.item_time("2026-03-02T09:00:00-06:00", "2026-03-05T00:00:00.1Z") == "2026-03-02T15:00:00Z"
    assert campaigns.item_time("2026-03-02", "2026-03-05T01:00:00.5Z") == "2026-03-02T12:00:00Z"
    assert campaigns.item_time("2026-03-05", "2026-03-05T01:00:00.5Z") == "2026-03-05T01:00:00Z"
    assert campaigns.item_time(None, "2026-03-05T01:00:00.5Z") == "2026-03-05T01:00:00Z"


def test_alerts_yaml_is_validated_with_every_problem(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HOOK_SECRET", raising=False)
    bad = {"campaigns": {"min_outlets": 1, "window_hours": 0, "copy_jaccard": 2, "speed": 3},
           "alerts": {"base_url": "ftp://x", "rules": [{"id": "a", "when": "sometimes"},
                                                       {"id": "b", "when": "score_above", "channels": ["nope"]},
                                                       {"id": "c", "when": "new_campaign", "section": "opinion"}],
                      "channels": [{"id": "hook", "type": "webhook", "url": "http://127.0.0.1:1/", "secret_env": "HOOK_SECRET"},
                                   {"id": "mail", "type": "email", "host": "smtp", "from": "no-address", "to": ["a@b.c"],
                                    "username_env": "U"}],
                      "digest": {"enabled": True, "at": "25:00", "timezone": "Mars/Olympus"}}}
    with pytest.raises(ConfigError) as e:
        parse_alerting(bad, "alerts.yaml")
    problems = e.value.problems
    for expected in ["campaigns.min_outlets: must be at least 2, got 1",
                     "campaigns.window_hours: must be more than 0 and at most 2160 (90 days), got 0",
                     "campaigns.copy_jaccard: must be in (0, 1], got 2",
                     "campaigns.speed: unknown key (allowed: baseline_days, category_min, copy_jaccard, max_span_days, "
                     "min_outlets, paraphrase_cosine, shingle_k, window_hours)",
                     "alerts.base_url: must be http(s), got 'ftp://x'",
                     "alerts.rules[0].when: must be one of new_campaign, official_statement, score_above, confirmed_item, "
                     "smear_added_by_edit, smear_removed, got 'sometimes'",
                     "alerts.rules[1].score: is required for when: score_above",
                     "alerts.rules[1].channels: unknown channel 'nope' (defined: hook, mail)",
                     "alerts.rules[2].section: is not used with when: new_campaign (only with score_above, official_statement)",
                     "alerts.channels[0].secret_env: environment variable HOOK_SECRET is not set (or set enabled: false)",
                     "alerts.channels[1]: not an e-mail address: 'no-address'",
                     "alerts.channels[1]: set both username_env and password_env, or neither",
                     "alerts.digest.at: must be HH:MM (24 h), got '25:00'",
                     "alerts.digest.timezone: unknown time zone 'Mars/Olympus' (e.g. America/Mexico_City)",
                     "alerts.digest.channels: list at least one channel when the digest is enabled"]:
        assert expected in problems, (expected, problems)
    assert load_alerting(tmp_path / "absent.yaml") == AlertingSettings()
    shipped = load_alerting(ROOT / "alerts.yaml")
    assert shipped.campaigns == CampaignSettings() and {r.when for r in shipped.rules} >= {"new_campaign", "score_above"}
    (tmp_path / "alerts.yaml").write_text("campaigns: {min_outlets: 1}\n")
    monkeypatch.setenv("MONITOR_ALERTS", str(tmp_path / "alerts.yaml"))
    result = CliRunner().invoke(cli, ["--db", str(tmp_path / "x.db"), "campaigns"])
    assert result.exit_code == 1 and "campaigns.min_outlets: must be at least 2, got 1" in result.output


def test_schema_sqlite_sees_the_campaign_tables(db_copy: Path) -> None:
    names = {r[0] for r in sqlite3.connect(db_copy).execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert {"campaigns", "campaign_members", "campaign_items", "campaign_keys", "alerts", "deliveries",
            "monitor_state"} <= names


@pytest.mark.slow
@pytest.mark.e5
def test_e5_passage_embeddings_put_paraphrases_together_and_unrelated_smears_apart() -> None:
    """The trained classifier's own pooled embeddings (what the pipeline stores) at the default threshold."""
    from monitor.errors import ModelError

    try:
        classifier = load_classifier("stigma-v2")
    except ModelError as e:
        pytest.skip(f"shipped stigma-v2 model not available: {e}")
    texts = [smear for *_, smear in CAMPAIGN + UNRELATED]
    vectors = np.stack([campaigns._vector(r["embedding"]) for r in classifier.score_texts(texts)])
    cos = vectors @ vectors.T
    threshold = CampaignSettings().paraphrase_cosine
    n = len(CAMPAIGN)
    keys = [k for k, *_ in CAMPAIGN]
    assert cos[keys.index("c"), keys.index("e")] >= threshold  # two paraphrases, hardly a shingle in common
    unrelated = [i for i, (k, *_rest) in enumerate(UNRELATED, start=n) if k != "old"]  # "old" is the same accusation
    assert max(cos[i, j] for i in range(n) for j in unrelated) < threshold


def test_a_sustained_attack_comes_as_episodes_of_at_most_max_span_days(tmp_path: Path) -> None:
    import random
    from datetime import datetime, timedelta, timezone

    from benchmarks.campaigns_speed import generate, insert_flags

    path = tmp_path / "m.db"
    outlets, texts, _rng, _nrng = generate(path, 0)
    db = store.connect(path)
    end = datetime.now(timezone.utc).replace(microsecond=0)
    # one outlet a day for 20 days, the same target and category: 3 outlets in every 48 h
    insert_flags(db.conn, random.Random(1), np.random.default_rng(1), 0, 20, end - timedelta(days=19), end, outlets,
                 texts, campaign=("Colectivo de prueba", "gendered", 20))
    campaigns.rebuild(db, CampaignSettings())
    episodes = sorted(store.list_campaigns(db, include_ended=True), key=lambda c: c["first_seen"])
    assert len(episodes) == 2 and {c["target"] for c in episodes} == {"Colectivo de prueba"}
    first, second = episodes
    span = campaigns.epoch(first["last_seen"]) - campaigns.epoch(first["first_seen"])
    assert span <= 14 * 86400 + 2 * 86400 and second["last_seen"] == end.strftime("%Y-%m-%dT%H:%M:%SZ")
    assert second["burst_score"] < first["burst_score"]  # the second's baseline holds the first episode


def test_reviewer_rejections_take_items_out_and_a_confirmation_puts_them_back(db_copy: Path) -> None:
    """A rejected article stops counting at the next update; too few outlets left dismisses the campaign."""
    db = store.connect(db_copy)
    settings = CampaignSettings()
    c = store.list_campaigns(db)[0]
    members = members_by_key(db, c["id"])
    store.record_review(db, members["a"]["article_id"], "rita", "reject")
    result = campaigns.update(db, settings)
    assert result.reviewed == [c["id"]] and "1 recomputed after reviews" in result.line()
    one_less = store.campaign_row(db, c["id"])
    assert (one_less["n_outlets"], one_less["articles"], one_less["status"]) == (4, 4, "active")
    assert "a" not in members_by_key(db, c["id"])
    assert campaigns.update(db, settings).reviewed == []      # each review is applied once
    for key in ("b", "c"):
        store.record_review(db, members[key]["article_id"], "rita", "reject")
    campaigns.update(db, settings)
    assert store.campaign_row(db, c["id"])["status"] == "dismissed"   # 2 outlets left, 3 needed
    assert store.list_campaigns(db) == []                               # off the active list
    for key in ("a", "b", "c"):
        store.record_review(db, members[key]["article_id"], "ada", "confirm")
    campaigns.update(db, settings)
    back = store.campaign_row(db, c["id"])
    assert (back["n_outlets"], back["articles"], back["status"]) == (5, 5, "active")
    # a rebuild agrees with the incremental result after reviews
    store.record_review(db, members["e"]["article_id"], "rita", "reject")
    campaigns.update(db, settings)
    incremental = store.campaign_row(db, c["id"])
    campaigns.rebuild(db, settings)
    rebuilt = store.list_campaigns(db, include_ended=True)
    assert [(r["n_outlets"], r["articles"], r["first_seen"]) for r in rebuilt] == [
        (incremental["n_outlets"], incremental["articles"], incremental["first_seen"])]
