"""Benchmark: backfill records/s, local engine (1 and 2 workers) and Ray on this machine, vs a sequential loop.

One WARC (``--records`` response records, warcio's writer, gzip) is built from the real Spanish
news pages the crawl benchmark uses (../shared/data/extraction/trafilatura_es, each page made
unique by its own headline and lead paragraph; without the data set, ~60 KB generated pages);
one lead in five carries a smear against a defenders' organisation, so the classifier scores
passages past its cascade as on news about defenders.

- sequential: the plain loop over the same WARC: warcio records -> ``pageworker.process_page``
  -> ``scoring.classify_articles`` in batches of 16, one process, torch on every core (its
  default), no output; and the same loop with torch on one thread (a single-core job).
- local N: ``monitor backfill --engine local --workers N`` (Parquet shard written).
- ray N: ``monitor backfill --engine ray --workers N``, Ray started on this machine (skipped
  without the ``scale`` extra).

Every configuration runs in its own subprocess, one after the other, timed end to end (classifier
load, worker start-up and Ray start-up included: that is what a user waits for). Peak memory per
worker: the largest resident set of any worker process, sampled every 0.2 s from /proc.

Usage: python benchmarks/backfill_throughput.py [--records 400] [--repeat 1] [--classifier stigma-v2] [--quick] [--no-doc]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.doc import write_section  # noqa: E402

DOC = ROOT / "docs" / "benchmarks.md"
HEADING = "## Backfill throughput"
SMEARS = [
    "Los abogados del Centro Prodh son defensores de delincuentes y agentes extranjeros que buscan desestabilizar al país.",
    "Las madres buscadoras son un negocio: lucran con el dolor y reciben dinero de organizaciones extranjeras.",
    "El colectivo Tlachinollan protege a criminales y sus defensores son enemigos del desarrollo de la región.",
]


# --------------------------------------------------------------------------- the archive

def build_warc(path: Path, records: int, seed: int = 7) -> dict[str, Any]:
    """Write ``records`` unique news pages as warcio response records; what they are made of."""
    import io

    from warcio.statusandheaders import StatusAndHeaders
    from warcio.warcwriter import WARCWriter

    from benchmarks.crawl_throughput import PLACEHOLDER, _generated_page, _paragraph, _sentence, templates

    rng = random.Random(seed)
    pages = templates()
    sizes = []
    with open(path, "wb") as f:
        writer = WARCWriter(f, gzip=True)
        for i in range(records):
            url = f"https://diario{i % 12}.example/2019/{i:06d}/nota.html"
            title = _sentence(rng, 9).rstrip(".")
            lead = _paragraph(rng, 60)
            smear = f"<p>{SMEARS[i % len(SMEARS)]}</p>" if i % 5 == 0 else ""   # its own paragraph, as quoted in news
            if pages:
                t = pages[i % len(pages)]
                html = (t.html[:t.insert_at] + f"<p>{lead}</p>{smear}" + t.html[t.insert_at:]).replace(PLACEHOLDER, url)
                html = html.replace("<title>", f"<title>{title} | ", 1)
            else:
                html = _generated_page(rng, title, lead).replace("</article>", smear + "</article>", 1)
            body = html.encode("utf-8")
            sizes.append(len(body))
            http = StatusAndHeaders("200 OK", [("Content-Type", "text/html; charset=utf-8"),
                                               ("Content-Length", str(len(body)))], protocol="HTTP/1.1")
            writer.write_record(writer.create_warc_record(
                url, "response", payload=io.BytesIO(body), length=len(body), http_headers=http,
                warc_headers_dict={"WARC-Date": f"2019-{1 + i % 12:02d}-{1 + i % 28:02d}T12:00:00Z"}))
    sizes.sort()
    return {"records": records, "real_pages": len(pages), "size_min": sizes[0], "size_median": sizes[len(sizes) // 2],
            "size_max": sizes[-1], "warc_bytes": path.stat().st_size}


# --------------------------------------------------------------------------- one configuration (a subprocess)

def _descendants(root: int) -> dict[int, str]:
    """pid -> command line of every process below ``root``."""
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
                parents[int(entry)] = int(stat.rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
    found: dict[int, str] = {}
    frontier = [root]
    while frontier:
        pid = frontier.pop()
        for child, parent in parents.items():
            if parent == pid and child not in found:
                try:
                    found[child] = Path(f"/proc/{child}/cmdline").read_bytes().replace(b"\0", b" ").decode("utf-8", "replace")
                except OSError:
                    found[child] = ""
                frontier.append(child)
    return found


def _rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


class MemorySampler(threading.Thread):
    """Largest RSS of this process and of its worker processes (spawned pool workers, Ray workers)."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.stop = threading.Event()
        self.driver_mb = 0.0
        self.worker_mb = 0.0

    def run(self) -> None:
        me = os.getpid()
        while not self.stop.wait(0.2):
            self.driver_mb = max(self.driver_mb, _rss_mb(me))
            for pid, cmd in _descendants(me).items():
                if "multiprocessing" in cmd or "default_worker.py" in cmd or cmd.startswith("ray::"):
                    self.worker_mb = max(self.worker_mb, _rss_mb(pid))


def _verdict_digest(scores: list[tuple[str, float]]) -> str:
    """A short hash of every (URL, score to 4 decimals): equal digests, equal verdicts."""
    import hashlib

    return hashlib.sha256(json.dumps(sorted(scores)).encode()).hexdigest()[:12]


def _cpu_seconds() -> float:
    """CPU time of this process and its waited-for children (pool workers; Ray's run under its raylet)."""
    import resource

    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def run_one(mode: str, workers: int, warc: Path, classifier: str, out: Path) -> dict[str, Any]:
    """Run one configuration in this process; the figures as a dict."""
    import logging

    logging.basicConfig(level=logging.ERROR)
    logging.getLogger("monitor").setLevel(logging.ERROR)
    sampler = MemorySampler()
    sampler.start()
    started = time.perf_counter()
    cpu_start = _cpu_seconds()
    if mode in ("sequential", "sequential1"):
        import hashlib

        from warcio.archiveiterator import ArchiveIterator

        from monitor import pageworker
        from monitor.classifier.registry import load_classifier
        from monitor.models import Fetched
        from monitor.scoring import classify_articles

        model = load_classifier(classifier)
        if mode == "sequential1" and "torch" in sys.modules:   # the loop as a single-core job would run it
            import torch

            torch.set_num_threads(1)
        first = (time.perf_counter(), 0)   # steady state: after the classifier is loaded
        records = flagged = 0
        batch: list[Any] = []
        scores: list[tuple[str, float]] = []

        def flush() -> int:  # classify the batch, recording every verdict
            results = classify_articles(model, [(a.title, a.text) for a in batch])
            scores.extend((a.url, round(r.score, 4)) for a, r in zip(batch, results))
            batch.clear()
            return sum(r.stigmatising for r in results)

        with open(warc, "rb") as f:
            for record in ArchiveIterator(f):
                if record.rec_type != "response":
                    continue
                body = record.raw_stream.read()
                fetched = Fetched(url=record.rec_headers.get_header("WARC-Target-URI"),
                                  final_url=record.rec_headers.get_header("WARC-Target-URI"), status=200,
                                  headers=tuple(record.http_headers.headers), body=body,
                                  captured_at=record.rec_headers.get_header("WARC-Date"),
                                  sha256=hashlib.sha256(body).hexdigest())
                result = pageworker.process_page(fetched, None, pack=False)
                records += 1
                if result.article is not None:
                    batch.append(result.article)
                if len(batch) >= 16:
                    flagged += flush()
        if batch:
            flagged += flush()
        seconds = time.perf_counter() - started
        digest = _verdict_digest(scores)
    else:
        from monitor.backfill.engines import run_backfill

        marks: list[tuple[float, int]] = []

        def progress(summary: Any) -> None:   # the first rows back mark the end of start-up
            if not marks and summary.records:
                marks.append((time.perf_counter(), summary.records))

        summary = run_backfill([warc], out, classifier, mode, workers, redo=True, progress=progress)
        first = marks[0] if marks else (started, 0)
        records, flagged, seconds = summary.records, summary.flagged, time.perf_counter() - started
        import pyarrow.parquet as pq

        rows = pq.read_table(summary.outputs[0], columns=["url", "score"]).to_pylist()
        digest = _verdict_digest([(r["url"], round(r["score"], 4)) for r in rows if r["score"] is not None])
    steady = (records - first[1]) / (started + seconds - first[0]) if started + seconds > first[0] else 0.0
    cpu = _cpu_seconds() - cpu_start
    sampler.stop.set()
    sampler.join()
    return {"mode": mode, "workers": workers, "records": records, "flagged": flagged, "verdicts": digest,
            "seconds": seconds, "cpu_s": cpu, "steady_rate": steady, "startup_s": first[0] - started,
            "rate": records / seconds, "driver_mb": sampler.driver_mb, "worker_mb": sampler.worker_mb}


def in_subprocess(mode: str, workers: int, warc: Path, classifier: str, out: Path) -> dict[str, Any] | None:
    cmd = [sys.executable, __file__, "--one", mode, "--workers", str(workers), "--warc", str(warc),
           "--classifier", classifier, "--out", str(out)]
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    done = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        print(f"{mode} {workers}: failed\n{done.stderr[-3000:]}", file=sys.stderr)
        return None
    return json.loads(done.stdout.strip().splitlines()[-1])


# --------------------------------------------------------------------------- report

def result_notes(results: list[dict[str, Any]]) -> list[str]:
    """What the figures say: same verdicts, and the 2-worker gain against both sequential loops."""
    notes = []
    digests = {(r["flagged"], r["verdicts"]) for r in results}
    if len(digests) > 1:
        notes.append(f"verdicts differ between runs (flagged, digest): {sorted(digests)}")
    else:
        flagged, digest = digests.pop()
        notes.append(f"Same verdicts in every run: {flagged} records flagged, every score to 4 decimals equal "
                     f"(digest {digest}).")
    by = {(r["mode"], r["workers"]): r for r in results}
    seq, one, two = by.get(("sequential", 1)), by.get(("sequential1", 1)), by.get(("local", 2))
    if seq and one and two:
        notes.append(
            f"`--workers 2` against the loop on one core (torch on 1 thread): **{two['rate'] / one['rate']:.2f}×** "
            f"end to end, **{two['steady_rate'] / one['steady_rate']:.2f}×** steady. Against the loop as torch runs "
            f"it by default it is {two['rate'] / seq['rate']:.2f}× ({two['steady_rate'] / seq['steady_rate']:.2f}× "
            f"steady): classification is about 90 % of the CPU per record and torch already spreads each batch over "
            f"both cores ({seq['cpu_s'] / seq['seconds']:.2f} cores busy on average in that loop), so on 2 cores the "
            f"processes can only add the rest (one thread per worker also spends less CPU per record here: "
            f"{one['cpu_s'] / one['records'] * 1000:.0f} ms with one thread against "
            f"{seq['cpu_s'] / seq['records'] * 1000:.0f} ms with two).")
    ray_run = by.get(("ray", 2))
    if ray_run:
        notes.append(f"Ray on this machine: {ray_run['startup_s']:.0f} s before the first rows (Ray itself, two "
                     f"classifier actors loading the model, extraction tasks); its steady rate is flattered by the "
                     f"extraction tasks running ahead while the actors load. Its place is a cluster.")
    return notes


def section(info: dict[str, Any], results: list[dict[str, Any]], classifier: str, load: float, notes: list[str]) -> str:
    base = next(r for r in results if r["mode"] == "sequential")
    rows = []
    for r in results:
        label = {"sequential": "sequential loop (warcio → `process_page` → `classify_articles`, one process)",
                 "sequential1": "the same loop, torch on 1 thread",
                 "local": f"`--engine local --workers {r['workers']}`",
                 "ray": f"`--engine ray --workers {r['workers']}` (Ray started on this machine)"}[r["mode"]]
        worker = f"{r['worker_mb']:.0f} MB" if r["worker_mb"] else "—"
        cpu = f"{r['cpu_s'] / r['records'] * 1000:.0f} ms" if r["mode"] != "ray" else "—"
        worker = worker if not r["mode"].startswith("sequential") else "—"
        rows.append(f"| {label} | {r['records']} | {r['seconds']:.1f} s | {r['rate']:.2f} | "
                    f"**{r['rate'] / base['rate']:.2f}×** | {r['startup_s']:.1f} s | {r['steady_rate']:.2f} | "
                    f"**{r['steady_rate'] / base['steady_rate']:.2f}×** | {cpu} | {r['driver_mb']:.0f} MB | {worker} |")
    pages = (f"{info['real_pages']} real Spanish news pages (../shared/data/extraction/trafilatura_es) as templates"
             if info["real_pages"] else "generated ~60 KB pages (the real-page data set was absent)")
    text = (
        f"{HEADING} (`benchmarks/backfill_throughput.py`)\n\n"
        f"{time.strftime('%Y-%m-%d')}, {os.cpu_count()} CPUs ({platform.machine()}), Python "
        f"{platform.python_version()}, load average {load:.2f} at start; classifier `{classifier}`. One WARC of "
        f"{info['records']} response records ({info['warc_bytes'] / 1e6:.1f} MB gzip) written with warcio: {pages}, "
        f"each with its own headline and lead paragraph, one lead in five carrying a smear against a defenders' "
        f"organisation; page sizes min/median/max {info['size_min'] // 1000}/{info['size_median'] // 1000}/"
        f"{info['size_max'] // 1000} KB. Each configuration runs in its own process, one after the other, timed end "
        f"to end (classifier load, worker and Ray start-up included). Peak memory: the largest resident set of the "
        f"driver and of any one worker process (sampled every 0.2 s). Start-up: until the classifier is loaded (sequential) or the first rows come back "
        f"(engines: worker or Ray start-up, classifier loads, first batch); steady: records/s after it, what a long "
        f"backfill sees. CPU per record: user + system time of the "
        f"process and its pool workers (start-up included; Ray's workers are not its children: not counted).\n\n"
        "| run | records | wall | records/s | vs sequential | start-up | steady records/s | vs sequential | "
        "CPU per record | peak driver | peak per worker |\n"
        "|---|---|---|---|---|---|---|---|---|---|---|\n" + "\n".join(rows) + "\n"
    )
    if notes:
        text += "\n" + "\n".join(f"- {n}" for n in notes) + "\n"
    return text


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--records", type=int, default=400)
    parser.add_argument("--classifier", default="stigma-v2")
    parser.add_argument("--repeat", type=int, default=1, help="run each configuration N times (interleaved), keep the fastest")
    parser.add_argument("--quick", action="store_true", help="60 records, no doc")
    parser.add_argument("--no-doc", action="store_true")
    parser.add_argument("--one", choices=["sequential", "sequential1", "local", "ray"], help=argparse.SUPPRESS)
    parser.add_argument("--workers", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--warc", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.one:
        print(json.dumps(run_one(args.one, args.workers, Path(args.warc), args.classifier, Path(args.out))))
        return
    records = 60 if args.quick else args.records
    load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="backfill-bench-") as tmp:
        warc = Path(tmp) / "bench.warc.gz"
        info = build_warc(warc, records)
        print(f"WARC: {info}", file=sys.stderr)
        notes: list[str] = []
        plan = [("sequential", 1), ("sequential1", 1), ("local", 1), ("local", 2), ("ray", 2)]
        try:
            import ray  # noqa: F401
        except ImportError:
            plan.pop()
            notes.append("Ray row skipped: the `scale` extra is not installed (`make scale`).")
        best: dict[tuple[str, int], dict[str, Any]] = {}
        for _round in range(max(1, args.repeat)):
            for mode, workers in plan:
                result = in_subprocess(mode, workers, warc, args.classifier, Path(tmp) / f"out-{mode}-{workers}")
                if result is not None:
                    print(json.dumps(result), file=sys.stderr)
                    if (mode, workers) not in best or result["seconds"] < best[(mode, workers)]["seconds"]:
                        best[(mode, workers)] = result
        results = [best[k] for k in plan if k in best]
        if args.repeat > 1:
            notes.append(f"Each configuration ran {args.repeat} times, interleaved; the table keeps the fastest run.")
    text = section(info, results, args.classifier, load, notes + result_notes(results))
    print(text)
    if not (args.quick or args.no_doc):
        write_section(DOC, HEADING, text)


if __name__ == "__main__":
    main()
