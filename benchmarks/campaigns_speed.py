"""Campaign detection cost: the incremental update after a crawl of 500 new articles, on 100,000 flagged passages.

Builds a synthetic monitor database through the project's schema (`monitor.store.connect`: same tables,
indexes and triggers): 100,000 flagged passages (one per article) over the past year from 60 outlets,
each naming one or two of 20 targets (Pareto: a few targets take most attacks) in one or two of the 8
categories, with passage texts of 30-60 words (a tenth of them copies of another outlet's passage), and
float16 384-dimension embeddings (as e5-small gives). Then:

1. `campaigns.rebuild` indexes all of them (the full recompute of `monitor campaigns --rebuild`);
2. a crawl adds 500 new articles of the last day (every one flagged: the worst case; 1-2 passages each,
   one six-outlet campaign among them) and the timed step is what `crawl_once` runs after
   classification: `campaigns.update` (only the new passages) + `alerts.rules.generate`.

Runs on 2 cores (CPU affinity). Usage: python benchmarks/campaigns_speed.py [--flags 100000] [--new 500] [--no-doc]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import statistics
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from benchmarks.doc import write_section  # noqa: E402
from monitor import campaigns, store  # noqa: E402
from monitor.alerts import rules  # noqa: E402
from monitor.alerts.config import AlertingSettings  # noqa: E402

WORDS = ("gobierno organización abogados defensores activistas dinero extranjero intereses país víctimas "
         "juicio ejército desarrollo proyecto comunidad denuncia tortura informe corrupción fundación recursos "
         "campaña política nación seguridad justicia presidente congreso mentira verdad pueblo tierra agua mina "
         "empresa inversión oposición prensa columna semana estado ciudad región familia madre hijos").split()
TARGETS = ["Centro Prodh", "Tlachinollan", "CNDH", "madres buscadoras", "periodistas", "ONG", "defensores",
           "Artículo 19", "Fundar", "Serapaz", "CMDPDH", "Centro Fray Bartolomé de Las Casas", "comunidades indígenas",
           "CIDH", "GIEI", "colectivos de víctimas", "activistas", "Amnistía Internacional", "Red TDT", "ONU-DH"]
GENERIC = {"madres buscadoras", "periodistas", "ONG", "defensores", "comunidades indígenas", "colectivos de víctimas",
           "activistas"}
CATEGORIES = ["criminalisation", "corruption_profiteering", "false_claims", "anti_development", "disloyalty_foreign",
              "gendered", "discrediting_oversight", "threat_incitement"]
DIM = 384
INJECTED = "Colectivo Buscadoras del Norte"   # an invented target with no history: its campaign must alert
ISO = "%Y-%m-%dT%H:%M:%SZ"


def _vector(rng: np.random.Generator) -> bytes:
    v = rng.normal(size=DIM).astype(np.float32)
    return (v / np.linalg.norm(v)).astype("<f2").tobytes()


def insert_flags(conn, rng: random.Random, nrng: np.random.Generator, start: int, n: int,  # type: ignore[no-untyped-def]
                 t_from: datetime, t_to: datetime, outlets: list[str], texts: list[str],
                 campaign: tuple[str, str, int] | None = None) -> None:
    """Insert ``n`` flagged articles (classification + 1-2 passages each) dated uniformly in [t_from, t_to]."""
    span = (t_to - t_from).total_seconds()
    arts, classes, passages = [], [], []
    for i in range(start, start + n):
        aid = hashlib.sha256(f"a{i}".encode()).hexdigest()
        at = t_from + timedelta(seconds=span * (i - start) / max(1, n - 1))
        outlet = outlets[min(int(rng.paretovariate(1.2)) - 1, len(outlets) - 1)]
        targets = sorted({TARGETS[min(int(rng.paretovariate(1.0)) - 1, len(TARGETS) - 1)] for _ in range(rng.randint(1, 2))})
        cats = rng.sample(CATEGORIES, rng.randint(1, 2))
        if campaign and i - start < campaign[2]:  # the campaign of this crawl: one target, one category, many outlets
            targets, cats, outlet = [campaign[0]], [campaign[1]], outlets[i - start]
        if texts and rng.random() < 0.1:
            text = rng.choice(texts) + " " + rng.choice(WORDS)    # a copy of another outlet's passage
        else:
            text = " ".join(rng.choice(WORDS) for _ in range(rng.randint(30, 60)))
            texts.append(text)
        iso = at.strftime(ISO)
        arts.append((aid, f"https://{outlet}.example/n/{i}", f"https://{outlet}.example/n/{i}", outlet, f"{outlet}/news",
                     "news", f"Nota {i}", iso, text, "t" + str(i), 1, iso, iso, "bench", aid))
        categories = {c: 0.9 for c in cats}
        classes.append((aid, "stigma-v1", "1.0+bench", iso, 1, 0.9, json.dumps(categories), cats[0], "authorial",
                        json.dumps(targets, ensure_ascii=False), 5, "t" + str(i)))
        for _ in range(rng.randint(1, 2) if campaign is not None else 1):
            passages.append((aid, text, json.dumps(categories), cats[0], json.dumps(targets, ensure_ascii=False),
                             _vector(nrng)))
    with conn:
        conn.executemany(
            "INSERT INTO articles (id, url, canonical_url, outlet_id, feed_id, section, title, published, text, "
            "text_sha256, capture_id, first_seen_at, extracted_at, extractor, story_id) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", arts)
        conn.executemany(
            "INSERT INTO classifications (article_id, model_id, model_version, classified_at, stigmatising, score, "
            "categories, top_category, voice, targets, n_passages, text_sha256) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            classes)
        conn.executemany(
            "INSERT INTO passages (classification_id, article_id, start, \"end\", text, score, categories, top_category, "
            "voice, speaker, speaker_is_official, targets, embedding) SELECT c.id, ?, 0, 80, ?, 0.9, ?, ?, 'authorial', "
            "'', 0, ?, ? FROM classifications c WHERE c.article_id = ?",
            [(p[0], p[1], p[2], p[3], p[4], p[5], p[0]) for p in passages])


def generate(path: Path, n_flags: int, seed: int = 11) -> tuple[list[str], list[str], random.Random, np.random.Generator]:
    rng, nrng = random.Random(seed), np.random.default_rng(seed)
    db = store.connect(path)
    conn = db.conn
    conn.execute("PRAGMA synchronous = OFF")
    outlets = [f"outlet-{i}" for i in range(60)]
    with conn:
        conn.executemany("INSERT INTO outlets (id, name) VALUES (?, ?)", [(o, f"Diario {o[7:]}") for o in outlets])
        conn.executemany("INSERT INTO feeds (id, outlet_id, url, section) VALUES (?, ?, ?, ?)",
                         [(f"{o}/news", o, f"https://{o}.example/rss", "news") for o in outlets])
        conn.execute("INSERT INTO captures (article_id, url, final_url, status, headers, captured_at, sha256, size, "
                     "body_gz, tool_version) VALUES ('x', 'https://x', 'https://x', 200, '[]', '2026-01-01T00:00:00Z', "
                     "'0', 0, x'', 'bench')")
    now = datetime.now(timezone.utc)
    texts: list[str] = []
    for start in range(0, n_flags, 20_000):
        n = min(20_000, n_flags - start)
        a = now - timedelta(days=366) + timedelta(days=365 * start / n_flags)
        b = now - timedelta(days=366) + timedelta(days=365 * (start + n) / n_flags)
        insert_flags(conn, rng, nrng, start, n, a, b, outlets, texts)
    conn.execute("ANALYZE")
    db.close()
    return outlets, texts, rng, nrng


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--flags", type=int, default=100_000)
    parser.add_argument("--new", type=int, default=500)
    parser.add_argument("--repeat", type=int, default=3, help="Timed incremental updates (a fresh copy each).")
    parser.add_argument("--no-doc", action="store_true", help="Do not write docs/benchmarks.md.")
    args = parser.parse_args()
    if hasattr(os, "sched_setaffinity") and len(os.sched_getaffinity(0)) > 2:
        os.sched_setaffinity(0, set(sorted(os.sched_getaffinity(0))[:2]))
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    tmp = Path(tempfile.mkdtemp())
    path = tmp / "campaigns.db"
    settings = AlertingSettings()
    t = time.perf_counter()
    outlets, texts, rng, nrng = generate(path, args.flags)
    gen_s = time.perf_counter() - t
    db = store.connect(path)
    t = time.perf_counter()
    built = campaigns.rebuild(db, settings.campaigns, GENERIC)
    rebuild_s = time.perf_counter() - t
    rules.generate(db, settings, GENERIC)  # alert watermarks past the history, as on a running system
    n_campaigns = db.execute("SELECT count(*), coalesce(max(items), 0) FROM campaigns").fetchone()
    db.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.close()
    print(f"generated {args.flags:,} flags in {gen_s:.0f} s; rebuild {rebuild_s:.1f} s: {built.line()}", file=sys.stderr)

    timings, detail = [], []
    for r in range(args.repeat):
        copy = tmp / f"run{r}.db"
        copy.write_bytes(path.read_bytes())
        db = store.connect(copy)
        now = datetime.now(timezone.utc)
        base_rng = random.Random(100 + r)
        insert_flags(db.conn, base_rng, np.random.default_rng(100 + r), args.flags + 1, args.new,
                     now - timedelta(hours=24), now, outlets, list(texts), campaign=(INJECTED, "gendered", 6))
        new_passages = db.execute("SELECT count(*) FROM passages WHERE id > ?",
                                  [int(store.state_get(db, campaigns.WATERMARK))]).fetchone()[0]
        t = time.perf_counter()
        result = campaigns.update(db, settings.campaigns, GENERIC)
        t_campaigns = time.perf_counter() - t
        created = rules.generate(db, settings, GENERIC)
        total = time.perf_counter() - t
        timings.append(total)
        injected = db.execute("SELECT n_outlets, burst_score FROM campaigns WHERE target = ?", [INJECTED]).fetchone()
        detail.append((new_passages, t_campaigns, total - t_campaigns, len(result.created), len(result.updated), len(created),
                       injected))
        db.close()
        print(f"run {r}: {new_passages} new passages: campaigns {t_campaigns:.2f} s ({result.line()}), "
              f"alerts {total - t_campaigns:.2f} s ({len(created)} alerts)", file=sys.stderr)
    med = statistics.median(timings)
    n_new, t_c, t_a, n_created, n_updated, n_alerts, injected = detail[timings.index(sorted(timings)[len(timings) // 2])]
    table = ("| step | figure |\n|---|---|\n"
             f"| flagged passages before the crawl | {args.flags:,} (one year, 60 outlets, 20 targets, 8 categories) |\n"
             f"| campaigns found by the rebuild | {n_campaigns[0]:,} (largest: {n_campaigns[1]:,} passages) |\n"
             f"| full rebuild (`monitor campaigns --rebuild`) | {rebuild_s:.1f} s ({args.flags / rebuild_s:,.0f} passages/s) |\n"
             f"| crawl: new flagged articles / passages | {args.new} / {n_new} |\n"
             f"| incremental update after the crawl (campaigns + alert rules), median of {args.repeat} | "
             f"**{med:.2f} s** (campaigns {t_c:.2f} s, alert rules {t_a:.2f} s); all runs: "
             f"{', '.join(f'{x:.2f}' for x in timings)} s |\n"
             f"| target | < 5 s on 2 cores: {'met' if med < 5 else '**not met**'} |\n"
             f"| new / updated campaigns, alerts (median run) | {n_created} / {n_updated}, {n_alerts} |\n"
             f"| the injected campaign (6 outlets, a target with no history) | "
             f"{f'found: {injected[0]} outlets, burst score {injected[1]}' if injected else '**missed**'} |\n")
    print(table)
    section = (
        "## Campaign detection (`benchmarks/campaigns_speed.py`)\n\n"
        f"{time.strftime('%Y-%m-%d')}, {cores} cores (CPU affinity), Python {sys.version.split()[0]}. A synthetic "
        f"database through the project's schema: {args.flags:,} flagged passages, one per article, over the past "
        "year (targets and outlets Pareto-distributed, a tenth of the passages copies of another, float16 384-d "
        f"embeddings as e5-small stores them); generated in {gen_s:.0f} s. Then a crawl adds {args.new} flagged "
        "articles of the last 24 hours (all flagged: the worst case; 1-2 passages each, one six-outlet campaign "
        "among them), and the timed step is what `crawl_once` runs after classification: `campaigns.update` "
        "(reads only the passages past the watermark; per passage two indexed lookups per (target, category) key "
        "and one vectorised MinHash + cosine compare against the passages within ±48 h) and "
        "`alerts.rules.generate`. Each run on a fresh copy of the database.\n\n" + table)
    if not args.no_doc:
        write_section(ROOT / "docs" / "benchmarks.md", "## Campaign detection", section)


if __name__ == "__main__":
    main()
