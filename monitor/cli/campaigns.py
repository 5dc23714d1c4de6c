"""Campaigns and alerts: ``campaigns`` and ``alerts`` commands."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from .main import Context, cli, pass_ctx


# --- campaigns and alerts --------------------------------------------------------------------

def _generic_targets(obj: Context) -> set[str]:
    """Generic watchlist targets ("defensores", "ONG") of the classifier definition, without loading a model."""
    from ..classifier.registry import load_spec
    from ..classifier.targets import Watchlist

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
    from .. import campaigns as detection
    from .. import store
    from ..alerts import rules
    from ..fetch import utc_now

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
    from .. import store

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
    from ..alerts.deliver import deliver_pending, queue_digest

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

    from ..alerts.deliver import deliver_pending, queue_digest
    from ..alerts.digest import build_digest

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
