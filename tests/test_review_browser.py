"""A real browser (Debian chromium driven by Playwright) at the review desk: log in, decide, stay safe.

Needs /usr/bin/chromium (`.ci/run` installs it) and the playwright package (test extra). Skipped
when either is missing, unless MONITOR_REQUIRE_BROWSER=1 (CI), where that is a failure.
"""

from __future__ import annotations

import os
import shutil
import socket
import threading
import time
from pathlib import Path

import pytest

from monitor import store
from monitor.serve import build_datasette
from tests.test_review_desk import desk_db

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def _browser_missing() -> str | None:
    if not shutil.which(CHROMIUM):
        return f"{CHROMIUM} is not installed (apt-get install chromium)"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "playwright is not installed (pip install -e '.[test]')"
    return None


@pytest.fixture
def browser_page(artifacts: Path):  # type: ignore[no-untyped-def]
    missing = _browser_missing()
    if missing:
        if os.environ.get("MONITOR_REQUIRE_BROWSER") == "1":
            pytest.fail(missing)
        pytest.skip(missing)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        page = browser.new_page(viewport={"width": 1200, "height": 900})
        yield page
        browser.close()


@pytest.fixture
def live_desk(make_server, tmp_path):  # type: ignore[no-untyped-def]
    """The desk served by uvicorn on a loopback port (a real HTTP server, as in production)."""
    import uvicorn

    path = desk_db(make_server, tmp_path)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    server = uvicorn.Server(uvicorn.Config(build_datasette(path).app(), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    yield path, f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=10)


def test_reviewer_logs_in_confirms_one_rejects_another_and_nothing_executes(live_desk, browser_page, artifacts) -> None:
    path, base = live_desk
    page = browser_page
    dialogs: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))

    page.goto(f"{base}/-/monitor/queue")
    assert "/-/monitor/login" in page.url               # anonymous: the login page, nothing else
    page.fill("input[name=username]", "rita")
    page.fill("input[name=password]", "contraseña-de-rita")
    page.click("#login-button")
    page.wait_for_url("**/-/monitor/queue")
    assert page.locator("h1").first.inner_text().startswith("Cola de revisión")
    stories = page.locator("li.story")
    assert stories.count() >= 3
    assert page.locator("li.story mark").count() >= 1    # passages highlighted in the text

    first = stories.nth(0).get_attribute("data-article")
    stories.nth(0).locator("button.confirm").click()
    page.wait_for_url("**done=confirm**")
    second = page.locator("li.story").nth(0).get_attribute("data-article")
    assert second != first
    # the second decision with the keyboard: j focuses the first story, r rejects it
    page.keyboard.press("j")
    page.keyboard.press("r")
    page.wait_for_url("**done=reject**")
    page.screenshot(path=str(artifacts / "review-desk-queue.png"), full_page=True)

    rows = list(store.connect(path).query("SELECT article_id, reviewer, decision FROM reviews ORDER BY id"))
    assert rows == [{"article_id": first, "reviewer": "rita", "decision": "confirm"},
                    {"article_id": second, "reviewer": "rita", "decision": "reject"}]

    # XSS: an article whose title and text carry <script>, onerror and javascript: links, and
    # whose raw capture runs scripts, renders inert (the capture frame too)
    evil = store.connect(path).execute("SELECT id FROM articles WHERE title LIKE '%<script>%'").fetchone()[0]
    page.goto(f"{base}/-/monitor/article/{evil}")
    page.wait_for_load_state("networkidle")
    assert "<script>window.__pwned = 1</script>" in page.locator("h1").inner_text()   # shown as text
    page.wait_for_timeout(500)
    assert page.evaluate("window.__pwned") is None
    frame = page.frame_locator("iframe.capture")
    assert frame.locator("article").count() == 1                                      # the capture did render
    assert page.evaluate("window.__pwned") is None
    page.goto(f"{base}/-/monitor/queue?order=uncertain")
    page.wait_for_timeout(300)
    assert page.evaluate("window.__pwned") is None
    assert dialogs == []
    page.screenshot(path=str(artifacts / "review-desk-article-xss.png"), full_page=True)


def test_weekly_chart_has_a_y_axis_titles_and_a_legend_that_does_not_overlap(live_desk, browser_page, artifacts) -> None:
    path, base = live_desk
    db = store.connect(path)
    with db.conn:  # date the flags in recent weeks so the weekly chart has bars
        db.execute("UPDATE articles SET published = strftime('%Y-%m-%dT%H:%M:%SZ', 'now', '-' || (rowid % 5) * 7 || ' days')")
    page = browser_page
    page.goto(f"{base}/-/monitor/login")
    page.fill("input[name=username]", "rita")
    page.fill("input[name=password]", "contraseña-de-rita")
    page.click("#login-button")
    page.goto(f"{base}/-/monitor/charts")
    chart = page.locator("svg.chart").first
    texts = chart.locator("text")
    labels = [texts.nth(i).text_content() for i in range(texts.count())]
    assert "Artículos señalados" in labels and any(t.startswith("Semana") for t in labels)  # both axis titles
    ticks = [t for t in labels if t.isdigit()]
    assert len(ticks) >= 2 and ticks[0] == "0"                                            # a y axis, not one number
    boxes = []
    for i in range(texts.count()):
        if texts.nth(i).text_content() in ("Descrédito de organismos de control", "Amenaza / incitación") or \
                texts.nth(i).evaluate("e => e.previousElementSibling && e.previousElementSibling.tagName === 'rect' "
                                      "&& e.previousElementSibling.getAttribute('width') === '10'"):
            boxes.append(texts.nth(i).bounding_box())
    assert len(boxes) >= 8
    for i, a in enumerate(boxes):  # no two legend labels overlap
        for b in boxes[i + 1:]:
            apart = a["x"] + a["width"] <= b["x"] or b["x"] + b["width"] <= a["x"] or \
                a["y"] + a["height"] <= b["y"] or b["y"] + b["height"] <= a["y"]
            assert apart, (a, b)
    page.screenshot(path=str(artifacts / "review-desk-charts.png"), full_page=True)
