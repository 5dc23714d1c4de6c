"""Evaluate a classifier on the real-dev split of the real sources, per source and per document.

Passage level: each labelled passage scored alone (as ``monitor evaluate`` does with dev.jsonl).
Document level (what a monitoring team sees): each real-dev document is classified whole, as the
crawl would, and compared with its gold flag (any labelled passage stigmatising). For the news
sources the figures are also given on the *defender-related* documents (a passage about
defenders, journalists, NGOs, victims or oversight bodies), and as the share of all real-dev
documents flagged (ordinary news must stay quiet). Flags are listed by document id and passage
offsets only: the text of unlicensed sources never leaves the local copy.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

from .evaluate import _prf, evaluate
from .realdata import RealExample, load_documents, load_real_labels

NEWS_SOURCES = ("news2018", "ljz")


def _doc_metrics(gold: dict[str, int], pred: dict[str, int]) -> dict[str, Any]:
    tp = sum(1 for d in gold if gold[d] and pred[d])
    fp = sum(1 for d in gold if pred[d] and not gold[d])
    fn = sum(1 for d in gold if gold[d] and not pred[d])
    return {**_prf(tp, fp, fn), "documents": len(gold), "flagged": sum(pred.values()),
            "flag_rate": round(sum(pred.values()) / max(1, len(gold)), 4)}


def evaluate_real(classifier: Any, label_files: list[str | Path], sources: str | Path | None = None,
                  split: str = "real-dev") -> dict[str, Any]:
    """Passage- and document-level figures per source on one split of the real labels."""
    rows: list[RealExample] = load_real_labels(label_files, sources, splits=(split,))
    out: dict[str, Any] = {"split": split, "model": {"id": getattr(classifier, "model_id", "?"),
                                                     "version": getattr(classifier, "model_version", "?")},
                           "sources": {}}
    by_source: dict[str, list[RealExample]] = defaultdict(list)
    for r in rows:
        by_source[r.source].append(r)
    for source, items in sorted(by_source.items()):
        passage = evaluate(classifier, [r.example for r in items])
        passage.pop("errors", None)
        docs = load_documents(source, sources)
        gold: dict[str, int] = defaultdict(int)
        about: dict[str, int] = defaultdict(int)
        for r in items:
            gold[r.doc] |= r.example.stigmatising
            about[r.doc] |= r.example.about_defenders
        ids = sorted(gold)
        verdicts = classifier.classify([docs[d].text for d in ids])
        pred = {d: int(v.stigmatising) for d, v in zip(ids, verdicts)}
        flags = []
        for d, v in zip(ids, verdicts):
            if v.stigmatising:
                top = max(v.passages, key=lambda p: p.score)
                flags.append({"doc": d, "gold": gold[d], "score": round(v.score, 4), "start": top.start,
                              "end": top.end, "voice": v.voice,
                              "categories": sorted(c for c, s in v.categories.items() if s >= 0.4)})
        entry: dict[str, Any] = {
            "passages": {k: passage[k] for k in ("n", "flag", "category_macro_f1", "voice_accuracy",
                                                 "counter_speech_fpr", "counter_speech_n", "categories")},
            "documents": _doc_metrics(dict(gold), pred),
            "flags": flags,
        }
        if source in NEWS_SOURCES:
            related = [d for d in ids if about[d]]
            entry["defender_related_documents"] = _doc_metrics({d: gold[d] for d in related},
                                                               {d: pred[d] for d in related})
        out["sources"][source] = entry
    news = [out["sources"][s]["documents"] for s in NEWS_SOURCES if s in out["sources"]]
    if news:
        out["news_flag_rate"] = round(sum(d["flagged"] for d in news) / max(1, sum(d["documents"] for d in news)), 4)
    return out


def markdown(result: dict[str, Any]) -> str:
    """A per-source table of the figures (for docs/classifier.md)."""
    lines = [f"Model {result['model']['id']} {result['model']['version']}, split {result['split']}", "",
             "| source | passages | pos | P | R | F1 | cat macro-F1 | voice | counter FPR | docs | doc P | doc R | "
             "defender-related docs P / R | docs flagged |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for source, e in result["sources"].items():
        p, d = e["passages"], e["documents"]
        rel = e.get("defender_related_documents")
        rel_s = f"{rel['precision']:.2f} / {rel['recall']:.2f} (n={rel['documents']}, pos={rel['support']})" if rel else "–"
        cfpr = "–" if p["counter_speech_fpr"] is None else f"{p['counter_speech_fpr']:.2f} (n={p['counter_speech_n']})"
        lines.append(f"| {source} | {p['n']} | {p['flag']['support']} | {p['flag']['precision']:.2f} | "
                     f"{p['flag']['recall']:.2f} | {p['flag']['f1']:.2f} | {p['category_macro_f1']:.2f} | "
                     f"{p['voice_accuracy']:.2f} | {cfpr} | {d['documents']} | {d['precision']:.2f} | "
                     f"{d['recall']:.2f} | {rel_s} | {d['flagged']} ({100 * d['flag_rate']:.1f} %) |")
    if "news_flag_rate" in result:
        lines += ["", f"News documents flagged (news2018 + ljz real-dev): {100 * result['news_flag_rate']:.2f} %"]
    return "\n".join(lines) + "\n"
