"""Serving and status: ``serve`` (Datasette and the desk), ``user``, ``status`` and ``demo``."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from .main import Context, _progress, cli, pass_ctx


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
    from ..serve import serve as run_server

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

    from .. import store
    from ..review.accounts import hash_password

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
    from .. import store

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
    from .. import store

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
    from .. import store
    from ..review.accounts import new_token

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
    from .. import store
    from ..runner import next_runs
    from ..schedules import load_schedules

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
    from ..config import parse_config
    from ..demo.site import DemoServer, feeds_yaml
    from ..errors import ModelError
    from ..pipeline import crawl_once

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

            from .. import store
            from ..review.accounts import hash_password

            password = secrets.token_urlsafe(9)
            store.add_user(store.connect_accounts(obj.db_path), "demo", "admin", hash_password(password))
            click.echo(f"log in at http://127.0.0.1:{port}/-/monitor/login as demo / {password}", err=True)
            ctx = click.get_current_context()
            ctx.invoke(serve, host="127.0.0.1", port=port, public=False)


