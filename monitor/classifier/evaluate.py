"""Evaluate a classifier on labelled JSONL: flag P/R/F1, per-category F1, voice accuracy, counter-speech FPR."""

from __future__ import annotations

import json
import os
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from .data import Example, data_hash
from .registry import CATEGORIES


def _prf(tp: int, fp: int, fn: int) -> dict[str, float]:
    p = tp / (tp + fp) if tp + fp else 0.0
    r = tp / (tp + fn) if tp + fn else 0.0
    f = 2 * p * r / (p + r) if p + r else 0.0
    return {"precision": round(p, 4), "recall": round(r, 4), "f1": round(f, 4), "support": tp + fn}


def evaluate(classifier: Any, examples: list[Example], category_threshold: float | None = None) -> dict[str, Any]:
    """Score ``examples`` and compute the metrics ``monitor evaluate`` reports.

    Predicted categories of a flagged item: those at or above ``category_threshold`` (default:
    the definition's ``category`` threshold), or the top one when none clears it.
    """
    spec = getattr(classifier, "spec", None)
    t_cat = category_threshold if category_threshold is not None else (spec.threshold("category", 0.4) if spec else 0.4)
    results = classifier.classify([e.text for e in examples])
    tp = fp = fn = tn = 0
    cat_counts = {c: [0, 0, 0] for c in CATEGORIES}
    voice_ok = 0
    counter_total = counter_flagged = 0
    errors: list[dict[str, Any]] = []
    for e, r in zip(examples, results):
        pred = int(r.stigmatising)
        gold = int(e.stigmatising)
        tp += pred and gold
        fp += pred and not gold
        fn += gold and not pred
        tn += not pred and not gold
        pcats = set()
        if pred:
            pcats = {c for c, v in r.categories.items() if v >= t_cat} or (
                {max(r.categories, key=lambda c: r.categories[c])} if r.categories else set())
        for c in CATEGORIES:
            g, p = c in e.categories, c in pcats
            cat_counts[c][0] += g and p
            cat_counts[c][1] += p and not g
            cat_counts[c][2] += g and not p
        voice = r.voice
        voice_ok += voice == e.voice
        if e.voice == "counter" and not gold:
            counter_total += 1
            counter_flagged += pred
        if pred != gold or (gold and voice != e.voice):
            errors.append({"id": e.id, "gold": gold, "predicted": pred, "score": r.score,
                           "gold_voice": e.voice, "predicted_voice": voice,
                           "gold_categories": list(e.categories), "predicted_categories": sorted(pcats),
                           "text": e.text[:160]})
    per_cat = {c: _prf(*v) for c, v in cat_counts.items()}
    present = [c for c in CATEGORIES if per_cat[c]["support"] > 0]
    return {
        "n": len(examples),
        "model": {"id": getattr(classifier, "model_id", "?"), "version": getattr(classifier, "model_version", "?"),
                  "quantize": getattr(classifier, "quantize", None)},
        "flag": {**_prf(tp, fp, fn), "accuracy": round((tp + tn) / max(1, len(examples)), 4),
                 "tp": tp, "fp": fp, "fn": fn, "tn": tn},
        "categories": per_cat,
        "category_macro_f1": round(sum(per_cat[c]["f1"] for c in present) / max(1, len(present)), 4),
        "voice_accuracy": round(voice_ok / max(1, len(examples)), 4),
        "counter_speech_fpr": round(counter_flagged / counter_total, 4) if counter_total else None,
        "counter_speech_n": counter_total,
        "misclassified": [x["id"] for x in errors if x["gold"] != x["predicted"]],
        "errors": errors,
    }


EVALUATIONS_FILE = "evaluations.json"


def record_evaluation(weights_dir: Path, result: dict[str, Any], data_file: str | Path,
                      thresholds: dict[str, float]) -> Path:
    """Keep the metrics of an evaluation next to the weights, beside the model card.

    ``card.json`` says how the model was built and is part of its version, so it is never
    rewritten; ``evaluations.json`` holds the latest result per evaluation file (keyed by the
    file's SHA-256), with the quantisation and thresholds it was measured under.
    """
    path = Path(weights_dir) / EVALUATIONS_FILE
    try:
        records = json.loads(path.read_text()) if path.is_file() else {}
    except (OSError, ValueError):
        records = {}
    records[data_hash([data_file])] = {
        "data": Path(data_file).name, "n": result["n"],
        "evaluated_at": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "model_version": result["model"]["version"], "quantize": result["model"]["quantize"],
        "thresholds": thresholds, "flag": {k: result["flag"][k] for k in ("precision", "recall", "f1")},
        "category_macro_f1": result["category_macro_f1"], "voice_accuracy": result["voice_accuracy"],
        "counter_speech_fpr": result["counter_speech_fpr"],
    }
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(records, indent=2, ensure_ascii=False), encoding="utf-8")
    os.replace(tmp, path)
    return path


def markdown_report(result: dict[str, Any], data_name: str) -> str:
    """A readable Markdown report of an evaluation."""
    f = result["flag"]
    lines = [
        f"# Evaluation of {result['model']['id']} {result['model']['version']} on {data_name}",
        "",
        f"{result['n']} items. Quantisation: {result['model']['quantize']}.",
        "",
        "| metric | value |", "|---|---|",
        f"| flag precision | {f['precision']:.3f} |", f"| flag recall | {f['recall']:.3f} |",
        f"| flag F1 | {f['f1']:.3f} |",
        f"| counter-speech FPR | {result['counter_speech_fpr']} (of {result['counter_speech_n']}) |",
        f"| category macro-F1 | {result['category_macro_f1']:.3f} |",
        f"| voice accuracy | {result['voice_accuracy']:.3f} |",
        "", "## Categories", "", "| category | P | R | F1 | support |", "|---|---|---|---|---|",
    ]
    for c, m in result["categories"].items():
        lines.append(f"| {c} | {m['precision']:.2f} | {m['recall']:.2f} | {m['f1']:.2f} | {m['support']} |")
    # ids only: the texts stay in the data file (a report may be shared or committed)
    lines += ["", "## Errors", "", "| id | gold | pred | score | voice gold→pred | categories gold → pred |",
              "|---|---|---|---|---|---|"]
    for e in result["errors"]:
        lines.append(f"| {e['id']} | {e['gold']} | {e['predicted']} | {e['score']:.2f} | "
                     f"{e['gold_voice']}→{e['predicted_voice']} | {', '.join(e['gold_categories']) or '-'} → "
                     f"{', '.join(e['predicted_categories']) or '-'} |")
    return "\n".join(lines) + "\n"
