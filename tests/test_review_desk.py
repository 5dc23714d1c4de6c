"""The review desk in Datasette: accounts, permissions, CSRF, decisions, escaping, charts, i18n."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from monitor import store
from monitor.cli import cli
from monitor.classifier.registry import load_classifier
from monitor.pipeline import crawl_once
from monitor.review.throttle import LoginThrottle
from monitor.serve import build_datasette
from tests.pages import article_html, rss

ROOT = Path(__file__).resolve().parents[1]
SMEAR = ("Los supuestos defensores del Centro Prodh son agentes extranjeros al servicio de intereses oscuros "
         "que reciben millones del extranjero para frenar el desarrollo del país, dijo el columnista.")
EVIL = "<script>window.__pwned = 1</script><img src=x onerror=\"window.__pwned = 2\"> <a href=\"javascript:alert(1)\">clic</a>"


def desk_db(make_server, tmp_path: Path) -> Path:
    """A database with flagged articles (one carrying script payloads), accounts for each role."""
    site = make_server()
    paragraphs = {
        "a": [SMEAR, "Otro párrafo sobre la política local y el presupuesto del municipio para el próximo año."],
        "b": ["El gobernador acusó a las madres buscadoras de ser un montaje pagado por la oposición para "
              "desestabilizar, y dijo que sus denuncias son mentiras sin sustento alguno.",
              "La nota continúa con datos del presupuesto estatal y la obra pública del sexenio anterior."],
        "x": [f"{EVIL} Las ONG de derechos humanos son agentes extranjeros al servicio de intereses oscuros, "
              "traidores a la patria financiados desde fuera para frenar el desarrollo.",
              "Segundo párrafo con información general de la región y su economía agrícola."],
    }
    items = []
    for key, paras in paragraphs.items():
        title = f"Nota {key} {EVIL if key == 'x' else ''}"
        page = article_html(title, paras)
        if key == "x":  # live markup in the raw capture too: the archived copy must stay inert
            page = page.replace("</body>", '<script>window.parent.__pwned = 3</script>'
                                '<img src="x" onerror="window.parent.__pwned = 4"></body>')
        site.add(f"/n/{key}.html", page)
        items.append((title, site.url(f"/n/{key}.html")))
    feed = site.add("/feed.xml", rss(items), content_type="application/rss+xml")
    from tests.test_crawling import config_for

    path = tmp_path / "desk.db"
    db = store.connect(path)
    summary = crawl_once(db, config_for([{"url": feed}]), load_classifier(ROOT / "classifiers" / "keyword-baseline"))
    assert summary.flagged >= 2, summary.line()
    runner = CliRunner()
    for name, role in (("rita", "reviewer"), ("ana", "analyst"), ("ada", "admin"), ("rafa", "reviewer")):
        result = runner.invoke(cli, ["--db", str(path), "user", "add", name, "--role", role, "--password-stdin"],
                               input=f"contraseña-de-{name}\n")
        assert result.exit_code == 0, result.output
    return path


@pytest.fixture
def desk(make_server, tmp_path):  # type: ignore[no-untyped-def]
    path = desk_db(make_server, tmp_path)
    return path, build_datasette(path)


def run(coro):  # type: ignore[no-untyped-def]
    return asyncio.get_event_loop().run_until_complete(coro) if False else asyncio.run(coro)


async def login(ds, name: str) -> dict[str, str]:  # type: ignore[no-untyped-def]
    """Log in through the form (with its CSRF token); returns the cookies of the session."""
    page = await ds.client.get("/-/monitor/login")
    token = re.search(r'name="csrftoken" value="([^"]+)"', page.text).group(1)
    cookies = dict(page.cookies)
    response = await ds.client.post("/-/monitor/login", data={"username": name, "password": f"contraseña-de-{name}",
                                                              "csrftoken": token, "next": "/-/monitor/queue"},
                                    cookies=cookies)
    assert response.status_code == 302, response.text
    cookies.update(dict(response.cookies))
    assert "monitor_session" in cookies
    return cookies


def flagged_ids(path: Path) -> list[str]:
    return [r[0] for r in store.connect(path).execute(
        "SELECT article_id FROM classifications WHERE stigmatising = 1 ORDER BY score DESC")]


def test_anonymous_sees_only_the_login_page(desk) -> None:
    path, ds = desk

    async def go() -> None:
        for url in ("/", "/desk", "/desk/articles", "/desk/reviews.json", "/desk?sql=select+1", "/desk/triage",
                    "/-/monitor/queue", "/-/monitor/charts", f"/-/monitor/article/{flagged_ids(path)[0]}",
                    "/-/monitor/capture/1"):
            r = await ds.client.get(url)
            assert r.status_code in (302, 403), (url, r.status_code)
            if r.status_code == 302:
                assert r.headers["location"].startswith("/-/monitor/login"), url
        r = await ds.client.post("/-/monitor/review", json={"article_id": flagged_ids(path)[0], "decision": "confirm"})
        assert r.status_code == 403
        login_page = await ds.client.get("/-/monitor/login")
        assert login_page.status_code == 200 and "Iniciar sesión" in login_page.text

    run(go())
    assert store.connect(path).execute("SELECT count(*) FROM reviews").fetchone()[0] == 0


def test_wrong_password_and_removed_user(desk) -> None:
    path, ds = desk

    async def go() -> None:
        page = await ds.client.get("/-/monitor/login")
        token = re.search(r'name="csrftoken" value="([^"]+)"', page.text).group(1)
        r = await ds.client.post("/-/monitor/login", data={"username": "rita", "password": "nope-nope", "csrftoken": token},
                                 cookies=dict(page.cookies))
        assert r.status_code == 401 and "incorrectos" in r.text
        cookies = await login(ds, "rita")
        assert (await ds.client.get("/-/monitor/queue", cookies=cookies)).status_code == 200
        assert CliRunner().invoke(cli, ["--db", str(path), "user", "remove", "rita"]).exit_code == 0
        # the session dies with the account
        assert (await ds.client.get("/-/monitor/queue", cookies=cookies)).status_code == 302

    run(go())


def test_password_guessing_is_throttled(desk) -> None:
    """Five wrong passwords for one name: the next tries get 429 (even the right password); others log in."""
    path, ds = desk

    async def attempt(name: str, password: str):  # type: ignore[no-untyped-def]
        page = await ds.client.get("/-/monitor/login")
        token = re.search(r'name="csrftoken" value="([^"]+)"', page.text).group(1)
        return await ds.client.post("/-/monitor/login", data={"username": name, "password": password,
                                                              "csrftoken": token}, cookies=dict(page.cookies))

    async def go() -> None:
        for i in range(5):
            assert (await attempt("rita", f"adivina-{i}")).status_code == 401
        refused = await attempt("rita", "contraseña-de-rita")
        assert refused.status_code == 429 and "Demasiados intentos" in refused.text
        assert 60 <= int(refused.headers["retry-after"]) <= 15 * 60 + 1
        assert "monitor_session" not in refused.cookies
        await login(ds, "ana")   # another name from the same address is not locked out

    run(go())


def test_login_throttle_window_and_success() -> None:
    now = [1000.0]
    t = LoginThrottle(max_per_user=3, max_per_client=5, window_s=60, clock=lambda: now[0])
    for _ in range(2):
        t.failed("Rita", "10.0.0.9")
    assert t.retry_after("rita", "10.0.0.9") == 0
    t.succeeded("rita")                      # a good login forgets the name's failures
    for _ in range(3):
        t.failed("rita", "10.0.0.1")
        now[0] += 10
    assert t.retry_after("RITA", "10.0.0.2") == 31   # the oldest failure leaves the window in 30 s
    assert t.retry_after("ana", "10.0.0.1") == 0     # 5 failures from the address allowed
    t.failed("ana", "10.0.0.1")
    t.failed("ana", "10.0.0.1")
    assert t.retry_after("bob", "10.0.0.1") > 0      # the address is now over its limit
    now[0] += 61
    assert t.retry_after("rita", "10.0.0.1") == 0 and t.retry_after("bob", "10.0.0.1") == 0


def test_reviewer_decides_with_csrf_and_reviews_are_appended(desk) -> None:
    path, ds = desk
    first, second = flagged_ids(path)[:2]

    async def go() -> None:
        cookies = await login(ds, "rita")
        queue = await ds.client.get("/-/monitor/queue", cookies=cookies)
        assert queue.status_code == 200 and "Cola de revisión" in queue.text
        assert queue.text.count("<mark") >= 3  # every flagged story shows its passage highlighted in the text
        token = re.search(r'name="csrftoken" value="([^"]+)"', queue.text).group(1)
        # without the CSRF token a browser-form POST is refused
        r = await ds.client.post("/-/monitor/review", data={"article_id": first, "decision": "confirm"}, cookies=cookies)
        assert r.status_code == 403
        r = await ds.client.post("/-/monitor/review", data={"article_id": first, "decision": "confirm", "csrftoken": token,
                                                            "next": "/-/monitor/queue"}, cookies=cookies)
        assert r.status_code == 302 and "done=confirm" in r.headers["location"]
        r = await ds.client.post("/-/monitor/review", data={"article_id": second, "decision": "relabel", "csrftoken": token,
                                                            "categories": "criminalisation,false_claims", "voice": "attributed",
                                                            "note": "el gobernador habla"}, cookies=cookies)
        assert r.status_code == 302
        # a spoofed reviewer field is ignored: the actor is who is logged in
        r = await ds.client.post("/-/monitor/review", data={"article_id": first, "decision": "reject", "csrftoken": token,
                                                            "reviewer": "ada"}, cookies=cookies)
        assert r.status_code == 302
        after = await ds.client.get("/-/monitor/queue", cookies=cookies)
        assert first not in after.text and second not in after.text

    run(go())
    rows = list(store.connect(path).query("SELECT article_id, reviewer, decision, categories, voice, model_version "
                                          "FROM reviews ORDER BY id"))
    assert [(r["article_id"], r["reviewer"], r["decision"]) for r in rows] == [
        (first, "rita", "confirm"), (second, "rita", "relabel"), (first, "rita", "reject")]
    assert json.loads(rows[1]["categories"]) == ["criminalisation", "false_claims"] and rows[1]["voice"] == "attributed"
    assert all(r["model_version"] for r in rows)
    latest = store.connect(path).execute("SELECT decision FROM latest_reviews WHERE article_id = ?", [first]).fetchone()
    assert latest[0] == "reject"


def test_analyst_reads_and_runs_sql_but_cannot_write(desk) -> None:
    path, ds = desk

    async def go() -> None:
        cookies = await login(ds, "ana")
        assert (await ds.client.get("/-/monitor/queue", cookies=cookies)).status_code == 200
        sql = await ds.client.get("/desk.json?sql=select+count(*)+as+n+from+articles&_shape=array", cookies=cookies)
        assert sql.status_code == 200 and sql.json()[0]["n"] >= 3
        queue = await ds.client.get("/-/monitor/queue", cookies=cookies)
        assert 'action="/-/monitor/review"' not in queue.text
        token = re.search(r'name="csrftoken" value="([^"]+)"', queue.text).group(1)
        r = await ds.client.post("/-/monitor/review", data={"article_id": flagged_ids(path)[0], "decision": "confirm",
                                                            "csrftoken": token}, cookies=cookies)
        assert r.status_code == 403
        reviewer = await login(ds, "rafa")
        sql = await ds.client.get("/desk.json?sql=select+1", cookies=reviewer)
        assert sql.status_code == 403  # reviewers read and decide; SQL is for analysts
        # accounts are never served: not a table of the monitor database
        tables = await ds.client.get("/desk.json", cookies=cookies)
        assert "users" not in json.dumps(tables.json().get("tables", []))

    run(go())
    assert store.connect(path).execute("SELECT count(*) FROM reviews").fetchone()[0] == 0


def test_json_api_with_token(desk) -> None:
    path, ds = desk
    token = CliRunner().invoke(cli, ["--db", str(path), "user", "token", "rafa"]).output.strip()
    analyst_token = CliRunner().invoke(cli, ["--db", str(path), "user", "token", "ana"]).output.strip()
    article = flagged_ids(path)[0]

    async def go() -> None:
        auth = {"Authorization": f"Bearer {token}"}
        r = await ds.client.post("/-/monitor/review", json={"article_id": article, "decision": "reject",
                                                            "voice": "counter", "note": "cita para refutar"}, headers=auth)
        assert r.status_code == 200 and r.json()["ok"] and r.json()["reviewer"] == "rafa"
        bad = await ds.client.post("/-/monitor/review", json={"article_id": article, "decision": "maybe",
                                                              "categories": ["nope"]}, headers=auth)
        assert bad.status_code == 400 and len(bad.json()["errors"]) == 2
        missing = await ds.client.post("/-/monitor/review", json={"article_id": "0" * 64, "decision": "confirm"}, headers=auth)
        assert missing.status_code == 404
        denied = await ds.client.post("/-/monitor/review", json={"article_id": article, "decision": "confirm"},
                                      headers={"Authorization": f"Bearer {analyst_token}"})
        assert denied.status_code == 403
        forged = await ds.client.post("/-/monitor/review", json={"article_id": article, "decision": "confirm"},
                                      headers={"Authorization": "Bearer smt_forged"})
        assert forged.status_code == 403
        queue = await ds.client.get("/-/monitor/queue?order=uncertain", headers={**auth, "Accept": "application/json"})
        assert queue.status_code == 200 and queue.json()["order"] == "uncertain"

    run(go())
    assert store.connect(path).execute("SELECT reviewer, decision, voice FROM reviews").fetchall() == [("rafa", "reject", "counter")]


def test_disagreement_is_visible_and_counted(desk) -> None:
    path, ds = desk
    article = flagged_ids(path)[0]
    db = store.connect(path)
    store.record_review(db, article, "rita", "confirm")
    store.record_review(db, article, "rafa", "reject")
    assert store.review_agreement(db) == {"double_reviewed": 1, "disagreements": 1}
    assert store.review_disagreements(db)[0]["article_id"] == article

    async def go() -> None:
        cookies = await login(ds, "ada")
        page = await ds.client.get(f"/-/monitor/article/{article}", cookies=cookies)
        assert page.status_code == 200 and "Desacuerdos" in page.text
        queue = await ds.client.get("/-/monitor/queue?order=uncertain", cookies=cookies)
        assert "1 Desacuerdos / 1 notas con dos o más revisores" in queue.text

    run(go())


def test_pages_escape_article_text_and_captures_are_inert(desk) -> None:
    path, ds = desk
    db = store.connect(path)
    evil_id = db.execute("SELECT id FROM articles WHERE title LIKE '%script%'").fetchone()[0]
    capture = db.execute("SELECT capture_id FROM articles WHERE id = ?", [evil_id]).fetchone()[0]

    async def go() -> None:
        cookies = await login(ds, "ada")
        for url in (f"/-/monitor/article/{evil_id}", "/-/monitor/queue"):
            page = await ds.client.get(url, cookies=cookies)
            assert page.status_code == 200
            assert "<script>window.__pwned" not in page.text and "onerror=\"window" not in page.text
            assert "&lt;script&gt;window.__pwned" in page.text
            assert 'href="javascript:' not in page.text
            assert "script-src 'self'" in page.headers["content-security-policy"]
        raw = await ds.client.get(f"/-/monitor/capture/{capture}", cookies=cookies)
        assert raw.status_code == 200 and raw.headers["content-security-policy"].startswith("sandbox;")
        assert "default-src 'none'" in raw.headers["content-security-policy"]
        assert raw.headers["x-capture-sha256"] == db.execute("SELECT sha256 FROM captures WHERE id = ?", [capture]).fetchone()[0]

    run(go())


def test_charts_and_english(desk) -> None:
    path, ds = desk

    async def go() -> None:
        cookies = await login(ds, "ana")
        page = await ds.client.get("/-/monitor/charts?lang=en", cookies=cookies)
        assert page.status_code == 200 and "Flagged articles per week and category" in page.text
        assert page.text.count("<svg") >= 3 and "cdn" not in page.text.lower()
        assert "monitor_lang=en" in page.headers.get("set-cookie", "")
        target = store.top_targets(store.connect(path))[0]["label"]
        timeline = await ds.client.get("/-/monitor/charts", params={"target": target}, cookies=cookies)
        assert timeline.text.count("<svg") == 1 and "<rect" in timeline.text
        css = await ds.client.get("/-/monitor/static/desk.css")
        assert css.status_code == 200 and "mark" in css.text

    run(go())


def test_public_mode_reads_tables_but_not_sql_or_desk(make_server, tmp_path) -> None:
    path = desk_db(make_server, tmp_path)
    ds = build_datasette(path, public=True)

    async def go() -> None:
        assert (await ds.client.get("/desk/articles.json")).status_code == 200
        assert (await ds.client.get("/desk.json?sql=select+1")).status_code in (302, 403)
        assert (await ds.client.get("/-/monitor/queue")).status_code == 302

    run(go())


def test_analyst_canned_queries_and_facets(desk) -> None:
    path, ds = desk

    async def go() -> None:
        cookies = await login(ds, "ana")
        for name in ("flags_by_week", "flags_by_outlet", "flags_by_columnist", "flags_by_category", "flags_by_target",
                     "flags_by_speaker_type", "flags_by_speaker", "triage"):
            r = await ds.client.get(f"/desk/{name}.json?_shape=array", cookies=cookies)
            assert r.status_code == 200, (name, r.text[:300])
        targets = (await ds.client.get("/desk/flags_by_target.json?_shape=array", cookies=cookies)).json()
        assert targets and all(t["flags"] >= 1 for t in targets)
        csv = await ds.client.get("/desk/flagged_articles.csv?_facet=voice", cookies=cookies)
        assert csv.status_code == 200 and csv.text.startswith("article_id,")
        search = await ds.client.get("/desk/articles.json?_search=buscadoras&_shape=array", cookies=cookies)
        assert search.status_code == 200 and len(search.json()) == 1

    run(go())


def test_flag_targets_follow_the_latest_verdict_and_review(desk) -> None:
    """The per-target index counts an article once, by its latest verdict, and drops it when rejected."""
    from dataclasses import replace

    from monitor.models import Classification

    path, _ds = desk
    db = store.connect(path)
    article = flagged_ids(path)[0]
    target = json.loads(db.execute("SELECT targets FROM classifications WHERE article_id = ?", [article]).fetchone()[0])[0]
    count = lambda: sum(r["n"] for r in store.target_timeline(db, target))  # noqa: E731
    before = count()
    store.record_review(db, article, "rita", "reject")
    assert count() == before - 1
    store.record_review(db, article, "rafa", "confirm")
    assert count() == before
    # a new model version that does not flag it removes it; one that flags it again brings it back
    text_sha = db.execute("SELECT text_sha256 FROM articles WHERE id = ?", [article]).fetchone()[0]
    base = Classification(model_id="stigma-v1", model_version="2.0", stigmatising=False, score=0.1, categories={},
                          voice="none", speaker="", speaker_is_official=False, targets=(), passages=(), n_passages=1)
    store.store_classification(db, article, text_sha, base)
    assert count() == before - 1
    store.store_classification(db, article, text_sha, replace(base, model_version="3.0", stigmatising=True, score=0.95,
                                                              targets=(target,)))
    assert count() == before
    assert db.execute("SELECT count(*) FROM flag_targets WHERE article_id = ?", [article]).fetchone()[0] == 1
