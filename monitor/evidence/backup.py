"""``monitor backup`` and ``monitor restore``: the database, the accounts and the WARC files, hashed, restorable.

A backup is a folder:

    manifest.json      tool, created_at, schema, row counts, every file with size and SHA-256
    MANIFEST.sha256    the same hashes in ``sha256sum -c`` format
    database.sqlite    the monitor database (SQLite online backup API: one consistent snapshot)
    accounts.sqlite    the review desk's accounts (same way), when there are any
    warc/...           the WARC files the snapshot references (``warc-2/`` ... for further folders)

Consistency while ``monitor run``/``crawl`` writes: the database is copied first, as one
snapshot. WARC files only grow, and every record is written and fsync'ed before the database row
that points at it (``monitor.evidence.warc``), so each WARC file is copied up to the end of the last
record that the *snapshot* references: bytes that can no longer change and that hold every record
the copied database knows. Records appended later (and orphans from a crash) belong to the next
backup. The manifest hashes exactly the bytes copied.

The manifest is written last (to a temporary name, then renamed): a folder without
``manifest.json`` is an incomplete backup and ``restore`` refuses it.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import __version__, store
from ..errors import MonitorError
from ..fetch import utc_now
from .warc import locate

FORMAT = "smear-monitor-backup/1"
MANIFEST = "manifest.json"
SUMS = "MANIFEST.sha256"
DATABASE = "database.sqlite"
ACCOUNTS = "accounts.sqlite"
CHUNK = 1 << 20

Progress = Callable[[str, int, int], None]


class BackupError(MonitorError):
    """A backup cannot be written, or a backup folder is damaged, incomplete or not a backup."""


class RestoreTargetError(MonitorError):
    """The restore target already holds a database, accounts or WARC files."""


@dataclass
class BackupResult:
    """What ``backup`` wrote."""

    dest: Path
    files: int
    size: int
    manifest_sha256: str
    counts: dict[str, int]
    problems: list[str] = field(default_factory=list)   # WARC files that could not be copied whole
    notes: list[str] = field(default_factory=list)


@dataclass
class RestoreResult:
    """What ``restore`` wrote."""

    db_path: Path
    files: int
    size: int
    warc_folders: dict[str, str]        # backup folder -> restored folder
    counts: dict[str, int]


def _copy_hashed(src: Path, dest: Path, length: int | None = None) -> tuple[int, str]:
    """Copy ``src`` (its first ``length`` bytes) to ``dest``, fsync'ed; return the size and SHA-256 copied."""
    digest = hashlib.sha256()
    copied = 0
    with open(src, "rb") as fin, open(dest, "xb") as fout:
        while length is None or copied < length:
            chunk = fin.read(CHUNK if length is None else min(CHUNK, length - copied))
            if not chunk:
                break
            fout.write(chunk)
            digest.update(chunk)
            copied += len(chunk)
        fout.flush()
        os.fsync(fout.fileno())
    return copied, digest.hexdigest()


def file_sha256(path: Path) -> str:
    """SHA-256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _is_empty_dir(path: Path) -> bool:
    return path.is_dir() and not any(path.iterdir())


def backup(db_path: str | Path, dest: str | Path, actor: str = store.TOOL, progress: Progress | None = None) -> BackupResult:
    """Back up the database, its accounts and the WARC files it references into the new folder ``dest``.

    Raises:
        BackupError: no database, ``dest`` exists and is not an empty folder, or a copy failed
            (what was written into ``dest`` is removed again).
    """
    db_file = Path(db_path).resolve()
    dest = Path(dest)
    if not db_file.is_file():
        raise BackupError(f"no database at {db_file}: nothing to back up (give the store with --db)")
    if dest.exists() and not _is_empty_dir(dest):
        raise BackupError(f"{dest}: already exists and is not an empty folder; a backup never overwrites "
                          "anything: give a new folder (e.g. backups/$(date -u +%Y%m%dT%H%M%SZ))")
    created_dest = not dest.exists()
    dest.mkdir(parents=True, exist_ok=True)
    try:
        result = _backup(db_file, dest.resolve(), progress or (lambda *a: None))
    except BaseException:
        _clear(dest, remove_dir=created_dest)
        raise
    # The backup is complete; logging it must not undo it (a writer may hold the database a while).
    try:
        live = store.connect(db_file, migrate=False)
        try:
            store.record_backup(live, actor, result.manifest_sha256,
                                {"dest": str(result.dest), "files": result.files, "counts": result.counts,
                                 "problems": len(result.problems)})
        finally:
            live.close()
    except sqlite3.Error as e:
        result.notes.append(f"{db_file}: the backup is complete but could not be logged in the custody log ({e})")
    return result


def _clear(folder: Path, remove_dir: bool) -> None:
    """Remove what a failed backup or restore wrote into a folder that was new or empty before."""
    if remove_dir:
        shutil.rmtree(folder, ignore_errors=True)
    else:
        for child in folder.iterdir():
            shutil.rmtree(child) if child.is_dir() and not child.is_symlink() else child.unlink()


def _backup(db_file: Path, dest: Path, progress: Progress) -> BackupResult:
    files: list[dict[str, Any]] = []
    problems: list[str] = []
    try:
        store.backup_sqlite(db_file, dest / DATABASE)
    except Exception as e:   # sqlite3.Error, OSError: name the file
        raise BackupError(f"{db_file}: could not be backed up ({type(e).__name__}: {e})") from e
    files.append({"path": DATABASE, "role": "database", "source": str(db_file),
                  "size": (dest / DATABASE).stat().st_size, "sha256": file_sha256(dest / DATABASE)})
    accounts = store.accounts_path(db_file)
    if accounts.is_file():
        try:
            store.backup_sqlite(accounts, dest / ACCOUNTS)
        except Exception as e:
            raise BackupError(f"{accounts}: could not be backed up ({type(e).__name__}: {e})") from e
        files.append({"path": ACCOUNTS, "role": "accounts", "source": str(accounts),
                      "size": (dest / ACCOUNTS).stat().st_size, "sha256": file_sha256(dest / ACCOUNTS)})

    snapshot = store.open_readonly(dest / DATABASE)   # read-only: the copy's bytes stay those hashed
    try:
        migrations = store.applied_migrations(snapshot)
        counts = store.backup_counts(snapshot)
        spans = store.warc_spans(snapshot)
        relocations = store.warc_relocations(snapshot)
    finally:
        snapshot.close()

    # One backup folder per source folder; recorded folders that now live in the same place share it
    # (a restored store appends to its restored files under its own folder name: one file, two names).
    folders: dict[Path, dict[str, Any]] = {}
    wanted: dict[Path, dict[str, Any]] = {}
    for span in spans:
        source = _find(span, db_file, relocations) or Path(span["warc_dir"]) / span["warc_file"]
        entry = folders.get(source.parent)
        if entry is None:
            entry = folders[source.parent] = {"path": "warc" if not folders else f"warc-{len(folders) + 1}",
                                              "source": str(source.parent), "recorded_dirs": []}
        if span["warc_dir"] not in entry["recorded_dirs"]:
            entry["recorded_dirs"].append(span["warc_dir"])
        have = wanted.setdefault(source, {"path": f"{entry['path']}/{source.name}", "end": 0, "records": 0})
        have["end"] = max(have["end"], span["end_offset"])
        have["records"] += span["records"]
    for entry in folders.values():
        (dest / entry["path"]).mkdir()
    for done, (source, want) in enumerate(wanted.items(), 1):
        if not source.is_file():
            problems.append(f"{source}: WARC file missing ({want['records']} record(s) reference it); "
                            "not in the backup")
            continue
        size, sha = _copy_hashed(source, dest / want["path"], want["end"])
        if size < want["end"]:
            problems.append(f"{source}: WARC file is {size} bytes but records reference {want['end']}; "
                            "copied what there is")
        files.append({"path": want["path"], "role": "warc", "source": str(source), "size": size, "sha256": sha,
                      "records": want["records"], "source_size": source.stat().st_size})
        progress("backup: WARC files", done, len(wanted))

    manifest = {
        "format": FORMAT,
        "tool": store.TOOL,
        "tool_version": __version__,
        "created_at": utc_now(),
        "source": {"database": str(db_file), "accounts": str(accounts) if accounts.is_file() else None},
        "schema": {"version": len(migrations), "migrations": migrations},
        "counts": counts,
        "accounts": accounts.is_file(),
        "warc_folders": list(folders.values()),
        "warc_consistency": "each WARC file is copied up to the end of the last record the database snapshot "
                            "references; 'size' and 'sha256' are of the bytes copied",
        "files": files,
        "problems": problems,
    }
    (dest / SUMS).write_text("".join(f"{f['sha256']}  {f['path']}\n" for f in files), encoding="utf-8")
    body = json.dumps(manifest, indent=2, ensure_ascii=False, sort_keys=False).encode("utf-8") + b"\n"
    tmp = dest / (MANIFEST + ".tmp")
    with open(tmp, "xb") as f:
        f.write(body)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, dest / MANIFEST)
    _fsync_dir(dest)
    manifest_sha = hashlib.sha256(body).hexdigest()
    return BackupResult(dest, len(files), sum(f["size"] for f in files), manifest_sha, counts, problems)


def _find(span: dict[str, Any], db_file: Path, relocations: dict[str, str]) -> Path | None:
    path = locate(span["warc_dir"], span["warc_file"], db_file, relocations)
    return path.resolve() if path else None


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# --- reading and checking a backup ----------------------------------------------------------------

def read_manifest(src: str | Path) -> tuple[dict[str, Any], str]:
    """The manifest of a backup folder and its SHA-256.

    Raises:
        BackupError: not a folder, no manifest (an incomplete backup or not one), unreadable manifest.
    """
    src = Path(src)
    if not src.is_dir():
        raise BackupError(f"{src}: not a backup folder (a backup is the folder `monitor backup` wrote)")
    path = src / MANIFEST
    if not path.is_file():
        raise BackupError(f"{path}: missing; {src} is not a backup or an incomplete one (the manifest is "
                          "written last)")
    try:
        body = path.read_bytes()
        manifest = json.loads(body)
    except (OSError, ValueError) as e:
        raise BackupError(f"{path}: unreadable ({e})") from e
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT or not isinstance(manifest.get("files"), list):
        raise BackupError(f"{path}: not a {FORMAT} manifest")
    return manifest, hashlib.sha256(body).hexdigest()


def check_backup(src: str | Path, progress: Progress | None = None) -> tuple[dict[str, Any], str, list[str]]:
    """Check every file of a backup against its manifest; return the manifest, its hash and each problem.

    A problem names the file and says what is wrong: missing, unreadable, size or SHA-256
    (expected vs actual), a file outside the backup.
    """
    src = Path(src)
    manifest, manifest_sha = read_manifest(src)
    problems: list[str] = []
    folders = manifest.get("warc_folders") or []
    if not isinstance(folders, list) or not all(
            isinstance(f, dict) and isinstance(f.get("path"), str) and "/" not in f["path"]
            and isinstance(f.get("recorded_dirs"), list) for f in folders):
        problems.append(f"{MANIFEST}: warc_folders entries need a folder name (path) and recorded_dirs")
        folders = []
    places = {DATABASE, ACCOUNTS} | {f["path"] for f in folders}
    files = manifest["files"]
    for done, entry in enumerate(files, 1):
        try:
            name, size, expected = str(entry["path"]), int(entry["size"]), str(entry["sha256"])
        except (KeyError, TypeError, ValueError):
            problems.append(f"{MANIFEST}: file entry {done} lacks path, size or sha256")
            continue
        path = src / name
        if Path(name).is_absolute() or ".." in Path(name).parts or (
                name not in (DATABASE, ACCOUNTS) and name.partition("/")[0] not in places - {DATABASE, ACCOUNTS}):
            problems.append(f"{name}: not a place a backup holds files (database, accounts or a listed WARC folder)")
            continue
        if not path.is_file():
            problems.append(f"{name}: missing")
            continue
        try:
            actual = file_sha256(path)
        except OSError as e:
            problems.append(f"{name}: unreadable ({e})")
            continue
        actual_size = path.stat().st_size
        if actual != expected:
            problems.append(f"{name}: SHA-256 mismatch (manifest {expected}, file {actual}"
                            f"{'' if actual_size == size else f'; size {size} expected, {actual_size} found'})")
        if progress:
            progress("restore: checking files", done, len(files))
    if not any(f.get("role") == "database" for f in files if isinstance(f, dict)):
        problems.append(f"{MANIFEST}: lists no database file")
    return manifest, manifest_sha, problems


# --- restoring ----------------------------------------------------------------------------------

def restore_targets(db_path: Path, manifest: dict[str, Any], warc_dir: Path | None = None) -> dict[str, Path]:
    """Where each part of the backup goes: database, accounts and each WARC folder (backup path -> place)."""
    base = (warc_dir or db_path.with_name(db_path.name + ".warc")).resolve()
    targets: dict[str, Path] = {DATABASE: db_path, ACCOUNTS: store.accounts_path(db_path)}
    for n, folder in enumerate(manifest.get("warc_folders") or [], 1):
        targets[folder["path"]] = base if n == 1 else base.with_name(f"{base.name}-{n}")
    return targets


def _occupied(targets: dict[str, Path]) -> list[str]:
    """Parts of the restore target that already hold something (a restore never mixes two stores)."""
    found = []
    for key, place in targets.items():
        if key in (DATABASE, ACCOUNTS):
            for path in (place, place.with_name(place.name + "-wal"), place.with_name(place.name + "-shm")):
                if path.exists():
                    found.append(f"{path} exists")
        elif place.exists() and not _is_empty_dir(place):
            found.append(f"{place} exists and is not an empty folder")
    return found


def restore(src: str | Path, db_path: str | Path, warc_dir: str | Path | None = None, actor: str = store.TOOL,
            progress: Progress | None = None) -> RestoreResult:
    """Restore a backup so that the store lives at ``db_path`` (accounts beside it, WARC files in ``<db>.warc/``
    or ``warc_dir``). Every file is checked against the manifest first; nothing is written if any fails.

    Raises:
        BackupError: the backup is incomplete, damaged or made by a newer monitor (each problem named).
        RestoreTargetError: something already exists where the store would go (each path named).
    """
    src = Path(src)
    db_file = Path(db_path).resolve()
    manifest, manifest_sha, problems = check_backup(src, progress)
    if problems:
        raise BackupError(f"{src} is damaged; nothing restored. {len(problems)} problem(s):\n"
                          + "\n".join(f"  {p}" for p in problems))
    migrations = (manifest.get("schema") or {}).get("migrations") or []
    known = store.known_migrations()
    if migrations != known[:len(migrations)]:
        raise BackupError(f"{src}: made by a monitor whose database migrations differ from this version's "
                          f"({len(migrations)} in the backup, {len(known)} here): restore it with that version")
    targets = restore_targets(db_file, manifest, Path(warc_dir) if warc_dir else None)
    occupied = _occupied(targets)
    if occupied:
        raise RestoreTargetError("the restore target is not empty; a restore never overwrites or mixes stores. "
                                 "Choose a new --db (and --warc-dir) or move these away:\n"
                                 + "\n".join(f"  {p}" for p in occupied))
    created: list[Path] = []
    try:
        return _restore(src, manifest, manifest_sha, db_file, targets, created, actor, progress or (lambda *a: None))
    except BaseException:
        for path in reversed(created):
            shutil.rmtree(path, ignore_errors=True) if path.is_dir() else path.unlink(missing_ok=True)
        raise


def _restore(src: Path, manifest: dict[str, Any], manifest_sha: str, db_file: Path, targets: dict[str, Path],
             created: list[Path], actor: str, progress: Progress) -> RestoreResult:
    db_file.parent.mkdir(parents=True, exist_ok=True)
    folder_of = {f["path"]: f for f in manifest.get("warc_folders") or []}
    for key, place in targets.items():
        if key in folder_of:
            if not place.exists():
                place.mkdir(parents=True)
                created.append(place)
    files = manifest["files"]
    size = 0
    for done, entry in enumerate(files, 1):
        name = entry["path"]
        top, _, rest = name.partition("/")
        if name in (DATABASE, ACCOUNTS):
            dest = targets[name]
            partial = dest.with_name(f".{dest.name}.restoring")
            created.append(partial)
            copied, sha = _copy_hashed(src / name, partial)
            os.replace(partial, dest)
            created.append(dest)
        else:
            dest = targets[top] / rest
            created.append(dest)
            copied, sha = _copy_hashed(src / name, dest)
        if sha != entry["sha256"]:
            raise BackupError(f"{name}: changed while restoring (manifest {entry['sha256']}, copied {sha}); "
                              "nothing restored")
        size += copied
        progress("restore: copying files", done, len(files))
    relocations = {recorded: str(targets[f["path"]]) for f in folder_of.values() for recorded in f["recorded_dirs"]}
    db = store.connect(db_file)          # WAL back on; a backup from an older version is migrated here
    for extra in (db_file.with_name(db_file.name + "-wal"), db_file.with_name(db_file.name + "-shm")):
        created.append(extra)
    try:
        counts = store.backup_counts(db)
        expected = manifest.get("counts") or {}
        differ = [f"{t}: {expected[t]} in the manifest, {counts.get(t)} restored" for t in expected
                  if counts.get(t) != expected[t]]
        if differ:
            raise BackupError(f"{db_file}: the restored database does not hold what the manifest counted: "
                              + "; ".join(differ))
        store.record_restore(db, actor, manifest_sha, relocations,
                             {"from": str(src.resolve()), "created_at": manifest.get("created_at"),
                              "source_database": (manifest.get("source") or {}).get("database"),
                              "warc_folders": relocations})
    finally:
        db.close()
    if targets[ACCOUNTS].exists():
        store.connect_accounts(db_file).close()   # WAL back on for the accounts too
    return RestoreResult(db_file, len(files), size, {k: str(v) for k, v in targets.items() if k in folder_of}, counts)
