"""Slow: the trained default model against the acceptance floors (dev set) and on real news.

Run by `make test` (CI) after `monitor model prepare`; skipped by `make test-fast`.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from monitor.classifier.data import load_examples
from monitor.classifier.evaluate import evaluate
from monitor.classifier.registry import load_classifier, load_spec

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
FLOORS = json.loads((ROOT / "classifiers" / "stigma-v1" / "floors.json").read_text())


@pytest.fixture(scope="module")
def trained() -> object:
    spec = load_spec("stigma-v1")
    if not (spec.trained_dir() / "card.json").is_file():
        pytest.fail(f"no trained model at {spec.trained_dir()}: run `make model` (monitor model prepare) first")
    return load_classifier("stigma-v1")


@pytest.mark.skipif(not (SHARED / "eval" / "dev.jsonl").is_file(), reason="../shared/eval is not present")
def test_dev_set_meets_floors(trained) -> None:
    result = evaluate(trained, load_examples([SHARED / "eval" / "dev.jsonl"]))
    assert result["flag"]["f1"] >= FLOORS["flag_f1"], result["flag"]
    assert result["counter_speech_fpr"] <= FLOORS["counter_speech_fpr_max"]
    assert result["category_macro_f1"] >= FLOORS["category_macro_f1"]
    assert result["voice_accuracy"] >= FLOORS["voice_accuracy"]


@pytest.mark.skipif(not (SHARED / "data" / "news" / "spanish_news_2018.jsonl").is_file(),
                    reason="../shared/data/news is not present")
def test_real_news_flag_rate(trained) -> None:
    rows = [json.loads(l) for l in (SHARED / "data" / "news" / "spanish_news_2018.jsonl").read_text().splitlines()]
    texts = [r["text"] for r in rows]
    flagged = sum(r.stigmatising for r in trained.classify(texts))
    assert flagged / len(texts) <= FLOORS["real_news_flag_rate_max"], f"{flagged}/{len(texts)}"
