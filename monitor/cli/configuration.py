"""``monitor check``: validate feeds.yaml, the schedules and the classifier definition."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

from .main import Context, cli, pass_ctx

if TYPE_CHECKING:
    from ..config import Config


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
    from ..schedules import check_against_config, load_schedules

    from ..classifier.registry import load_spec
    from ..classifier.targets import Watchlist

    config = obj.config()
    spec = load_spec(obj.classifier_name)
    if spec.watchlist:
        Watchlist.load(spec.watchlist)
    feeds = config.enabled_feeds()
    unverified = sum(1 for _, f in feeds if not f.verified)
    click.echo(f"{config.source}: OK: {len(config.outlets)} outlets, {len(feeds)} enabled feeds "
               f"({unverified} unverified); classifier {spec.name} ({spec.kind}) OK")
    _report_addresses(config)
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




def _report_addresses(config: "Config") -> None:
    """Show the non-public addresses allowed, and warn of feeds whose own address the crawler will refuse."""
    from ..netguard import AddressPolicy, RefusedAddress

    if config.fetch.allow_private:
        click.echo(f"allow_private: the crawler may reach {', '.join(config.fetch.allow_private)}")
    policy = AddressPolicy.from_entries(config.fetch.allow_private)
    for _outlet, feed in config.enabled_feeds():
        try:
            policy.check_url(feed.url, resolve=False)   # IP literals only: `check` makes no DNS queries
        except RefusedAddress as e:
            click.echo(f"warning: feed {feed.id} ({feed.url}) will be refused: {e.reason}")
