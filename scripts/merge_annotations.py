#!/usr/bin/env python3
"""Turn annotators' label files (by pid) into the pointer-label files the project keeps.

  python scripts/merge_annotations.py --pool /tmp/annot --out classifiers/stigma-v2/data/real
        [--adjudicated /tmp/annot/adjudicated.jsonl]

Reads POOL/pool.jsonl (what each pid points at), POOL/labels/b*.jsonl (first annotation) and
POOL/labels/second_*.jsonl (the independent second annotation). Writes one file per source
(news2018.jsonl, ljz.jsonl, mananeras.jsonl) with the first annotation, overridden where an
adjudication exists, plus second_annotation.jsonl, and prints Cohen's kappa for the flag, voice
and each category on the doubly-annotated passages. No passage text is written: only source,
document id, offsets, SHA-256 and the labels ("decisive" becomes document offsets, and so do the
targets of the unlicensed sources: "target_spans").
"""
from __future__ import annotations

import argparse
import glob
import json
from collections import Counter
from pathlib import Path

UNLICENSED = ("ljz", "mananeras")  # SOURCE.txt states no licence: labels may point at text, never hold it
CATS = ["criminalisation", "corruption_profiteering", "false_claims", "anti_development",
        "disloyalty_foreign", "gendered", "discrediting_oversight", "threat_incitement"]


def kappa(a: list, b: list) -> float | None:
    n = len(a)
    if not n:
        return None
    po = sum(x == y for x, y in zip(a, b)) / n
    ca, cb = Counter(a), Counter(b)
    pe = sum(ca[k] * cb[k] for k in set(a) | set(b)) / (n * n)
    return round((po - pe) / (1 - pe), 3) if pe < 1 else None


def read_labels(pattern: str) -> dict[str, dict]:
    out = {}
    for f in sorted(glob.glob(pattern)):
        for line in open(f, encoding="utf-8"):
            if line.strip():
                r = json.loads(line)
                out[r["pid"]] = r
    return out


def pointer(p: dict, lab: dict, text: str | None, annotator: str) -> dict:
    rec = {k: p[k] for k in ("source", "doc", "start", "end", "sha256", "split")}
    rec.update({"stigmatising": int(lab["stigmatising"]), "about_defenders": int(lab["about_defenders"]),
                "voice": lab["voice"], "categories": [c for c in CATS if c in (lab.get("categories") or [])],
                "targets": lab.get("targets") or [], "speaker": lab.get("speaker") or ""})
    if p["source"] in UNLICENSED:  # targets as written would be copied text: keep their offsets instead
        spans = []
        for t in rec.pop("targets"):
            if text and t and t in text:
                i = text.index(t)
                spans.append([p["start"] + i, p["start"] + i + len(t)])
        rec["target_spans"] = spans
    d = lab.get("decisive") or ""
    if d and text and d in text:
        i = text.index(d)
        rec["decisive"] = [p["start"] + i, p["start"] + i + len(d)]
    rec["annotation"] = annotator
    return rec


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pool", required=True, type=Path)
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--adjudicated", type=Path)
    args = ap.parse_args()
    pool = {json.loads(l)["pid"]: json.loads(l) for l in open(args.pool / "pool.jsonl", encoding="utf-8")}
    texts = {}
    for f in glob.glob(str(args.pool / "batches" / "*.jsonl")) + [str(args.pool / "second.jsonl")]:
        for l in open(f, encoding="utf-8"):
            r = json.loads(l)
            texts[r["pid"]] = r["text"]
    first = read_labels(str(args.pool / "labels" / "b*.jsonl"))
    second = read_labels(str(args.pool / "labels" / "second_*.jsonl"))
    adjud = read_labels(str(args.adjudicated)) if args.adjudicated and args.adjudicated.is_file() else {}
    args.out.mkdir(parents=True, exist_ok=True)
    by_source: dict[str, list[dict]] = {}
    for pid, p in sorted(pool.items(), key=lambda kv: (kv[1]["source"], kv[1]["doc"], kv[1]["start"])):
        if pid not in first:
            continue
        lab, who = (adjud[pid], "adjudicated") if pid in adjud else (first[pid], "first")
        by_source.setdefault(p["source"], []).append(pointer(p, lab, texts.get(pid), who))
    for source, rows in by_source.items():
        with open(args.out / f"{source}.jsonl", "w", encoding="utf-8") as fh:
            for r in rows:
                fh.write(json.dumps(r, ensure_ascii=False, sort_keys=False) + "\n")
    both = [pid for pid in second if pid in first]
    with open(args.out / "second_annotation.jsonl", "w", encoding="utf-8") as fh:
        for pid in sorted(both, key=lambda q: (pool[q]["source"], pool[q]["doc"], pool[q]["start"])):
            fh.write(json.dumps(pointer(pool[pid], second[pid], texts.get(pid), "second"), ensure_ascii=False) + "\n")
    a = [first[p] for p in both]
    b = [second[p] for p in both]
    report = {"double_annotated": len(both),
              "flag_kappa": kappa([x["stigmatising"] for x in a], [x["stigmatising"] for x in b]),
              "about_defenders_kappa": kappa([x["about_defenders"] for x in a], [x["about_defenders"] for x in b]),
              "voice_kappa": kappa([x["voice"] for x in a], [x["voice"] for x in b]),
              "flag_positives": [sum(x["stigmatising"] for x in a), sum(x["stigmatising"] for x in b)],
              "categories": {c: {"kappa": kappa([c in (x.get("categories") or []) for x in a],
                                                [c in (x.get("categories") or []) for x in b]),
                                 "first": sum(c in (x.get("categories") or []) for x in a),
                                 "second": sum(c in (x.get("categories") or []) for x in b)} for c in CATS}}
    disagreements = [p for p in both if first[p]["stigmatising"] != second[p]["stigmatising"]
                     or set(first[p].get("categories") or []) != set(second[p].get("categories") or [])]
    (args.pool / "disagreements.txt").write_text("\n".join(disagreements))
    report["disagreements"] = len(disagreements)
    counts = {s: {"passages": len(r), "stigmatising": sum(x["stigmatising"] for x in r),
                  "real-dev": sum(x["split"] == "real-dev" for x in r),
                  "real-dev positives": sum(x["split"] == "real-dev" and x["stigmatising"] for x in r)}
              for s, r in by_source.items()}
    print(json.dumps({"counts": counts, "agreement": report}, indent=2))


if __name__ == "__main__":
    main()
