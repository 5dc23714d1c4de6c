"""Backfill: ``backfill SOURCE…`` (archives to Parquet shards) and ``backfill merge DIR`` (shards into the database)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from .main import Context, cli, pass_ctx


class _BackfillGroup(click.Group):
    """``backfill SOURCE…`` runs the backfill; ``backfill merge DIR`` merges (the only subcommand)."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] not in ("-h", "--help"):
            args = ["run", *args]
        return super().parse_args(ctx, args)


@cli.group(cls=_BackfillGroup)
def backfill() -> None:
    """Classify web archives (WARC, JSON lines) with the crawl's stages, then merge them into the database.

    \b
    monitor backfill SOURCE… [--engine local|ray] [--workers N] [--out DIR]
    monitor backfill merge DIR
    See `monitor backfill run --help` and docs/scale.md.

    \b
    Example:
      monitor backfill archives/2019/ 'cc-news/*.warc.gz' --engine local --workers 2 --out backfill/
      monitor --db monitor.db backfill merge backfill/
    """


@backfill.command("run")
@click.argument("sources", nargs=-1, required=True)
@click.option("--engine", type=click.Choice(["local", "ray"]), default="local", show_default=True,
              help="local: a process pool on this machine (no Ray); ray: Ray Data (pip install '.[scale]').")
@click.option("--address", help="Ray cluster address (ray://HOST:10001 or auto); default: start Ray here.")
@click.option("--workers", type=int, default=0, help="Processes (local) or classifier actors (ray); 0 = one per core.")
@click.option("--gpus-per-worker", type=float, default=0.0, show_default=True,
              help="Ray: GPUs per classifier actor (used when CUDA is there).")
@click.option("--out", "out_dir", default="backfill", show_default=True, type=click.Path(file_okay=False),
              help="Folder of the Parquet shards (one per input shard).")
@click.option("--model-dir", type=click.Path(exists=True, file_okay=False), help="Classifier weights folder override.")
@click.option("--host", "hosts", multiple=True,
              help="Keep only records of this host and its subdomains (repeatable), e.g. jornada.com.mx.")
@click.option("--outlet-hosts", is_flag=True, help="Keep only records of the hosts of the outlets in --feeds.")
@click.option("--redo", is_flag=True, help="Process every shard again (default: skip shards whose output is current).")
@click.option("--silent", is_flag=True, help="No progress output.")
@pass_ctx
def backfill_run(obj: Context, sources: tuple[str, ...], engine: str, address: str | None, workers: int,
                 gpus_per_worker: float, out_dir: str, hosts: tuple[str, ...], outlet_hosts: bool, model_dir: str | None,
                 redo: bool, silent: bool) -> None:
    """Extract, dedup-key and classify every HTML response of SOURCE… (WARC/WARC.gz files, folders, globs,
    or JSON lines of {url, text, published}) into Parquet shards under --out, one per input file.

    Rerunning replaces a shard's output only when its input or the classifier changed (or with
    --redo); a killed run leaves no half shard. Bad records (truncated gzip member, non-HTML,
    undecodable, empty) are counted and logged with file and offset. Then `backfill merge`.

    \b
    Example:
      monitor backfill monitor.db.warc/ --out backfill/ --workers 2
      monitor --classifier keyword-baseline backfill 'crawl-*.warc.gz' --engine ray --address auto --out backfill/
      monitor --feeds feeds.yaml backfill 'CC-NEWS-2019*.warc.gz' --outlet-hosts --out backfill/
    """
    from ..backfill.engines import run_backfill
    from ..backfill.sources import expand_sources

    shards = expand_sources(list(sources))
    if outlet_hosts:
        hosts = hosts + _outlet_hosts(obj.config())

    def report(summary: Any) -> None:
        if not silent:
            click.echo(f"\r{summary.progress_line()}   ", err=True, nl=not sys.stderr.isatty())

    summary = run_backfill(shards, Path(out_dir), obj.classifier_name, engine, workers, address, gpus_per_worker,
                           model_dir, redo, report, tuple(hosts))
    if not silent and sys.stderr.isatty():
        click.echo("", err=True)
    click.echo(summary.line())
    click.echo(f"shards in {out_dir}; next: monitor --db {obj.db_path} backfill merge {out_dir}")


def _outlet_hosts(config: Any) -> tuple[str, ...]:
    """The hosts of every outlet's homepage and feeds (``www.`` dropped, so subdomains match)."""
    from urllib.parse import urlsplit

    hosts = {(urlsplit(u).hostname or "").removeprefix("www.") for o in config.outlets
             for u in [o.homepage, *(f.url for f in o.feeds)] if u}
    return tuple(sorted(h for h in hosts if h))


@backfill.command("merge")
@click.argument("folder", type=click.Path(exists=True, file_okay=False))
@click.option("--silent", is_flag=True, help="No progress output.")
@pass_ctx
def backfill_merge(obj: Context, folder: str, silent: bool) -> None:
    """Load the Parquet shards of FOLDER into the database: captures with their archive provenance
    (WARC file, offset, WARC-Payload-Digest, WARC-Date), articles, verdicts; then campaigns and alerts.

    Idempotent: records already stored are skipped, so a rerun adds nothing and an interrupted
    merge can simply be run again. Outlets are matched by URL against --feeds when that file exists.

    \b
    Example:
      monitor --db monitor.db --feeds feeds.yaml backfill merge backfill/
    """
    from ..backfill.merge import merge
    from ..classifier.registry import load_spec
    from ..classifier.targets import Watchlist

    config = obj.config() if Path(obj.feeds_path).is_file() else None
    spec = load_spec(obj.classifier_name)
    generic = ({t.name for t in Watchlist.load(spec.watchlist).targets if t.kind == "generic"}
               if spec.watchlist else set())

    def report(summary: Any) -> None:
        if not silent:
            click.echo(f"\rmerged {summary.rows} rows", err=True, nl=not sys.stderr.isatty())

    summary = merge(obj.db(), Path(folder), config, obj.alerting(), generic, report)
    if not silent and sys.stderr.isatty():
        click.echo("", err=True)
    click.echo(summary.line())
