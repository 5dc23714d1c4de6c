"""Backups: ``backup``, ``restore`` and ``verify-store``."""

from __future__ import annotations

from pathlib import Path

import click

from .evidence import _os_user
from .main import Context, _progress, cli, pass_ctx


# --- backups: copy the store, restore it elsewhere, check it ------------------------------------

@cli.command()
@click.argument("dest", type=click.Path(file_okay=False))
@click.option("--by", "actor", help="Who makes the backup, for the custody log (default: the OS user name).")
@click.option("--silent", is_flag=True, help="No progress output.")
@pass_ctx
def backup(obj: Context, dest: str, actor: str | None, silent: bool) -> None:
    """Back up the database, the accounts and the WARC files into the new folder DEST, with a manifest.

    Safe while `monitor run` or `crawl` writes: the databases are copied with SQLite's online
    backup API (one consistent snapshot) and each WARC file up to the last record that snapshot
    references. DEST must not exist or be empty. Exits 1 if a referenced WARC file is missing
    (the rest is still backed up). Restore with `monitor restore`; see docs/evidence.md.

    \b
    Example:
      monitor --db monitor.db backup /mnt/backups/monitor-$(date -u +%Y%m%dT%H%M%SZ)
    """
    from ..evidence.backup import backup as run_backup

    result = run_backup(obj.db_path, dest, actor or _os_user(),
                        progress=_progress(not silent and obj.verbosity >= 0))
    for note in result.notes:
        click.echo(f"note: {note}", err=True)
    for problem in result.problems:
        click.echo(f"PROBLEM {problem}", err=True)
    counts = ", ".join(f"{result.counts.get(t, 0)} {t}" for t in ("articles", "captures", "warc_records", "reviews"))
    click.echo(f"{result.dest}: {result.files} files, {result.size:,} bytes ({counts}); "
               f"manifest SHA-256 {result.manifest_sha256}")
    if result.problems:
        raise SystemExit(1)


@cli.command()
@click.argument("src", type=click.Path())
@click.option("--warc-dir", type=click.Path(file_okay=False),
              help="Where the WARC files go (default: <db>.warc/ beside --db; use your feeds.yaml warc_dir if set).")
@click.option("--by", "actor", help="Who restores, for the custody log (default: the OS user name).")
@click.option("--silent", is_flag=True, help="No progress output.")
@pass_ctx
def restore(obj: Context, src: str, warc_dir: str | None, actor: str | None, silent: bool) -> None:
    """Restore the backup folder SRC as the store given by --db (which must not exist yet).

    Every file is checked against the manifest first (a damaged file is named, with the
    expected and actual SHA-256, and nothing is restored); the database, accounts and WARC
    files are then copied so that the restored store reads its own WARC files. Run
    `monitor verify-store` on it afterwards.

    \b
    Example:
      monitor --db /srv/monitor/monitor.db restore /mnt/backups/monitor-20260301T020000Z
      monitor --db /srv/monitor/monitor.db verify-store
    """
    from ..evidence.backup import restore as run_restore

    result = run_restore(src, obj.db_path, warc_dir, actor or _os_user(),
                         progress=_progress(not silent and obj.verbosity >= 0))
    folders = "; ".join(f"{k}/ -> {v}" for k, v in result.warc_folders.items()) or "no WARC files"
    click.echo(f"restored {result.files} files, {result.size:,} bytes into {result.db_path} ({folders}); "
               f"{result.counts.get('articles', 0)} articles, {result.counts.get('captures', 0)} captures. "
               f"Check it: monitor --db {result.db_path} verify-store")


@cli.command("verify-store")
@click.option("--silent", is_flag=True, help="No progress output.")
@pass_ctx
def verify_store(obj: Context, silent: bool) -> None:
    """Check every capture against its WARC record and the chain of custody; exit 1 naming each failure.

    For each capture: the stored body's SHA-256, the WARC record at the recorded offset (record
    id, payload SHA-256 and digest), its custody row; then every text, verdict, review and
    timestamp against the custody log. Progress goes to stderr, failures to stderr as
    `FAILED capture 12: WARC FILE offset N: payload SHA-256 expected X, actual Y`.

    \b
    Example:
      monitor --db monitor.db verify-store
    """
    from .. import store
    from ..errors import MonitorError
    from ..evidence.storecheck import verify_store as run_check

    if not Path(obj.db_path).is_file():
        raise MonitorError(f"no database at {obj.db_path} (give the store with --db)")
    db = store.connect(obj.db_path, migrate=False)     # a check changes nothing, not even the schema
    try:
        applied, known = store.applied_migrations(db), store.known_migrations()
        if applied != known[:len(applied)]:
            raise MonitorError(f"{obj.db_path}: made by another version of the monitor (its migrations differ); "
                               "check it with that version")
        if len(applied) < 3:
            raise MonitorError(f"{obj.db_path}: older than the evidence tables (migration 3); open it once with "
                               "any other monitor command to migrate it, then check it")
        report = run_check(db, progress=_progress(not silent and obj.verbosity >= 0))
    finally:
        db.close()
    for failure in report.failures:
        click.echo(f"FAILED {failure}", err=True)
    if not report.ok:
        click.echo(f"{len(report.failures)} failure(s); {report.line()}", err=True)
        raise SystemExit(1)
    click.echo(f"OK: {report.line()}")
