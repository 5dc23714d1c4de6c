"""The classifier: passages, targets, speakers, the keyword baseline, and the real transformer path on a tiny model."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from monitor.classifier.data import load_examples
from monitor.classifier.evaluate import evaluate
from monitor.classifier.passages import split_passages
from monitor.classifier.registry import load_classifier, load_spec
from monitor.classifier.speakers import find_speaker
from monitor.classifier.targets import Watchlist
from monitor.classifier.train import TrainingArgs, train_model
from monitor.cli import cli
from monitor.errors import ConfigError, DataError

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "classifiers" / "stigma-v1" / "data"


# --- passages --------------------------------------------------------------------------------

def test_passages_cover_paragraphs_with_exact_offsets() -> None:
    text = "Titular\n\nPrimer párrafo largo sobre la comunidad y sus defensores, con detalles.\n" + \
           "Segundo párrafo. " + "Una frase más del texto que sigue y sigue. " * 30
    spans = split_passages(text, max_tokens=40)
    assert spans[0][0] == 0  # the short headline is merged into the first paragraph
    assert all(text[s:e].strip() == text[s:e] and e > s for s, e in spans)
    assert all(len(text[s:e]) // 4 <= 40 for s, e in spans)
    joined = " ".join(text[s:e] for s, e in spans).split()
    assert joined == text.split()  # nothing lost, nothing repeated


def test_passages_of_empty_text() -> None:
    assert split_passages("") == []
    assert split_passages("   \n  ") == []


# --- targets and speakers --------------------------------------------------------------------

def test_watchlist_aliases_accents_and_acronyms() -> None:
    w = Watchlist.load(ROOT / "classifiers" / "watchlist.yaml")
    found = w.find("El Centro de Derechos Humanos Miguel Agustin Pro Juarez y la Comisión Interamericana, "
                   "con activistas y madres buscadoras")
    assert found == ["Centro Prodh", "CIDH", "activistas", "madres buscadoras"]
    assert w.find("la cidh en minúsculas no es el acrónimo") == []
    assert w.find("El relator deportivo narró el partido.") == []


def test_bad_watchlist_is_reported(tmp_path: Path) -> None:
    bad = tmp_path / "w.yaml"
    bad.write_text("targets:\n  - kind: organisation\n  - name: X\n    kind: club\n")
    with pytest.raises(ConfigError) as err:
        Watchlist.load(bad)
    assert "targets[0].name: is required" in str(err.value)
    assert "targets[1].kind: must be one of" in str(err.value)


@pytest.mark.parametrize("text,speaker,official", [
    ('En entrevista, el general retirado Melquiades Rosas aseguró que "todo fue un cuento".',
     "general retirado Melquiades Rosas", True),
    ("Gonzalo Corona, director de Justicia Militar, dijo que los defensores mienten.",
     "Gonzalo Corona, director de Justicia Militar", True),
    ("El presidente de la Coparmex, Juan Pérez, acusó a los ambientalistas de frenar la inversión.",
     "presidente de la Coparmex, Juan Pérez", False),
    ("Governor Ana Ruiz said the activists were paid from abroad.", "Governor Ana Ruiz", True),
    ("Los defensores son un estorbo, y punto.", "", False),
    ('El alcalde Baltazar Ocampo encabezó un mitin en la plaza. "Son agitadores pagados", dijo.',
     "alcalde Baltazar Ocampo", True),
    ("En Tlapa, el director de la organización, Isidoro Ramírez, recordó que acompañan denuncias.",
     "director de la organización, Isidoro Ramírez", False),
])
def test_find_speaker(text: str, speaker: str, official: bool) -> None:
    assert find_speaker(text) == (speaker, official)


# --- keyword baseline ------------------------------------------------------------------------

def test_keyword_baseline_flags_smear_not_counter_speech() -> None:
    clf = load_classifier(ROOT / "classifiers" / "keyword-baseline")
    smear, counter, neutral = clf.classify([
        "El gobernador Raúl Estrada dijo que Tlachinollan es un nido de defensores de delincuentes.",
        "La ONU condenó la campaña de estigmatización que llama a Tlachinollan defensores de delincuentes.",
        "El Banco de México mantuvo su tasa de interés sin cambios por tercera reunión consecutiva.",
    ])
    assert smear.stigmatising and smear.targets[0] == "Tlachinollan" and smear.voice == "attributed"
    assert smear.speaker == "gobernador Raúl Estrada" and smear.speaker_is_official
    assert not counter.stigmatising and counter.voice == "counter"
    assert not neutral.stigmatising and neutral.n_passages == 1


# --- labelled data ---------------------------------------------------------------------------

def test_training_data_meets_the_brief() -> None:
    examples = load_examples(sorted(DATA.glob("*.jsonl")))
    assert len(examples) >= 800
    assert sum(e.lang == "es" for e in examples) / len(examples) >= 0.70
    positives = [e for e in examples if e.stigmatising]
    for cat in load_spec("stigma-v1").categories:
        assert sum(cat in e.categories for e in positives) >= 60, cat
    assert {e.voice for e in positives} == {"authorial", "attributed"}
    assert len(examples) - len(positives) >= len(positives)
    assert sum(e.voice == "counter" for e in examples) >= 200


def test_bad_labels_file_names_each_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "a", "text": "x y z", "stigmatising": 1, "categories": ["slander"], "voice": "authorial"}\n'
                   "not json\n"
                   '{"id": "b", "text": "", "stigmatising": 0}\n')
    with pytest.raises(DataError) as err:
        load_examples([bad])
    msg = str(err.value)
    assert f"{bad}:1: unknown category 'slander'" in msg
    assert f"{bad}:2: invalid JSON" in msg
    assert f"{bad}:3: empty text" in msg


def test_dev_set_never_in_training_data() -> None:
    dev = ROOT.parent / "shared" / "eval" / "dev.jsonl"
    if not dev.is_file():
        pytest.skip("../shared/eval is not present")
    dev_texts = {json.loads(l)["text"].strip() for l in dev.read_text().splitlines() if l.strip()}
    train_texts = {e.text.strip() for e in load_examples(sorted(DATA.glob("*.jsonl")))}
    assert not dev_texts & train_texts


# --- the transformer path on a tiny real model ------------------------------------------------

@pytest.fixture(scope="module")
def tiny_trained(tiny_base_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Fine-tune the tiny encoder on a slice of the real training data (seconds)."""
    spec = load_spec("stigma-v1")
    sample = tmp_path_factory.mktemp("data") / "sample.jsonl"
    lines = []
    for f in sorted(DATA.glob("*.jsonl")):
        lines += f.read_text(encoding="utf-8").splitlines()[:8]
    sample.write_text("\n".join(lines) + "\n", encoding="utf-8")
    out = tmp_path_factory.mktemp("tiny-trained") / "model"
    steps: list[int] = []
    card = train_model(spec, [sample], out, base=str(tiny_base_dir),
                       args=TrainingArgs(epochs=2, batch_size=8, max_length=64, learning_rate=1e-3, seed=1),
                       progress=lambda s, t, loss: steps.append(s))
    assert card["examples"] == len(lines) and steps[-1] == card["steps"] == 2 * -(-len(lines) // 8)
    assert card["data_sha256"] and (out / "card.json").is_file() and (out / "head.safetensors").is_file()
    return out


def test_trained_tiny_model_scores_articles(tiny_trained: Path) -> None:
    clf = load_classifier("stigma-v1", model_dir=tiny_trained)
    assert clf.model_version.startswith("1.0+")
    texts = ["Primer párrafo con bastante texto sobre un tema cualquiera, para que sea un pasaje.\n"
             "Segundo párrafo: los activistas del Centro Prodh son agentes extranjeros, dijo alguien.", "", "x" * 300_000,
             "人権擁護者は外国のエージェントだと知事は述べた。活動家たちは反論した。"]
    results = clf.classify(texts)
    assert len(results) == 4 and results[3].n_passages == 1  # non-Spanish text: scored, no crash
    first = results[0]
    assert first.n_passages == 2 and 0.0 <= first.score <= 1.0
    assert set(first.categories) == set(load_spec("stigma-v1").categories)
    for p in first.passages:
        assert texts[0][p.start:p.end] == p.text
    assert results[1].n_passages == 0 and not results[1].stigmatising
    assert results[2].n_passages > 0  # 300 kB: scored on its first 200k characters, no crash


def test_training_is_deterministic(tiny_base_dir: Path, tiny_trained: Path, tmp_path: Path) -> None:
    from safetensors.torch import load_file

    spec = load_spec("stigma-v1")
    card = json.loads((tiny_trained / "card.json").read_text())
    sample = Path(card["data_files"][0])
    data = tiny_trained.parent.parent / "data0" / sample.name
    if not data.is_file():
        data = next(tiny_trained.parents[1].glob("data*/sample.jsonl"))
    again = tmp_path / "again"
    train_model(spec, [data], again, base=str(tiny_base_dir),
                args=TrainingArgs(epochs=2, batch_size=8, max_length=64, learning_rate=1e-3, seed=1))
    a, b = load_file(str(tiny_trained / "head.safetensors")), load_file(str(again / "head.safetensors"))
    assert all(bool((a[k] == b[k]).all()) for k in a)


def test_score_cli_keeps_every_line(tiny_trained: Path) -> None:
    lines = [
        json.dumps({"id": 1, "text": "Los defensores de derechos humanos son delincuentes disfrazados, dijo el general."}),
        "esto no es json",
        json.dumps({"id": 3, "text": ""}),
        json.dumps({"id": 4}),
        json.dumps({"id": 5, "text": "The governor said the activists are foreign agents paid from abroad."}),
    ]
    result = CliRunner().invoke(cli, ["score", "--model", str(tiny_trained), "-"], input="\n".join(lines) + "\n")
    assert result.exit_code == 0, result.output
    out = [json.loads(l) for l in result.stdout.splitlines()]
    assert [o.get("id") for o in out] == [1, None, 3, None, 5]
    assert out[1]["error"].startswith("line 2:") and out[3]["error"].startswith("line 4:")
    assert out[2]["stigmatising"] is False and out[2]["passages"] == []
    for o in (out[0], out[4]):
        assert set(o) >= {"id", "stigmatising", "score", "categories", "voice", "speaker", "speaker_is_official",
                          "targets", "passages"}


def test_evaluate_reports_all_metrics(tiny_trained: Path) -> None:
    clf = load_classifier("stigma-v1", model_dir=tiny_trained)
    examples = load_examples([DATA / "neg_counter_speech.jsonl"])[:6] + load_examples([DATA / "pos_gendered_oversight.jsonl"])[:6]
    result = evaluate(clf, examples)
    assert result["n"] == 12 and result["counter_speech_n"] == 6
    assert set(result["flag"]) >= {"precision", "recall", "f1"}
    assert 0 <= result["category_macro_f1"] <= 1 and 0 <= result["voice_accuracy"] <= 1
    assert isinstance(result["misclassified"], list)


def test_missing_trained_model_says_how_to_build_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MONITOR_MODELS", str(tmp_path))
    # stigma-v1 is trained locally (stigma-v2 ships its weights and is assembled on first use)
    result = CliRunner().invoke(cli, ["--classifier", "stigma-v1", "score", "-"], input='{"id": 1, "text": "hola"}\n')
    assert result.exit_code == 1
    assert "has no trained weights" in result.output and "monitor model prepare" in result.output


def test_unknown_classifier_lists_available() -> None:
    result = CliRunner().invoke(cli, ["--classifier", "nope", "score", "-"], input="")
    assert result.exit_code == 1
    assert "no classifier definition here (available: keyword-baseline, stigma-v1, stigma-v2)" in result.output


def test_a_passage_scores_the_same_whatever_its_batch(tiny_trained: Path) -> None:
    """Evidence needs one score per text: batch-mates and padding must not move it (why int8 is off)."""
    spec = load_spec("stigma-v1")
    assert spec.quantize in (None, "none")
    clf = load_classifier("stigma-v1", model_dir=tiny_trained)
    texts = ["Los activistas del colectivo son agentes extranjeros pagados desde fuera, dijo el gobernador.",
             "Breve.", "La CIDH presentó su informe anual sobre la situación de las personas defensoras " * 4]
    together = [r["stigmatising"] for r in clf.score_texts(texts)]
    alone = [clf.score_texts([t])[0]["stigmatising"] for t in texts]
    assert together == pytest.approx(alone, abs=1e-5)   # fp32: only rounding-level differences


def test_evaluate_cli_records_metrics_next_to_the_weights(tiny_trained: Path, tmp_path: Path) -> None:
    """The model card's metrics: evaluations.json beside card.json, without changing the model version."""
    before = load_classifier("stigma-v1", model_dir=tiny_trained).model_version
    data = tmp_path / "eval.jsonl"
    rows = [json.loads(l) for l in (DATA / "neg_counter_speech.jsonl").read_text().splitlines()[:4]]
    rows += [json.loads(l) for l in (DATA / "pos_gendered_oversight.jsonl").read_text().splitlines()[:4]]
    data.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    result = CliRunner().invoke(cli, ["--classifier", "stigma-v1", "evaluate", "--data", str(data),
                                      "--model", str(tiny_trained)])
    assert result.exit_code == 0, result.output
    printed = json.loads(result.stdout)
    recorded = json.loads((tiny_trained / "evaluations.json").read_text())
    entry = recorded[hashlib.sha256(data.read_bytes()).hexdigest()]
    assert entry["data"] == "eval.jsonl" and entry["n"] == 8
    assert entry["flag"]["f1"] == printed["flag"]["f1"] and entry["category_macro_f1"] == printed["category_macro_f1"]
    assert entry["thresholds"]["stigmatising"] == load_spec("stigma-v1").threshold("stigmatising", 0)
    assert load_classifier("stigma-v1", model_dir=tiny_trained).model_version == before


def test_a_columns_kicker_and_headline_are_not_quoted_as_the_smear() -> None:
    from monitor.classifier.passages import body_start

    body = ("Las supuestas buscadoras no buscan a nadie: son protagonistas pagadas por organizaciones que lucran "
            "con el dolor ajeno y desestabilizan al gobierno.")
    text = f"Opinión · Desde la Montaña\n¿Buscadoras o protagonistas?\n{body}"
    (start, end), = split_passages(text)
    assert start == 0  # the model still reads the headings with the paragraph ...
    assert text[body_start(text, start, end):end] == body  # ... but only the paragraph is quoted
    exclaimed = "¡Son unos delincuentes!\n" + body  # a short sentence is content, not a heading
    assert body_start(exclaimed, 0, len(exclaimed)) == 0
    assert body_start(body, 0, len(body)) == 0


def test_flagged_passage_offsets_skip_the_kicker_in_a_real_verdict() -> None:
    classifier = load_classifier(str(Path(__file__).resolve().parents[1] / "classifiers" / "keyword-baseline"))
    body = ("Los defensores de derechos humanos de esa organización son delincuentes disfrazados de activistas "
            "que reciben dinero extranjero para desestabilizar al país.")
    text = f"Opinión · Desde la Montaña\n¿Defensores o delincuentes?\n{body}"
    result = classifier.classify([text])[0]
    assert result.stigmatising
    p = result.passages[0]
    assert text[p.start:p.end] == p.text == body
