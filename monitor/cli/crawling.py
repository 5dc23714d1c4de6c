"""Crawling commands: ``crawl``, ``feeds discover``, ``recheck`` and the scheduler ``run``."""

from __future__ import annotations

import logging

import click

from .main import Context, LOGGER, _progress, cli, pass_ctx


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
    from ..pipeline import crawl_once
    from ..schedules import Schedule, check_against_config

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
@click.option("--allow-private", "allow_private", multiple=True, metavar="IP[:PORT]|CIDR",
              help="Let discovery reach this non-public address (an internal outlet); repeatable. "
                   "Loopback, private and link-local addresses are refused otherwise.")
@pass_ctx
def feeds_discover(obj: Context, homepage: str, allow_private: tuple[str, ...]) -> None:
    """Propose feed and sitemap entries for an outlet, to paste into feeds.yaml.

    Looks at the homepage's <link rel="alternate"> feeds and feed-like links, robots.txt
    Sitemap: lines and the usual sitemap locations; proposes only those that parse.
    For opinion pages without a feed, add a `kind: html` entry with a `link_pattern` by hand.

    \b
    Example:
      monitor feeds discover https://www.jornada.com.mx/ >> proposals.yaml
      monitor feeds discover http://10.20.0.5/ --allow-private 10.20.0.5
    """
    from ..config import FetchSettings
    from ..discover import discover_sources, format_yaml
    from ..errors import ConfigError, FetchError
    from ..fetch import Fetcher, decode_body
    from ..netguard import parse_allow_entry

    problems = []
    for entry in allow_private:
        try:
            parse_allow_entry(entry)
        except ValueError as e:
            problems.append(f"--allow-private {e}")
    if problems:
        raise ConfigError("command line", problems)
    with Fetcher(FetchSettings(retries=1, per_host_delay_s=0.5, allow_private=allow_private)) as fetcher:
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
@click.option("--no-classify", is_flag=True, help="Record edits without classifying the new versions (nor alerting).")
@pass_ctx
def recheck(obj: Context, days: int, flagged_days: int, limit: int, silent: bool, no_classify: bool) -> None:
    """Re-fetch recent articles: record edits (new capture + diff) and removals (404/410).

    Every edited text is classified like the first one; campaigns and the alert rules
    (smear_added_by_edit, smear_removed ...) then run, as after a crawl.

    \b
    Example:
      monitor --db monitor.db recheck --days 7 --flagged-days 90
    """
    from ..recheck import recheck as run_recheck

    classifier = None if no_classify else obj.classifier()
    alerting = None if no_classify else obj.alerting()
    summary = run_recheck(obj.db(), obj.config(), days, flagged_days, limit,
                          progress=_progress(not silent and obj.verbosity >= 0), classifier=classifier,
                          alerting=alerting)
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
    from ..runner import JsonFormatter, RunnerSettings, run_forever

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
    from ..pipeline import classify_pending

    classifier = obj.classifier()
    summary = classify_pending(obj.db(), classifier, progress=_progress(not silent))
    click.echo(f"classified {summary.classified} article(s) with {classifier.model_id} "
               f"{classifier.model_version}; flagged {summary.flagged}")


