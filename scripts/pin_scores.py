#!/usr/bin/env python3
"""Write classifiers/<name>/pinned_scores.json: the shipped model's scores, to 4 decimals, on a few
passages written for this purpose. tests/test_shipped_model.py checks every install reproduces them.

Usage: python scripts/pin_scores.py [--classifier stigma-v2]
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from monitor.classifier.registry import load_classifier, load_spec  # noqa: E402

PASSAGES = [
    "El vocero dijo que los periodistas de ese diario son mercenarios pagados por la oposición y que mienten a diario.",
    "La organización civil rechazó las acusaciones del gobernador y pidió que presente pruebas o se retracte.",
    "Las madres buscadoras localizaron restos humanos en un predio de las afueras de la ciudad.",
    "El equipo local ganó tres a uno y se colocó en el primer lugar de la tabla general.",
    "Estas supuestas defensoras de derechos humanos viven del dinero extranjero y protegen a delincuentes.",
]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--classifier", default="stigma-v2")
    args = ap.parse_args()
    clf = load_classifier(args.classifier)
    scores = clf.score_texts(PASSAGES)
    out = {"version": clf.model_version,
           "passages": [{"text": t, "stigmatising": round(s["stigmatising"], 4)} for t, s in zip(PASSAGES, scores)]}
    path = load_spec(args.classifier).path / "pinned_scores.json"
    path.write_text(json.dumps(out, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    print(json.dumps(out, indent=2, ensure_ascii=False))


if __name__ == "__main__":
    main()
