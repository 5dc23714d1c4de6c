"""Classify the real-news corpus (../shared/data/news/spanish_news_2018.jsonl) and list every flagged article.

Used to measure how often the classifier flags ordinary journalism and to set thresholds; never
as training text. Writes JSON lines (one per flagged article) to stdout and the rate to stderr.

Usage: python scripts/real_news_flags.py [--model DIR] [--threshold T] > flags.jsonl
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from monitor.classifier.registry import load_classifier  # noqa: E402

NEWS = ROOT.parent / "shared" / "data" / "news" / "spanish_news_2018.jsonl"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model")
    parser.add_argument("--classifier", default="stigma-v2")
    parser.add_argument("--threshold", type=float, help="override the stigmatising threshold")
    args = parser.parse_args()
    if not NEWS.is_file():
        sys.exit(f"{NEWS} not found")
    rows = [json.loads(l) for l in NEWS.read_text().splitlines()]
    clf = load_classifier(args.classifier, model_dir=args.model)
    if args.threshold is not None:
        clf.spec = replace(clf.spec, thresholds={**clf.spec.thresholds, "stigmatising": args.threshold})
    start = time.perf_counter()
    results = []
    for i in range(0, len(rows), 32):
        results += clf.classify([r["text"] for r in rows[i:i + 32]])
        print(f"\r{min(i + 32, len(rows))}/{len(rows)}", end="", file=sys.stderr)
    flagged = 0
    for row, res in zip(rows, results):
        if not res.stigmatising:
            continue
        flagged += 1
        best = res.passages[0]
        print(json.dumps({"id": row["id"], "source": row["source"], "headline": row["headline"], "score": res.score,
                          "top_category": max(res.categories, key=res.categories.get), "voice": res.voice,
                          "targets": list(res.targets), "passage": best.text[:400]}, ensure_ascii=False))
    print(f"\nflagged {flagged}/{len(rows)} = {flagged / len(rows):.2%} in {time.perf_counter() - start:.0f}s",
          file=sys.stderr)


if __name__ == "__main__":
    main()
