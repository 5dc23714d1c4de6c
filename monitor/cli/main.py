"""The ``monitor`` command line: one click group, thin subcommands, errors turned into messages here only."""

from __future__ import annotations

import logging
import sys
import time
from typing import Any

import click

from .. import __version__
from ..errors import MonitorError

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
        from .. import store

        return store.connect(self.db_path)

    def config(self):  # type: ignore[no-untyped-def]
        """Load and validate feeds.yaml."""
        from ..config import load_config

        return load_config(self.feeds_path)

    def classifier(self, name: str | None = None, model_dir: str | None = None):  # type: ignore[no-untyped-def]
        """Load a classifier through the registry."""
        from ..classifier.registry import load_classifier

        return load_classifier(name or self.classifier_name, model_dir)

    def alerting(self):  # type: ignore[no-untyped-def]
        """Load and validate alerts.yaml ($MONITOR_ALERTS, else beside feeds.yaml); defaults when absent."""
        from ..alerts.config import default_path, load_alerting

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


