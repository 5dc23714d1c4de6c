"""The shipped model: cached-bottom training, export of the trained top, assembly, stable versions and scores."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
import yaml

from monitor.classifier.registry import load_classifier, load_encoder, load_spec, load_tokenizer
from monitor.classifier.shipping import assemble, export, shipped_version
from monitor.classifier.split_encoder import forward_bottom, forward_top
from monitor.classifier.train import TrainingArgs, train_model
from monitor.errors import ModelError

ROOT = Path(__file__).resolve().parents[1]
ROWS = [
    {"id": "p1", "text": "El gobernador dijo que los defensores de derechos humanos son delincuentes disfrazados.",
     "stigmatising": 1, "categories": ["criminalisation"], "voice": "attributed"},
    {"id": "p2", "text": "Las ONG viven del dinero extranjero y traicionan a la patria, escribió el columnista.",
     "stigmatising": 1, "categories": ["disloyalty_foreign"], "voice": "authorial"},
    {"id": "n1", "text": "La CIDH condenó la campaña que acusa a los defensores de proteger delincuentes.",
     "stigmatising": 0, "voice": "counter"},
    {"id": "n2", "text": "El Banco de México mantuvo su tasa de interés sin cambios este jueves.",
     "stigmatising": 0, "voice": "none"},
]
ROWS = [dict(r, id=f"{r['id']}-{i}") for i in range(3) for r in ROWS]


def test_bottom_then_top_equals_the_whole_encoder(tiny_base_dir: Path) -> None:
    encoder, tok = load_encoder(tiny_base_dir).eval(), load_tokenizer(tiny_base_dir)
    enc = tok(["los defensores denunciaron amenazas", "hola"], padding=True, return_tensors="pt")
    with torch.no_grad():
        full = encoder(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"]).last_hidden_state
        split = forward_top(encoder, forward_bottom(encoder, enc["input_ids"], enc["attention_mask"], 1),
                            enc["attention_mask"], 1)
    mask = enc["attention_mask"].bool()
    assert torch.allclose(full[mask], split[mask], atol=1e-6)


def _shipped_definition(tmp_path: Path, base: Path) -> Path:
    """A copy of stigma-v2's definition that ships weights on top of the tiny base."""
    spec_dir = tmp_path / "defs" / "tiny-shipped"
    spec_dir.mkdir(parents=True)
    data = yaml.safe_load((ROOT / "classifiers" / "stigma-v2" / "classifier.yaml").read_text())
    data.update(name="tiny-shipped", base_model=str(base), model="shipped", max_length=64, watchlist=None)
    data["training"] = {"freeze_layers": 1, "epochs": 2, "batch_size": 4, "max_length": 64, "learning_rate": 1e-3}
    data["passages"] = {"max_tokens": 60, "min_chars": 20}
    (spec_dir / "classifier.yaml").write_text(yaml.safe_dump(data, allow_unicode=True))
    return spec_dir


def test_trained_top_is_exported_and_assembled_into_the_same_model(tiny_base_dir: Path, tmp_path: Path) -> None:
    spec_dir = _shipped_definition(tmp_path, tiny_base_dir)
    spec = load_spec(spec_dir)
    data = tmp_path / "rows.jsonl"
    data.write_text("\n".join(json.dumps(r) for r in ROWS) + "\n")
    trained = tmp_path / "trained"
    card = train_model(spec, [data], trained, args=TrainingArgs.from_spec(spec), real_files=[])
    assert card["training_args"]["cache_frozen"] and card["steps"] == 6
    # the bottom layer was frozen: it is NOT shipped, it comes back from the base at assembly
    shipped = export(trained, spec.shipped_dir(), first_trained_layer=1)
    from safetensors.torch import load_file

    keys = load_file(str(spec.shipped_dir() / "encoder_top.safetensors")).keys()
    assert keys and all(".layer.1." in k for k in keys), sorted(keys)
    assert shipped["bytes"] < 200_000
    one = assemble(spec, tiny_base_dir, tmp_path / "install-1")
    two = assemble(spec, tiny_base_dir, tmp_path / "install-2")
    texts = [r["text"] for r in ROWS[:4]]
    full = load_classifier(spec_dir, model_dir=trained).score_texts(texts)
    a = load_classifier(spec_dir, model_dir=one)
    b = load_classifier(spec_dir, model_dir=two)
    assert a.model_version == b.model_version == shipped_version(spec)
    sa, sb = a.score_texts(texts), b.score_texts(texts)
    assert [x["stigmatising"] for x in sa] == [x["stigmatising"] for x in sb]  # two installs, same scores
    # float16 storage of the top layers moves scores by rounding only
    assert max(abs(x["stigmatising"] - y["stigmatising"]) for x, y in zip(full, sa)) < 1e-2


def test_version_follows_weights_and_definition_not_time(tiny_base_dir: Path, tmp_path: Path) -> None:
    spec_dir = _shipped_definition(tmp_path, tiny_base_dir)
    spec = load_spec(spec_dir)
    with pytest.raises(ModelError, match="shipped model incomplete"):
        shipped_version(spec)
    data = tmp_path / "rows.jsonl"
    data.write_text("\n".join(json.dumps(r) for r in ROWS) + "\n")
    train_model(spec, [data], tmp_path / "t", args=TrainingArgs.from_spec(spec), real_files=[])
    export(tmp_path / "t", spec.shipped_dir(), 1)
    before = shipped_version(spec)
    assert shipped_version(load_spec(spec_dir)) == before
    definition = yaml.safe_load((spec_dir / "classifier.yaml").read_text())
    definition["thresholds"]["stigmatising"] = round(definition["thresholds"]["stigmatising"] - 0.05, 2)
    (spec_dir / "classifier.yaml").write_text(yaml.safe_dump(definition, allow_unicode=True))
    assert shipped_version(load_spec(spec_dir)) != before  # a threshold is part of the version
    shutil.rmtree(spec.shipped_dir())


@pytest.mark.e5
def test_the_shipped_stigma_v2_gives_pinned_scores(models_home: Path) -> None:
    """Every install gives the same text the same score: pinned to 4 decimals (fp32, any batch)."""
    clf = load_classifier("stigma-v2")
    pinned = json.loads((ROOT / "classifiers" / "stigma-v2" / "pinned_scores.json").read_text())
    assert clf.model_version == pinned["version"]
    scores = clf.score_texts([p["text"] for p in pinned["passages"]])
    for p, s in zip(pinned["passages"], scores):  # the same to 4 decimals (a last-digit rounding tie allowed)
        assert abs(s["stigmatising"] - p["stigmatising"]) <= 1e-4, (p["text"], s["stigmatising"])
    alone = clf.score_texts([pinned["passages"][0]["text"]])[0]
    assert abs(alone["stigmatising"] - pinned["passages"][0]["stigmatising"]) <= 1e-4
