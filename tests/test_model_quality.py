"""Slow: the shipped default model (stigma-v2) against its floors: dev set, real-dev, real news.

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
FLOORS = json.loads((ROOT / "classifiers" / "stigma-v2" / "floors.json").read_text())


@pytest.fixture(scope="module")
def trained() -> object:
    return load_classifier("stigma-v2")  # the shipped weights, assembled onto the converted base


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


@pytest.mark.skipif(not (SHARED / "data" / "news" / "mananeras").is_dir(), reason="../shared/data/news is not present")
def test_real_dev_meets_floors(trained) -> None:
    from monitor.classifier.realeval import evaluate_real

    result = evaluate_real(trained, load_spec("stigma-v2").real_training_files(), SHARED / "data" / "news")
    speech = result["sources"]["mananeras"]
    assert speech["documents"]["precision"] >= FLOORS["real_dev_speech_doc_precision"], speech["documents"]
    assert speech["documents"]["recall"] >= FLOORS["real_dev_speech_doc_recall"], speech["documents"]
    assert speech["passages"]["category_macro_f1"] >= FLOORS["real_dev_speech_category_macro_f1"]
    assert result["news_flag_rate"] <= FLOORS["real_dev_news_flag_rate_max"], result["news_flag_rate"]
