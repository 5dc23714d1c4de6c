"""Labels on real text are pointers (source, document, offsets, SHA-256), resolved from a local copy.

A tiny stand-in source is written per test (the real sources are not in the repository, and the
unlicensed ones never may be); the repository's own label files are checked against
../shared/data/news when it is present.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from monitor.classifier.data import data_hash
from monitor.classifier.realdata import load_real_labels, passage_sha256
from monitor.classifier.registry import load_spec
from monitor.classifier.train import TrainingArgs, train_model
from monitor.errors import DataError

ROOT = Path(__file__).resolve().parents[1]
SHARED_NEWS = ROOT.parent / "shared" / "data" / "news"
DOC = ("Zacatecas. La comisión estatal presentó su informe anual.\n\n"
       "El alcalde dijo que los periodistas que lo critican son mercenarios pagados por sus enemigos.")


@pytest.fixture()
def sources(tmp_path: Path) -> Path:
    root = tmp_path / "news"
    (root / "ljz").mkdir(parents=True)
    rows = [{"id": "ljz-1", "date": "2013-05-02", "title": "t", "section": "Política", "text": DOC},
            {"id": "ljz-2", "date": "2013-11-20", "title": "u", "section": "Deportes", "text": "Ganó el equipo local."}]
    with gzip.open(root / "ljz" / "articles_2013.jsonl.gz", "wt", encoding="utf-8") as fh:
        fh.write("\n".join(json.dumps(r) for r in rows) + "\n")
    return root


def label(doc: str, start: int, end: int, text: str, **kw) -> dict:
    row = {"source": "ljz", "doc": doc, "start": start, "end": end, "sha256": passage_sha256(text[start:end]),
           "split": "train", "stigmatising": 0, "voice": "none", "categories": []}
    row.update(kw)
    return row


def write(path: Path, rows: list[dict | str]) -> Path:
    path.write_text("\n".join(r if isinstance(r, str) else json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    return path


def test_pointer_labels_resolve_to_the_passage_text(sources: Path, tmp_path: Path) -> None:
    s = DOC.index("El alcalde")
    rows = [label("ljz-1", s, len(DOC), DOC, stigmatising=1, voice="attributed",
                  categories=["corruption_profiteering"], targets=["los periodistas"]),
            label("ljz-2", 0, 21, "Ganó el equipo local.", split="real-dev")]
    f = write(tmp_path / "ljz.jsonl", rows)
    train = load_real_labels([f], sources, splits=("train",))
    assert len(train) == 1
    ex = train[0].example
    assert ex.text == DOC[s:] and ex.stigmatising == 1 and ex.categories == ("corruption_profiteering",)
    assert ex.about_defenders == 1 and train[0].date == "2013-05-02"
    dev = load_real_labels([f], sources, splits=("real-dev",))
    assert [r.doc for r in dev] == ["ljz-2"]


def test_every_bad_label_is_named_with_file_and_line(sources: Path, tmp_path: Path) -> None:
    s = DOC.index("El alcalde")
    good = label("ljz-1", s, len(DOC), DOC)
    stale = dict(good, sha256=passage_sha256("otro texto"))                       # line 1: the source changed
    outside = label("ljz-1", 0, len(DOC) + 50, DOC + "x" * 50)                     # line 2: beyond the document
    unknown_cat = dict(good, stigmatising=1, categories=["slander"], voice="authorial")  # line 3
    missing_doc = dict(good, doc="ljz-999")                                        # line 4
    f = write(tmp_path / "bad.jsonl", [stale, outside, unknown_cat, missing_doc, "{not json"])
    with pytest.raises(DataError) as err:
        load_real_labels([f], sources)
    msg = str(err.value)
    assert f"{f}:1: SHA-256 of ljz/ljz-1[{s}:{len(DOC)}] does not match" in msg
    assert f"{f}:2: offsets 0:{len(DOC) + 50} outside document 'ljz-1'" in msg
    assert f"{f}:3: unknown category 'slander'" in msg
    assert f"{f}:4: document 'ljz-999' not in source 'ljz'" in msg
    assert f"{f}:5: invalid JSON" in msg


def test_a_missing_source_is_named_with_where_it_was_looked_for(tmp_path: Path) -> None:
    f = write(tmp_path / "m.jsonl", [{"source": "mananeras", "doc": "x", "start": 0, "end": 3, "sha256": "0" * 64,
                                      "split": "train", "stigmatising": 0}])
    with pytest.raises(DataError) as err:
        load_real_labels([f], tmp_path / "nowhere")
    assert f"{f}:1: source 'mananeras' not found at {tmp_path / 'nowhere'}" in str(err.value)
    assert "the shipped model works without them" in str(err.value)


def test_training_refuses_a_stale_label_instead_of_skipping_it(sources: Path, tmp_path: Path) -> None:
    spec = load_spec("stigma-v2")
    s = DOC.index("El alcalde")
    f = write(tmp_path / "ljz.jsonl", [dict(label("ljz-1", s, len(DOC), DOC), sha256="f" * 64)])
    invented = write(tmp_path / "inv.jsonl", [
        {"id": "a", "text": "Los defensores son delincuentes.", "stigmatising": 1, "categories": ["criminalisation"],
         "voice": "authorial"},
        {"id": "b", "text": "Llovió en la capital.", "stigmatising": 0}])
    with pytest.raises(DataError, match=r"ljz.jsonl:1: SHA-256"):
        train_model(spec, [invented], tmp_path / "out", args=TrainingArgs(epochs=1), real_files=[f], sources=sources)
    assert not (tmp_path / "out").exists()


def test_shipped_card_records_the_hash_of_the_label_files_in_the_repository() -> None:
    spec = load_spec("stigma-v2")
    card = json.loads((spec.shipped_dir() / "card.json").read_text())
    files = spec.training_files() + spec.real_training_files()
    assert card["data_files"] == [p.name for p in files]
    assert card["data_sha256"] == data_hash(files), "labels changed since the shipped model was trained: retrain"


@pytest.mark.skipif(not SHARED_NEWS.is_dir(), reason="../shared/data/news is not present")
def test_repository_labels_resolve_against_the_real_sources() -> None:
    spec = load_spec("stigma-v2")
    rows = load_real_labels(spec.real_training_files(), SHARED_NEWS, splits=("train", "real-dev"))
    dev = [r for r in rows if r.split == "real-dev"]
    assert len(rows) >= 5000
    assert len(dev) >= 2000 and sum(r.example.stigmatising for r in dev) >= 150
    train_docs = {(r.source, r.doc) for r in rows if r.split == "train"}
    assert not train_docs & {(r.source, r.doc) for r in dev}, "a document is in both splits"
    for source in ("ljz", "mananeras"):  # real-dev is later in time than train
        latest_train = max(r.date for r in rows if r.source == source and r.split == "train")
        assert latest_train < min(r.date for r in dev if r.source == source)


def test_the_desks_decisions_make_a_new_shipped_model_with_before_and_after_figures(
        sources: Path, tmp_path: Path, tiny_base_dir: Path, db_path: Path) -> None:
    """A team retrains on its own reviews: shipped data + their labels -> new weights, new version."""
    import yaml
    from click.testing import CliRunner

    from monitor import store
    from monitor.classifier.shipping import shipped_version
    from monitor.cli import cli
    from monitor.models import Classification, Passage
    from tests.test_shipped_model import ROWS, _shipped_definition

    spec_dir = _shipped_definition(tmp_path, tiny_base_dir)
    s = DOC.index("El alcalde")
    write(spec_dir / "real.jsonl", [
        label("ljz-1", s, len(DOC), DOC, stigmatising=1, voice="attributed", categories=["corruption_profiteering"]),
        label("ljz-2", 0, 21, "Ganó el equipo local.", split="real-dev")])
    definition = yaml.safe_load((spec_dir / "classifier.yaml").read_text())
    definition["training"]["real_data"] = ["real.jsonl"]
    (spec_dir / "classifier.yaml").write_text(yaml.safe_dump(definition, allow_unicode=True))
    invented = write(tmp_path / "invented.jsonl", ROWS)
    runner = CliRunner()
    base = ["--db", str(db_path), "--classifier", str(spec_dir)]
    first = runner.invoke(cli, base + ["train", "--data", str(invented), "--sources", str(sources), "--ship",
                                       "--out", str(tmp_path / "t1")])
    assert first.exit_code == 0, first.output
    assert "(1 real, 0 from reviews)" in first.output
    version_before = shipped_version(load_spec(spec_dir))

    db = store.connect(db_path)
    text = "El columnista escribió que las madres buscadoras lucran con el dolor y cobran por cada fosa."
    db["outlets"].insert({"id": "o", "name": "Diario"})
    db["feeds"].insert({"id": "o/news", "outlet_id": "o", "url": "https://o.example/rss", "section": "news"})
    cid = db["captures"].insert({"article_id": "a" * 64, "url": "u", "final_url": "u", "status": 200,
                                 "headers": "[]", "captured_at": "2026-11-01T00:00:00Z", "sha256": "x", "size": 1,
                                 "body_gz": store.compress(b"x"), "tool_version": "t"}).last_pk
    db["articles"].insert({"id": "a" * 64, "url": "u", "canonical_url": "u", "outlet_id": "o", "feed_id": "o/news",
                           "title": "t", "text": text, "text_sha256": "h", "capture_id": cid,
                           "first_seen_at": "2026-11-01T00:00:00Z", "extracted_at": "2026-11-01T00:00:00Z",
                           "extractor": "t"})
    p = Passage(start=0, end=len(text), text=text, score=0.4, categories={"corruption_profiteering": 0.3},
                voice="authorial")
    store.store_classification(db, "a" * 64, "h", Classification(
        model_id="tiny-shipped", model_version=version_before, stigmatising=False, score=0.4,
        categories={"corruption_profiteering": 0.3}, voice="authorial", speaker="", speaker_is_official=False,
        targets=("madres buscadoras",), passages=(p,), n_passages=1))
    db["reviews"].insert({"article_id": "a" * 64, "reviewer": "ana", "decision": "confirm",
                          "categories": '["corruption_profiteering"]', "voice": "authorial",
                          "created_at": "2026-11-02T00:00:00Z"})
    db.conn.close()

    second = runner.invoke(cli, base + ["train", "--data", str(invented), "--from-db", "--sources", str(sources),
                                        "--ship", "--out", str(tmp_path / "t2")])
    assert second.exit_code == 0, second.output
    assert "1 example(s) from reviews" in second.output and "(1 real, 1 from reviews)" in second.output
    assert "before (the model in use when training started):" in second.output
    assert "after (the new model):" in second.output
    assert second.output.count("| ljz | 1 |") == 2            # real-dev figures, once per model
    assert shipped_version(load_spec(spec_dir)) != version_before  # new weights, new version
