#!/usr/bin/env python3
"""Draw the passages of the real sources that annotators label (the recipe behind data/real/).

Writes, OUTSIDE the repository (the text of ljz/ and mananeras/ may not be copied into it):
  OUT/pool.jsonl          one line per passage: pid, source, doc, start, end, sha256, split, why
  OUT/batches/bNN.jsonl   the passages with their text and context, for annotators
  OUT/second.jsonl        a second, independent sample of ≥ 500 passages for the agreement check

The draw, fixed by --seed:
  news2018   every passage the v2 relevance gate sends to the model + a random 250 it would not;
  ljz        a sample of --ljz-articles articles stratified by section (every section, opinion
             included); in them every passage naming a defender-type target + random passages;
  mananeras  --mananeras-segments segments (all speakers); every passage the gate sends.
Splits (by document and by time): news2018 by the corpus's own development split; ljz from
2013-10-01 on; mananeras from 2022-03-01 on are real-dev, the rest train.

Usage: python scripts/annotation_pool.py --out /tmp/annot [--sources ../shared/data/news]
"""
from __future__ import annotations

import argparse
import json
import random
import re
import sys
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from monitor.classifier.passages import split_passages  # noqa: E402
from monitor.classifier.realdata import load_documents, passage_sha256  # noqa: E402
from monitor.classifier.registry import load_spec  # noqa: E402
from monitor.classifier.targets import fold  # noqa: E402

DEV_FROM = {"ljz": "2013-10-01", "mananeras": "2022-03-01"}
# "names a defender-type target": the people and bodies smear campaigns aim at (narrower than the gate)
DEFENDER_TYPE = re.compile(
    r"(?<!\w)(defensor|defensora|activist|periodist|reporter|comunicador|colectivo|madres|buscador|"
    r"ong(?:s)?(?!\w)|oeneg|sociedad civil|organizaciones civiles|organismos? (?:civil|de derechos)|"
    r"derechos humanos|cndh|cdhez|cidh|comision (?:nacional|estatal|interamericana) de (?:los )?derechos|"
    r"relator|naciones unidas|onu(?!\w)|amnistia|human rights|prensa|medios de comunicacion|"
    r"desaparecid|desaparicion|normalist|ayotzinapa|ambientalist|indigena|ejidatari|comuner|abogad)")


def split_of(source: str, doc) -> str:
    if source == "news2018":
        return "real-dev" if doc.id.startswith("development-") else "train"
    return "real-dev" if doc.date >= DEV_FROM[source] else "train"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--sources", default=None)
    ap.add_argument("--classifier", default="stigma-v2")
    ap.add_argument("--ljz-articles", type=int, default=1500)
    ap.add_argument("--ljz-random", type=int, default=350)
    ap.add_argument("--mananeras-segments", type=int, default=1500)
    ap.add_argument("--news-random", type=int, default=250)
    ap.add_argument("--batches", type=int, default=14)
    ap.add_argument("--second", type=int, default=600)
    ap.add_argument("--seed", type=int, default=2026)
    args = ap.parse_args()
    rng = random.Random(args.seed)
    gate = load_spec(args.classifier).relevance_gate()
    pool: list[dict] = []

    def add(source, doc, s, e, why):
        text = doc.text[s:e]
        pool.append({"source": source, "doc": doc.id, "start": s, "end": e, "sha256": passage_sha256(text),
                     "split": split_of(source, doc), "why": why, "_text": text, "_doc": doc})

    news = load_documents("news2018", args.sources)
    outside = []
    for doc in news.values():
        for s, e in split_passages(doc.text):
            (add("news2018", doc, s, e, "gate") if gate(doc.text[s:e]) else outside.append((doc, s, e)))
    for doc, s, e in rng.sample(outside, min(args.news_random, len(outside))):
        add("news2018", doc, s, e, "random")

    ljz = load_documents("ljz", args.sources)
    by_section = defaultdict(list)
    for doc in ljz.values():
        by_section[doc.section or "?"].append(doc)
    total = len(ljz)
    chosen = []
    for sec, docs in sorted(by_section.items()):
        k = max(2, round(args.ljz_articles * len(docs) / total))
        chosen += rng.sample(docs, min(k, len(docs)))
    rest = []
    for doc in chosen:
        for s, e in split_passages(doc.text):
            (add("ljz", doc, s, e, "target") if DEFENDER_TYPE.search(fold(doc.text[s:e])) else rest.append((doc, s, e)))
    for doc, s, e in rng.sample(rest, min(args.ljz_random, len(rest))):
        add("ljz", doc, s, e, "random")

    man = list(load_documents("mananeras", args.sources).values())
    for doc in rng.sample(man, min(args.mananeras_segments, len(man))):
        for s, e in split_passages(doc.text):
            if gate(doc.text[s:e]):
                add("mananeras", doc, s, e, "gate")

    rng.shuffle(pool)
    for i, p in enumerate(pool, 1):
        p["pid"] = f"p{i:05d}"
    out = args.out
    (out / "batches").mkdir(parents=True, exist_ok=True)

    def item(p):
        d = p["_doc"]
        ctx = {"source": p["source"], "title": d.title[:160], "date": d.date, "section": d.section}
        if p["source"] == "mananeras":
            ctx["speaker_of_turn"] = d.speaker or "(continues the previous speaker's turn; unnamed)"
        return {"pid": p["pid"], "context": ctx, "text": p["_text"]}

    with open(out / "pool.jsonl", "w", encoding="utf-8") as fh:
        for p in pool:
            fh.write(json.dumps({k: v for k, v in p.items() if not k.startswith("_")}, ensure_ascii=False) + "\n")
    for b in range(args.batches):
        with open(out / "batches" / f"b{b + 1:02d}.jsonl", "w", encoding="utf-8") as fh:
            for p in pool[b::args.batches]:
                fh.write(json.dumps(item(p), ensure_ascii=False) + "\n")
    # second sample: half from the speech source (where positives are), half from the news sources
    man_p = [p for p in pool if p["source"] == "mananeras"]
    news_p = [p for p in pool if p["source"] != "mananeras" and p["why"] != "random"]
    second = rng.sample(man_p, args.second // 2) + rng.sample(news_p, args.second - args.second // 2)
    rng.shuffle(second)
    with open(out / "second.jsonl", "w", encoding="utf-8") as fh:
        for p in second:
            fh.write(json.dumps(item(p), ensure_ascii=False) + "\n")
    counts = defaultdict(int)
    for p in pool:
        counts[(p["source"], p["split"])] += 1
    print(f"{len(pool)} passages:", dict(counts), f"second sample {len(second)}")


if __name__ == "__main__":
    main()
