"""Benchmark: crawl throughput (fetch, extract, store) on a loopback news network vs a sequential baseline loop.

A synthetic news network is served from this process: ``--hosts`` outlets, each its own
ThreadingHTTPServer on 127.0.0.1 with its own port (host = netloc, so each is a separate host for
per-host politeness), each serving ``--feeds-per-host`` RSS feeds of ``--items`` items. Every
request is answered after ``--latency-ms`` of sleep. Article pages are real Spanish news pages
(../shared/data/extraction/trafilatura_es, 40-160 KB) used as templates, each article made unique
by its own headline and lead paragraph; without that data set, ~60 KB generated pages.

- baseline: the obvious sequential loop with the bare libraries: per feed httpx GET + feedparser,
  per entry httpx GET + ``trafilatura.extract(html)`` (defaults) + INSERT url/html/text into a
  plain sqlite3 table, commit per article. No politeness delay (it is sequential anyway).
- ours: ``monitor.pipeline.crawl_once`` with a feeds.yaml for the network (per_host_delay_s
  ``--delay``, concurrency ``--concurrency``), into a fresh database, no classifier.

Both run in the same process, one after the other, against the same servers. Politeness is
checked from the servers' own request log: the smallest gap between two request starts on one host.

Usage: python benchmarks/crawl_throughput.py [--quick] [--no-doc] [--hosts 20] [--feeds-per-host 10]
       [--items 20] [--latency-ms 50] [--delay 0.1] [--concurrency 16]
"""

from __future__ import annotations

import argparse
import gzip
import html as html_lib
import json
import os
import platform
import random
import re
import sqlite3
import sys
import tempfile
import threading
import time
import unicodedata
from dataclasses import dataclass, field
from email.utils import format_datetime
from datetime import datetime, timedelta, timezone
from functools import lru_cache
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import feedparser
import httpx
import trafilatura
import yaml

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.doc import write_section  # noqa: E402
from monitor import store  # noqa: E402
from monitor.config import load_config  # noqa: E402
from monitor.errors import ExtractError  # noqa: E402
from monitor.extract import extract_article  # noqa: E402
from monitor.pipeline import crawl_once  # noqa: E402

DATA = ROOT.parent / "shared" / "data" / "extraction" / "trafilatura_es"
DOC = ROOT / "docs" / "benchmarks.md"
HEADING = "## Crawl throughput"
MIN_TEMPLATE, MAX_TEMPLATE = 40_000, 160_000
PLACEHOLDER = "__ARTICLE_URL__"
_SELF_URL_TAGS = re.compile(
    r"<(?:link\b[^>]*\brel=[\"']?canonical|meta\b[^>]*\b(?:property|name)=[\"']?(?:og|twitter):url)[^>]*>", re.I)
_URL_ATTR = re.compile(r"""(\b(?:href|content)\s*=\s*)(["']?)[^"'\s>]*\2""", re.I)
SECTIONS = ("news", "opinion")

# Vocabulary for headlines, lead paragraphs and (without the real pages) whole articles.
WORDS = """
el la los las de del que y en un una por para con sin sobre entre hasta desde según durante contra
gobierno presidente congreso senado diputados alcaldía municipio estado fiscalía tribunal juez jueza
comisión secretaría ministerio policía guardia ejército defensores defensora periodista periodistas
organización colectivo comunidad vecinos familias víctimas madres buscadoras derechos humanos
investigación denuncia informe reforma ley iniciativa presupuesto elección campaña votación consulta
agua tierra territorio mina proyecto obra carretera tren presa bosque río costa frontera migrantes
seguridad violencia desaparición homicidio amenaza protesta marcha bloqueo acuerdo diálogo mesa
anunció informó señaló afirmó aseguró explicó denunció rechazó aprobó presentó pidió exigió advirtió
nuevo nueva nacional regional local federal público pública social económica política judicial
ayer hoy semana mes año martes miércoles jueves viernes sábado domingo mañana tarde noche
millones pesos recursos apoyo programa servicio salud escuela universidad trabajo empresa mercado
""".split()
NAMES = ["Oaxaca", "Guerrero", "Chiapas", "Sonora", "Veracruz", "Michoacán", "Jalisco", "Puebla",
         "Chihuahua", "Yucatán", "Tabasco", "Zacatecas", "Morelos", "Hidalgo", "Sinaloa", "Durango"]


# --------------------------------------------------------------------------- page templates

@dataclass(frozen=True)
class Template:
    """A real page and where a unique lead paragraph can be inserted into its main text."""

    name: str
    html: str          # with PLACEHOLDER where the page names its own URL (canonical link, og:url)
    insert_at: int


def _sentence(rng: random.Random, n: int) -> str:
    words = [rng.choice(WORDS) for _ in range(n)]
    if rng.random() < 0.5:
        words.insert(rng.randrange(len(words)), rng.choice(NAMES))
    text = " ".join(words)
    return text[0].upper() + text[1:] + "."


def _paragraph(rng: random.Random, words: int) -> str:
    out, count = [], 0
    while count < words:
        n = rng.randint(10, 24)
        out.append(_sentence(rng, n))
        count += n
    return " ".join(out)


def _own_url_placeholders(page: str) -> str:
    """Point the page's canonical link and og/twitter:url at PLACEHOLDER (the real site's URL would
    make every article built from one template "the same article" to a crawler that deduplicates)."""
    return _SELF_URL_TAGS.sub(lambda m: _URL_ATTR.sub(lambda a: a.group(1) + '"' + PLACEHOLDER + '"', m.group(0)), page)


def _insertion_point(page: str, gold: dict[str, Any]) -> int:
    """Index just before the ``<p`` that opens the article's text, or -1."""
    body = max(page.lower().find("<body"), 0)
    for snippet in gold.get("expected_snippets", []):
        pos = page.find(snippet[:40].strip(), body)
        if pos < 0:
            pos = page.find(html_lib.escape(snippet[:40].strip(), quote=False), body)
        if pos > 0:
            start = page.rfind("<p", body, pos)
            if start > 0 and page[start + 2:start + 3] in (">", " "):
                return start
    for m in re.finditer(r"<p[ >][^<]{150,}", page[body:]):
        return body + m.start()
    return -1


@lru_cache(maxsize=1)
def templates() -> tuple[Template, ...]:
    """Real pages of 40-160 KB where a paragraph inserted at ``insert_at`` is extracted (empty without the data)."""
    gold_file = DATA / "gold.json"
    if not gold_file.is_file():
        return ()
    gold = json.loads(gold_file.read_text())
    out = []
    marker = "Zqxwv marcador de prueba para verificar la extracción del párrafo insertado en la página."
    for key in sorted(gold):
        path = DATA / key
        if not path.is_file():
            continue
        raw = gzip.decompress(path.read_bytes())
        if not MIN_TEMPLATE <= len(raw) <= MAX_TEMPLATE:
            continue
        try:
            page = raw.decode("utf-8")
        except UnicodeDecodeError:
            continue
        page = _own_url_placeholders(page)
        at = _insertion_point(page, gold[key])
        if at < 0:
            continue
        url = "http://127.0.0.1:9/probe/page.html"
        probe = (page[:at] + f"<p>{marker}</p>" + page[at:]).replace(PLACEHOLDER, url).encode("utf-8")
        if "Zqxwv" not in (trafilatura.extract(probe) or ""):  # also warms trafilatura up on this page
            continue
        try:
            article = extract_article(probe, url)
        except ExtractError:
            continue
        if "Zqxwv" in article.text and article.canonical_url in ("", url):
            out.append(Template(key.rsplit("/", 1)[-1].removesuffix(".html.gz"), page, at))
    return tuple(out)


def _generated_page(rng: random.Random, title: str, lead: str) -> str:
    """~60 KB page: navigation, sidebars, scripts and ~600 words of article text."""
    nav = "".join(f'<li><a href="/seccion/{w}-{i}">{w.capitalize()}</a></li>' for i, w in enumerate(rng.sample(WORDS, 40)))
    side = "".join(f'<li><a href="/nota/{i}">{_sentence(rng, 8)}</a></li>' for i in range(40))
    paras = "".join(f"<p>{_paragraph(rng, 60)}</p>\n" for _ in range(10))
    style = "<style>" + "".join(f".c{i}{{margin:{i}px;padding:{i % 7}px;color:#{i * 4111 % 0xFFFFFF:06x}}}" for i in range(700)) + "</style>"
    script = "<script>var cfg=" + json.dumps({f"k{i}": _sentence(rng, 4) for i in range(200)}, ensure_ascii=False) + ";</script>"
    foot = "".join(f"<p class='legal'>{_sentence(rng, 20)}</p>" for _ in range(8))
    return (f'<!DOCTYPE html><html lang="es"><head><meta charset="utf-8"><title>{title}</title>{style}{script}</head>'
            f'<body><header><nav><ul>{nav}</ul></nav></header><main><article><h1>{title}</h1>'
            f'<p class="byline">Por Redacción</p><p>{lead}</p>\n{paras}</article>'
            f'<aside><h2>Lo más leído</h2><ul>{side}</ul></aside></main><footer>{foot}</footer></body></html>')


# --------------------------------------------------------------------------- the network

@dataclass(frozen=True)
class Item:
    """One article of a feed, fully determined by (seed, host, feed, item)."""

    host: int
    feed: int
    index: int
    title: str
    lead: str
    published: datetime
    path: str


class Network:
    """``hosts`` loopback news servers, each with ``feeds_per_host`` RSS feeds of ``items`` articles.

    Use as a context manager. ``log`` holds ``(received, started, netloc, path)`` per request (monotonic times).
    """

    def __init__(self, hosts: int = 20, feeds_per_host: int = 10, items: int = 20, latency_s: float = 0.05,
                 seed: int = 20241122):
        self.n_hosts, self.feeds_per_host, self.items = hosts, feeds_per_host, items
        self.latency_s, self.seed = latency_s, seed
        self.templates = templates()
        self.lock = threading.Lock()
        self.log: list[tuple[float, float, str, str]] = []   # (received, started, netloc, path)
        self.server_cpu_s = 0.0
        self.servers: list[_HostServer] = []
        self.threads: list[threading.Thread] = []

    # -- lifecycle
    def start(self) -> "Network":
        for h in range(self.n_hosts):
            server = _HostServer(self, h)
            thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True,
                                      name=f"news-host-{h}")
            thread.start()
            self.servers.append(server)
            self.threads.append(thread)
        return self

    def stop(self) -> None:
        for server in self.servers:
            server.shutdown()
            server.server_close()
        for thread in self.threads:
            thread.join(timeout=5)
        self.servers, self.threads = [], []

    def __enter__(self) -> "Network":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- what it serves
    def base(self, host: int) -> str:
        return f"http://127.0.0.1:{self.servers[host].server_address[1]}"

    def feed_path(self, feed: int) -> str:
        return f"/rss/{SECTIONS[feed % 2]}-{feed}.xml"

    def feed_urls(self) -> list[str]:
        """Every feed URL, host by host."""
        return [self.base(h) + self.feed_path(f) for h in range(self.n_hosts) for f in range(self.feeds_per_host)]

    def item(self, host: int, feed: int, index: int) -> Item:
        rng = random.Random(f"{self.seed}:{host}:{feed}:{index}")
        title = _sentence(rng, rng.randint(7, 12)).rstrip(".") + f" ({host}-{feed}-{index})"
        lead = _paragraph(rng, 60)
        published = datetime(2024, 5, 1, tzinfo=timezone.utc) + timedelta(minutes=rng.randrange(60 * 24 * 28))
        ascii_title = unicodedata.normalize("NFKD", title.lower()).encode("ascii", "ignore").decode()
        slug = "-".join(re.findall(r"[a-z0-9]+", ascii_title)[:6])
        path = f"/{SECTIONS[feed % 2]}/{published:%Y/%m/%d}/{slug}-{host}-{feed}-{index}.html"
        return Item(host, feed, index, title, lead, published, path)

    def feed_xml(self, host: int, feed: int) -> bytes:
        base = self.base(host)
        items = []
        for i in range(self.items):
            it = self.item(host, feed, i)
            url = base + it.path
            items.append(
                f"<item><title>{html_lib.escape(it.title)}</title><link>{url}</link>"
                f'<guid isPermaLink="true">{url}</guid><pubDate>{format_datetime(it.published)}</pubDate>'
                f"<description>{html_lib.escape(it.lead[:200])}</description></item>")
        return (f'<?xml version="1.0" encoding="UTF-8"?>\n<rss version="2.0"><channel>'
                f"<title>Diario {host} - {SECTIONS[feed % 2]} {feed}</title><link>{base}/</link>"
                f"<description>Noticias del diario {host}</description><language>es-MX</language>"
                + "".join(items) + "</channel></rss>\n").encode("utf-8")

    def page(self, it: Item) -> bytes:
        """The article page: a real template with this article's headline, lead paragraph and URL."""
        title, lead = html_lib.escape(it.title), html_lib.escape(it.lead)
        if not self.templates:
            return _generated_page(random.Random(f"{self.seed}:page:{it.path}"), title, lead).encode("utf-8")
        t = self.templates[(it.host * 7919 + it.feed * 104729 + it.index) % len(self.templates)]
        url = (self.base(it.host) if it.host < len(self.servers) else "http://127.0.0.1") + it.path
        page = (t.html[:t.insert_at] + f"<p>{title}. {lead}</p>" + t.html[t.insert_at:]).replace(PLACEHOLDER, url)
        page = re.sub(r"(<title[^>]*>).*?(</title>)", lambda m: m.group(1) + title + m.group(2), page, count=1,
                      flags=re.S | re.I)
        return page.encode("utf-8")

    def route(self, host: int, path: str) -> tuple[int, str, bytes]:
        m = re.fullmatch(r"/rss/(?:news|opinion)-(\d+)\.xml", path)
        if m and int(m.group(1)) < self.feeds_per_host:
            return 200, "application/rss+xml; charset=utf-8", self.feed_xml(host, int(m.group(1)))
        m = re.fullmatch(r"/(?:news|opinion)/\d{4}/\d\d/\d\d/[\w-]*-(\d+)-(\d+)-(\d+)\.html", path)
        if m and int(m.group(1)) == host and int(m.group(2)) < self.feeds_per_host and int(m.group(3)) < self.items:
            it = self.item(host, int(m.group(2)), int(m.group(3)))
            if it.path == path:
                return 200, "text/html; charset=utf-8", self.page(it)
        return 404, "text/html; charset=utf-8", b"<html><body><h1>404</h1></body></html>"

    # -- what was asked
    def reset_log(self) -> None:
        with self.lock:
            self.log.clear()
            self.server_cpu_s = 0.0

    def min_gap(self, by: str = "received") -> tuple[float, str]:
        """Smallest interval between two requests to the same host, and that host.

        ``by="received"``: request lines as the server read them; ``by="started"``: the same, except
        that a connection's first request starts when the connection was accepted.
        """
        starts: dict[str, list[float]] = {}
        with self.lock:
            for received, started, netloc, _path in self.log:
                starts.setdefault(netloc, []).append(received if by == "received" else started)
        best, where = float("inf"), ""
        for netloc, ts in starts.items():
            ts.sort()
            for a, b in zip(ts, ts[1:]):
                if b - a < best:
                    best, where = b - a, netloc
        return best, where

    def max_in_window(self, window_s: float) -> int:
        """Most requests (request lines as read) one host received within any ``window_s`` seconds."""
        starts: dict[str, list[float]] = {}
        with self.lock:
            for received, _started, netloc, _path in self.log:
                starts.setdefault(netloc, []).append(received)
        best = 0
        for ts in starts.values():
            ts.sort()
            lo = 0
            for hi, t in enumerate(ts):
                while lo < hi and t - ts[lo] >= window_s:
                    lo += 1
                best = max(best, hi - lo + 1)
        return best

    def feeds_yaml(self, delay_s: float, concurrency: int) -> str:
        outlets = [{
            "name": f"Diario {h}", "id": f"diario-{h}", "homepage": self.base(h) + "/", "scope": "national",
            "feeds": [{"url": self.base(h) + self.feed_path(f), "section": SECTIONS[f % 2]}
                      for f in range(self.feeds_per_host)],
        } for h in range(self.n_hosts)]
        doc = {"version": 1,
               "defaults": {"language": "es", "country": "MX", "per_host_delay_s": delay_s, "concurrency": concurrency,
                            "max_entries_per_feed": max(20, self.items), "retries": 0,
                            # loopback is refused unless allowed: exactly this network's servers
                            "allow_private": [server.netloc for server in self.servers]},
               "outlets": outlets}
        return "# Synthetic loopback news network (benchmarks/crawl_throughput.py)\n" + yaml.safe_dump(
            doc, sort_keys=False, allow_unicode=True)


class _HostServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, network: Network, host: int):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.network, self.host = network, host
        self.netloc = f"127.0.0.1:{self.server_address[1]}"
        self.accepted: dict[Any, float] = {}   # client address -> when its connection was accepted

    def process_request(self, request: Any, client_address: Any) -> None:
        self.accepted[client_address] = time.monotonic()  # serve_forever's thread, right after accept()
        super().process_request(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    server: _HostServer
    protocol_version = "HTTP/1.1"  # keep-alive: every response carries Content-Length

    def log_message(self, *args: object) -> None:
        return None

    def setup(self) -> None:
        super().setup()
        self.first_request = True

    def do_GET(self) -> None:  # noqa: N802
        net = self.server.network
        received = time.monotonic()
        cpu = time.thread_time()
        # the first request of a connection starts when the client connects (accept time)
        started = self.server.accepted.pop(self.client_address, received) if self.first_request else received
        self.first_request = False
        with net.lock:
            net.log.append((received, started, self.server.netloc, self.path))
        time.sleep(net.latency_s)
        status, ctype, body = net.route(self.server.host, unquote(self.path.split("?", 1)[0]))
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        try:
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
        spent = time.thread_time() - cpu
        with net.lock:
            net.server_cpu_s += spent


# --------------------------------------------------------------------------- the two crawlers

@dataclass
class Result:
    name: str
    articles: int = 0
    distinct_texts: int = 0
    requests: int = 0
    wall_s: float = 0.0
    cpu_s: float = 0.0          # this process's CPU (all threads: crawler and loopback servers)
    server_cpu_s: float = 0.0   # of which the loopback servers' request handlers
    child_cpu_s: float = 0.0    # CPU of child processes (ours: the extraction workers)
    min_gap_s: float = float("inf")      # smallest interval between two request lines received, same host
    min_gap_host: str = ""
    min_gap_conn_s: float = float("inf")  # the same, a connection's first request starting at accept()
    max_per_window: int = 0     # most requests one host received in any window of 10 x delay
    split: dict[str, float] = field(default_factory=dict)

    @property
    def rate(self) -> float:
        return self.articles / self.wall_s if self.wall_s else 0.0


def children_cpu_s() -> float:
    """CPU seconds (user + system) used so far by this process's live children (Linux /proc; 0 elsewhere)."""
    tick = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    total = 0.0
    for children in Path("/proc/self/task").glob("*/children"):
        try:
            pids = children.read_text().split()
        except OSError:
            continue
        for pid in pids:
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            except (OSError, IndexError):
                continue
            total += (int(fields[11]) + int(fields[12])) / tick   # utime, stime
    return total


def run_baseline(net: Network, workdir: Path, progress: bool = False) -> Result:
    """The obvious sequential loop: httpx + feedparser + trafilatura.extract + sqlite3, commit per article."""
    conn = sqlite3.connect(workdir / "baseline.db")
    conn.execute("CREATE TABLE articles (url TEXT PRIMARY KEY, html TEXT, text TEXT)")
    conn.commit()
    split = {"fetch (incl. latency)": 0.0, "feed parse": 0.0, "extract": 0.0, "store": 0.0}
    net.reset_log()
    cpu0, start = time.process_time(), time.perf_counter()
    done = 0
    with httpx.Client(timeout=30, trust_env=False) as client:
        for feed_url in net.feed_urls():
            t = time.perf_counter()
            response = client.get(feed_url)
            split["fetch (incl. latency)"] += time.perf_counter() - t
            t = time.perf_counter()
            parsed = feedparser.parse(response.content)
            split["feed parse"] += time.perf_counter() - t
            for entry in parsed.entries:
                t = time.perf_counter()
                page = client.get(entry.link)
                split["fetch (incl. latency)"] += time.perf_counter() - t
                if page.status_code != 200:
                    continue
                t = time.perf_counter()
                text = trafilatura.extract(page.text)
                split["extract"] += time.perf_counter() - t
                t = time.perf_counter()
                conn.execute("INSERT OR IGNORE INTO articles (url, html, text) VALUES (?, ?, ?)",
                             (entry.link, page.text, text))
                conn.commit()
                split["store"] += time.perf_counter() - t
                done += 1
                if progress and done % 500 == 0:
                    print(f"  baseline: {done} articles, {time.perf_counter() - start:.0f} s", file=sys.stderr, flush=True)
    wall = time.perf_counter() - start
    result = Result("baseline", wall_s=wall, cpu_s=time.process_time() - cpu0, split=split)
    result.articles = conn.execute("SELECT count(*) FROM articles WHERE text IS NOT NULL AND text != ''").fetchone()[0]
    result.distinct_texts = conn.execute("SELECT count(DISTINCT text) FROM articles WHERE text != ''").fetchone()[0]
    conn.close()
    _finish(net, result, window_s=1.0)
    return result


def run_ours(net: Network, workdir: Path, delay_s: float, concurrency: int, progress: bool = False,
             name: str = "ours") -> Result:
    """``crawl_once`` with a feeds.yaml for the network, fresh database, no classifier."""
    workdir = workdir / name
    workdir.mkdir(parents=True, exist_ok=True)
    config_path = workdir / "feeds.yaml"
    config_path.write_text(net.feeds_yaml(delay_s, concurrency), encoding="utf-8")
    config = load_config(config_path)
    db = store.connect(workdir / "monitor.db")

    def report(stage: str, done: int, total: int) -> None:
        if progress and (done % 500 == 0 or done == total):
            print(f"  {name}: {stage} {done}/{total}, {time.perf_counter() - start:.0f} s", file=sys.stderr, flush=True)

    net.reset_log()
    child0, cpu0, start = children_cpu_s(), time.process_time(), time.perf_counter()
    summary = crawl_once(db, config, progress=report)
    wall = time.perf_counter() - start
    result = Result(name, wall_s=wall, cpu_s=time.process_time() - cpu0, child_cpu_s=max(0.0, children_cpu_s() - child0))
    result.articles = db.execute("SELECT count(*) FROM articles").fetchone()[0]
    result.distinct_texts = db.execute("SELECT count(DISTINCT text_sha256) FROM articles").fetchone()[0]
    result.split = {"run": summary.line()}
    db.close()
    _finish(net, result, window_s=10 * delay_s)
    return result


def _finish(net: Network, result: Result, window_s: float) -> None:
    with net.lock:
        result.requests = len(net.log)
        result.server_cpu_s = net.server_cpu_s
    result.min_gap_s, result.min_gap_host = net.min_gap("received")
    result.min_gap_conn_s, _ = net.min_gap("started")
    result.max_per_window = net.max_in_window(window_s)


def warm_up(net: Network, workdir: Path, delay_s: float, concurrency: int) -> float:
    """Pay one-time costs before timing either side; returns the seconds ours' warm-up crawl took.

    Baseline side: imports, trafilatura on every template (dateparser's locale tables, regex caches).
    Ours: the same in this process, plus a crawl of a separate small network with no latency or delay,
    which starts the extraction worker processes (kept for later crawls) and warms them up the same way.
    """
    for t in range(max(1, len(net.templates))):
        body = net.page(net.item(0, 0, t))
        trafilatura.extract(body)
        extract_article(body, "http://127.0.0.1/warm-up.html")
    feedparser.parse(net.feed_xml(0, 0))
    items = max(10, 4 * len(net.templates))
    with Network(hosts=2, feeds_per_host=1, items=items, latency_s=0.0, seed=net.seed + 1) as warm:
        return run_ours(warm, workdir, 0.0, concurrency, name="warm-up").wall_s


def cpu_per_article(net: Network, n: int = 40) -> dict[str, float]:
    """Single-thread milliseconds per article of each CPU step, on ``n`` network pages."""
    pages = [net.page(net.item(h % net.n_hosts, h % net.feeds_per_host, h % net.items)) for h in range(n)]
    steps = {
        "`trafilatura.extract()` defaults (baseline)": lambda b: trafilatura.extract(b),
        "`extract_article()` (ours: `bare_extraction` + `page_metadata`)": lambda b: extract_article(b, "http://127.0.0.1/a.html"),
        "gzip of the capture (ours)": store.compress,
    }
    out = {}
    for name, fn in steps.items():
        t = time.perf_counter()
        for b in pages:
            fn(b)
        out[name] = (time.perf_counter() - t) / len(pages) * 1000
    return out


# --------------------------------------------------------------------------- report

def page_sizes(net: Network, n: int = 60) -> tuple[int, int, int]:
    sizes = sorted(len(net.page(net.item(i % net.n_hosts, i % net.feeds_per_host, i % net.items))) for i in range(n))
    return sizes[0], sizes[len(sizes) // 2], sizes[-1]


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms" if seconds != float("inf") else "-"


def section(args: argparse.Namespace, net: Network, base: Result, ours: Result, cpu: dict[str, float],
            sizes: tuple[int, int, int], load: tuple[float, float, float], warm_s: float, settings: str) -> str:
    ratio = ours.rate / base.rate if base.rate else 0.0
    source = (f"{len(net.templates)} real Spanish news pages of {MIN_TEMPLATE // 1000}-{MAX_TEMPLATE // 1000} KB "
              "(../shared/data/extraction/trafilatura_es) as templates, each article with its own headline, lead "
              "paragraph and canonical URL" if net.templates else
              "generated ~60 KB pages (navigation, sidebars, scripts, ~600 words)")
    n_feeds = args.hosts * args.feeds_per_host
    rows = [
        f"| baseline: sequential httpx + feedparser + `trafilatura.extract` + sqlite3 | {base.requests} | "
        f"{base.wall_s:.1f} s | {base.articles} ({base.distinct_texts} distinct) | {base.rate:.1f} | 1.00× | "
        f"{_ms(base.min_gap_s)} (no delay) |",
        f"| ours: `crawl_once` ({settings}) | {ours.requests} | {ours.wall_s:.1f} s | {ours.articles} "
        f"({ours.distinct_texts} distinct) | {ours.rate:.1f} | **{ratio:.2f}×** | {_ms(ours.min_gap_s)} |",
    ]
    split = ", ".join(f"{k} {v:.1f} s ({v / base.wall_s:.0%})" for k, v in base.split.items())
    cpu_rows = "\n".join(f"| {k} | {v:.1f} |" for k, v in cpu.items())
    window = 10 * args.delay
    n = max(ours.articles, 1)
    per_article = (ours.cpu_s + ours.child_cpu_s) / n
    ceiling = (os.cpu_count() or 1) / per_article if per_article else 0.0
    return (
        "## Crawl throughput (`benchmarks/crawl_throughput.py`)\n\n"
        f"{time.strftime('%Y-%m-%d')}, {os.cpu_count()} CPUs ({platform.machine()}), Python {platform.python_version()}, "
        f"load average {load[0]:.2f} at start. A loopback news network served by the benchmark process: {args.hosts} "
        f"hosts (one ThreadingHTTPServer and port each) × {args.feeds_per_host} RSS feeds × {args.items} items = "
        f"{n_feeds} feeds, {n_feeds * args.items} articles; every request answered after {args.latency_ms:g} ms; "
        f"HTTP/1.1 keep-alive. Pages: {source}; sizes min/median/max {sizes[0] // 1000}/{sizes[1] // 1000}/"
        f"{sizes[2] // 1000} KB. Articles/s = articles stored / wall time, end to end (feeds, fetch, extract, "
        "store; no classification). Same process, same servers, baseline first; both warmed up beforehand "
        f"(ours: a {warm_s:.1f} s crawl of a separate small network starts its extraction processes).\n\n"
        "| crawler | requests | wall | articles stored | art/s | ratio | min gap, same host |\n"
        "|---|---|---|---|---|---|---|\n" + "\n".join(rows) + "\n\n"
        f"- Baseline time split: {split}. It needs no politeness delay: one request in flight at a time.\n"
        f"- Politeness (ours), from the servers' own request log: smallest interval between two requests to one host "
        f"{_ms(ours.min_gap_s)} (request lines as read; {_ms(ours.min_gap_conn_s)} counting a connection's first "
        f"request from its accept()); at most {ours.max_per_window} requests to one host in any {window:g} s window "
        f"(the delay allows {int(round(window / args.delay))}, plus one at the window's edge). Requests include each "
        "host's robots.txt.\n"
        f"- CPU (ours): {ours.cpu_s:.1f} s in the benchmark process ({ours.server_cpu_s:.1f} s of it in the "
        f"loopback servers) and {ours.child_cpu_s:.1f} s in extraction worker processes, in {ours.wall_s:.1f} s "
        f"wall: {(ours.cpu_s + ours.child_cpu_s) / ours.wall_s:.2f} cores busy on average, "
        f"{per_article * 1000:.0f} ms of CPU per article ({(ours.cpu_s - ours.server_cpu_s) / n * 1000:.0f} ms "
        f"crawler process, {ours.child_cpu_s / n * 1000:.0f} ms extraction workers), so {os.cpu_count()} cores "
        f"cap ours near {ceiling:.0f} art/s here whatever the concurrency; the baseline spends "
        f"{1000 / base.rate if base.rate else 0:.0f} ms wall per article, {args.latency_ms:g} ms of it waiting on "
        "the server. Single-thread CPU per article on the same pages:\n\n"
        "| step | ms per article |\n|---|---|\n" + cpu_rows + "\n"
    )


def _settings(net: Network, delay: float, concurrency: int, workdir: Path) -> str:
    path = workdir / "settings-feeds.yaml"
    path.write_text(net.feeds_yaml(delay, concurrency), encoding="utf-8")
    fetch = load_config(path).fetch
    parts = [f"concurrency {fetch.concurrency}", f"per_host_delay_s {fetch.per_host_delay_s:g}"]
    for key in ("per_host_concurrency", "extract_workers", "respect_robots"):
        if hasattr(fetch, key):
            parts.append(f"{key} {getattr(fetch, key)}")
    return ", ".join(parts)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hosts", type=int, default=20)
    parser.add_argument("--feeds-per-host", type=int, default=10)
    parser.add_argument("--items", type=int, default=20, help="items per feed")
    parser.add_argument("--latency-ms", type=float, default=50.0, help="server latency per request")
    parser.add_argument("--delay", type=float, default=0.1, help="ours: per_host_delay_s")
    parser.add_argument("--concurrency", type=int, default=16, help="ours: fetch concurrency")
    parser.add_argument("--quick", action="store_true", help="4 hosts × 2 feeds × 10 items, for smoke runs")
    parser.add_argument("--no-doc", action="store_true", help="print only; do not write docs/benchmarks.md")
    parser.add_argument("--out", default=str(DOC), help="the Markdown file to update (default docs/benchmarks.md)")
    args = parser.parse_args(argv)
    if args.quick:
        args.hosts, args.feeds_per_host, args.items = 4, 2, 10
    load = os.getloadavg()
    print(f"network: {args.hosts} hosts × {args.feeds_per_host} feeds × {args.items} items", file=sys.stderr, flush=True)
    with Network(args.hosts, args.feeds_per_host, args.items, args.latency_ms / 1000) as net, \
            tempfile.TemporaryDirectory(prefix="crawl-bench-") as tmp:
        workdir = Path(tmp)
        print("warm-up ...", file=sys.stderr, flush=True)
        warm_s = warm_up(net, workdir, args.delay, args.concurrency)
        sizes = page_sizes(net)
        settings = _settings(net, args.delay, args.concurrency, workdir)
        print("baseline ...", file=sys.stderr, flush=True)
        base = run_baseline(net, workdir, progress=True)
        print(f"  {base.articles} articles in {base.wall_s:.1f} s", file=sys.stderr, flush=True)
        print("ours ...", file=sys.stderr, flush=True)
        ours = run_ours(net, workdir, args.delay, args.concurrency, progress=True)
        print(f"  {ours.split['run']}", file=sys.stderr, flush=True)
        cpu = cpu_per_article(net, 12 if args.quick else 40)
        text = section(args, net, base, ours, cpu, sizes, load, warm_s, settings)
    print(text)
    if base.articles != ours.articles:
        print(f"WARNING: article counts differ: baseline {base.articles}, ours {ours.articles}", file=sys.stderr)
    if ours.min_gap_s < args.delay:
        print(f"NOTE: politeness: {ours.min_gap_host} received two requests {ours.min_gap_s * 1000:.1f} ms apart "
              f"(per_host_delay_s {args.delay})", file=sys.stderr)
    if not args.no_doc:
        write_section(Path(args.out), HEADING, text)
        print(f"wrote {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
