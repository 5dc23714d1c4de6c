"""Backups and restores: online copies of SQLite files, what a backup records, where restored WARC files live."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import sqlite_utils

from .captures import add_custody
from .schema import MIGRATIONS

__all__ = ['applied_migrations',
           'backup_sqlite',
           'backup_counts',
           'known_migrations',
           'open_readonly',
           'record_backup',
           'record_restore',
           'set_warc_relocations',
           'warc_relocations',
           'warc_spans',
           'WARC_RELOCATIONS']


# --- backups and restores ------------------------------------------------------------------------

# monitor_state key of a restored store: {warc_dir as recorded in warc_records: the folder it now is}.
WARC_RELOCATIONS = "warc.relocations"
COUNTED = ("outlets", "feeds", "entries", "runs", "captures", "articles", "article_versions", "classifications",
           "passages", "reviews", "warc_records", "custody", "timestamps", "campaigns", "alerts")


def backup_sqlite(source: str | Path, dest: str | Path) -> None:
    """Copy a SQLite database with the online backup API: one consistent snapshot, writers never blocked.

    The copy is switched to rollback-journal mode so that it is one self-contained file
    (``connect`` puts it back into WAL when the restored store is opened). The source is opened
    read-only; in WAL mode a reader neither blocks nor waits for ``monitor run``/``crawl``.
    """
    src = sqlite3.connect(f"{Path(source).resolve().as_uri()}?mode=ro", uri=True, timeout=30)
    try:
        dst = sqlite3.connect(str(dest))
        try:
            src.backup(dst)          # pages=-1: the whole database in one step, under one read transaction
            dst.execute("PRAGMA journal_mode = DELETE")
            problem = dst.execute("PRAGMA quick_check").fetchone()[0]
            if problem != "ok":
                raise sqlite3.DatabaseError(f"the copy fails SQLite's quick_check: {problem}")
        finally:
            dst.close()
    finally:
        src.close()


def open_readonly(path: str | Path) -> sqlite_utils.Database:
    """Open a database file read-only, changing nothing in it (not even its journal mode)."""
    return sqlite_utils.Database(sqlite3.connect(f"{Path(path).resolve().as_uri()}?mode=ro", uri=True))


def applied_migrations(db: sqlite_utils.Database) -> list[str]:
    """The names of the migrations applied to a database, in order (empty: not a monitor database)."""
    if "_migrations" not in db.table_names():
        return []
    return [row[0] for row in db.execute("SELECT name FROM _migrations ORDER BY version")]


def backup_counts(db: sqlite_utils.Database) -> dict[str, int]:
    """Row counts of the tables a backup is checked against (tables missing in older schemas are left out)."""
    tables = set(db.table_names())
    return {n: db.execute(f"SELECT count(*) FROM {n}").fetchone()[0] for n in COUNTED if n in tables}


def warc_spans(db: sqlite_utils.Database) -> list[dict[str, Any]]:
    """Every WARC file the database references: folder as recorded, file, end of the last record, records."""
    if "warc_records" not in db.table_names():
        return []
    return list(db.query(
        "SELECT warc_dir, warc_file, max(record_offset + record_length) AS end_offset, count(*) AS records "
        "FROM warc_records GROUP BY warc_dir, warc_file ORDER BY warc_dir, warc_file"))


def warc_relocations(db: sqlite_utils.Database) -> dict[str, str]:
    """Where the WARC folders recorded in ``warc_records`` are now, for a restored store (else empty)."""
    if "monitor_state" not in db.table_names():
        return {}
    row = db.execute("SELECT value FROM monitor_state WHERE name = ?", [WARC_RELOCATIONS]).fetchone()
    return json.loads(row[0]) if row else {}


def set_warc_relocations(db: sqlite_utils.Database, relocations: dict[str, str]) -> None:
    """Record where each recorded WARC folder now is (inside the caller's transaction).

    ``warc_records`` is append-only evidence, so the folder it names is never rewritten; readers
    map it through this table instead (see ``monitor.evidence.warc.candidate_folders``).
    """
    db.execute("INSERT INTO monitor_state (name, value) VALUES (?, ?) ON CONFLICT(name) DO UPDATE SET value = "
               "excluded.value", [WARC_RELOCATIONS, json.dumps(relocations, sort_keys=True)])


def record_backup(db: sqlite_utils.Database, actor: str, manifest_sha256: str, details: dict[str, Any]) -> int | None:
    """Log a backup (the manifest's SHA-256, where it went) in the custody log; None if the schema has none."""
    if "custody" not in db.table_names():
        return None
    with db.conn:
        return add_custody(db, "backup", actor, sha256=manifest_sha256, details=details)


def record_restore(db: sqlite_utils.Database, actor: str, manifest_sha256: str, relocations: dict[str, str],
                   details: dict[str, Any]) -> int:
    """In the restored store, in one transaction: where its WARC folders now are, and a custody row."""
    with db.conn:
        set_warc_relocations(db, relocations)
        return add_custody(db, "restore", actor, input_sha256=manifest_sha256, details=details)


def known_migrations() -> list[str]:
    """The migrations this version of the monitor knows, in order."""
    return [name for name, _ in MIGRATIONS]
