"""Benchmark: is a one-paragraph smear found AT ITS PASSAGE inside a long real article?

A smear is usually one paragraph of a long article. Each article here is a real-dev news article
(../shared/data/news, documents never trained on, labelled with no stigmatising passage) with one
passage of ../shared/eval/dev.jsonl inserted between two of its middle paragraphs: every
stigmatising item and every counter-speech item (Spanish and English). The whole article goes
through the classifier as a crawl would. Measured:
- positives found at their passage: the article is flagged AND a passage scoring over the flag
  threshold overlaps the inserted span (target >= 0.90);
- counter-speech flagged at its passage: a flagged passage overlaps the inserted span (target <= 0.10);
- host articles flagged elsewhere (a flag outside the inserted span).
No text is written anywhere: only the figures, in a section of docs/benchmarks.md.

Usage: python benchmarks/smear_in_article.py [--classifier stigma-v2] [--model DIR]
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.doc import write_section  # noqa: E402
from monitor.classifier.realdata import load_documents, load_real_labels  # noqa: E402
from monitor.classifier.registry import load_classifier, load_spec  # noqa: E402

DEV = ROOT.parent / "shared" / "eval" / "dev.jsonl"


def hosts(spec, min_paragraphs: int = 5) -> list[str]:
    """Real-dev news articles whose labelled passages are all not stigmatising."""
    rows = load_real_labels(spec.real_training_files(), splits=("real-dev",))
    bad = {(r.source, r.doc) for r in rows if r.example.stigmatising}
    out = []
    for source in ("news2018", "ljz"):
        docs = load_documents(source)
        ids = sorted({r.doc for r in rows if r.source == source and (source, r.doc) not in bad})
        for d in ids:
            paras = [p for p in docs[d].text.split("\n") if p.strip()]
            if len(paras) >= min_paragraphs:
                out.append(docs[d].text)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--classifier", default="stigma-v2")
    ap.add_argument("--model")
    args = ap.parse_args()
    if not DEV.is_file():
        sys.exit(f"{DEV} not found")
    spec = load_spec(args.classifier)
    clf = load_classifier(args.classifier, model_dir=args.model)
    items = [json.loads(l) for l in DEV.read_text().splitlines() if l.strip()]
    items = [i for i in items if i["stigmatising"] or i["voice"] == "counter"]
    pool = hosts(spec)
    rng = random.Random(11)
    articles, spans, kinds = [], [], []
    for item in items:
        host = rng.choice(pool)
        paras = [p for p in host.split("\n") if p.strip()]
        cut = len(paras) // 2
        before = "\n".join(paras[:cut]) + "\n"
        text = before + item["text"] + "\n" + "\n".join(paras[cut:])
        articles.append(text)
        spans.append((len(before), len(before) + len(item["text"])))
        kinds.append("positive" if item["stigmatising"] else "counter")
    started = time.perf_counter()
    verdicts = clf.classify(articles)
    seconds = time.perf_counter() - started
    threshold = spec.threshold("stigmatising", 0.5)
    found = {"positive": 0, "counter": 0}
    total = {"positive": 0, "counter": 0}
    elsewhere = 0
    for v, (s, e), kind in zip(verdicts, spans, kinds):
        total[kind] += 1
        over = [p for p in v.passages if p.score >= threshold]
        at = any(p.start < e and p.end > s for p in over)
        found[kind] += bool(v.stigmatising and at)
        elsewhere += any(not (p.start < e and p.end > s) for p in over)
    pos_rate = found["positive"] / max(1, total["positive"])
    cnt_rate = found["counter"] / max(1, total["counter"])
    section = "\n".join([
        "## Smear inside a long real article (benchmarks/smear_in_article.py)", "",
        f"Model {clf.model_id} {clf.model_version}, threshold {threshold}. {len(articles)} articles: a dev.jsonl "
        f"passage inserted mid-article into {len(pool)} real-dev news articles (real text, never trained on, "
        "no labelled smear).", "",
        "| measure | value | target |", "|---|---|---|",
        f"| positives found at their passage | {found['positive']}/{total['positive']} = {pos_rate:.3f} | >= 0.90 |",
        f"| counter-speech flagged at its passage | {found['counter']}/{total['counter']} = {cnt_rate:.3f} | <= 0.10 |",
        f"| articles with a flag outside the inserted passage | {elsewhere}/{len(articles)} | |",
        f"| time | {seconds:.1f} s ({len(articles) / seconds:.1f} articles/s) | |", ""])
    write_section(ROOT / "docs" / "benchmarks.md", "## Smear inside a long real article", section)
    print(section)


if __name__ == "__main__":
    main()
