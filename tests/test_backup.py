"""Backups that restore: ``backup`` during a running crawl, ``restore`` elsewhere, ``verify-store`` on the copy."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import re
import shutil
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from monitor import store
from monitor.cli import cli
from monitor.classifier.registry import load_classifier
from monitor.config import parse_config
from monitor.pipeline import crawl_once

ROOT = Path(__file__).resolve().parents[1]
KEYWORD = ROOT / "classifiers" / "keyword-baseline"
PASSWORD = "contraseña-de-ana"


def demo_feeds(site, outlets: tuple[str, ...] = (), **defaults: object) -> dict:  # type: ignore[no-untyped-def]
    """The demo site's feeds.yaml (which allows the demo server), optionally limited to some outlets."""
    from monitor.demo.site import feeds_yaml

    data = yaml.safe_load(feeds_yaml(site.base_url))
    data["defaults"].update({"per_host_delay_s": 0, **defaults})
    if outlets:
        data["outlets"] = [o for o in data["outlets"] if o["id"] in outlets]
    return data


def monitor(*args: str, input: str | None = None):  # type: ignore[no-untyped-def]
    return CliRunner().invoke(cli, list(args), input=input)


def seed_store(site, db_file: Path) -> None:  # type: ignore[no-untyped-def]
    """One outlet crawled and classified, a desk account, one review decision."""
    db = store.connect(db_file)
    summary = crawl_once(db, parse_config(demo_feeds(site, ("heraldo-del-sur",)), "demo"), load_classifier(KEYWORD))
    assert summary.flagged >= 2, summary.line()
    result = monitor("--db", str(db_file), "user", "add", "ana", "--role", "reviewer", "--password-stdin",
                     input=PASSWORD + "\n")
    assert result.exit_code == 0, result.output
    first = store.queue(db)[0]
    store.record_review(db, first["article_id"], "ana", "confirm")
    db.close()


@pytest.fixture(scope="module")
def seeded(demo_site, tmp_path_factory) -> Path:  # type: ignore[no-untyped-def]
    """A small store and a backup of it, shared by the tests that only read them."""
    folder = tmp_path_factory.mktemp("seeded")
    db_file = folder / "monitor.db"
    seed_store(demo_site, db_file)
    result = monitor("--db", str(db_file), "backup", str(folder / "backup"))
    assert result.exit_code == 0, result.output
    return db_file


def restored_copy(seeded: Path, tmp_path: Path, name: str = "restored") -> Path:
    target = tmp_path / name / "monitor.db"
    result = monitor("--db", str(target), "restore", str(seeded.parent / "backup"))
    assert result.exit_code == 0, result.output
    return target


def warc_file(db_file: Path, capture_id: int | None = None) -> tuple[Path, int, int]:
    """The restored WARC file of a capture (default: the first), its record offset and response length."""
    db = store.connect(db_file)
    row = db.execute("SELECT capture_id, warc_file, record_offset, response_length FROM warc_records "
                     + ("WHERE capture_id = ?" if capture_id else "ORDER BY capture_id LIMIT 1"),
                     [capture_id] if capture_id else []).fetchone()
    folder = Path(store.warc_relocations(db).popitem()[1]) if store.warc_relocations(db) else None
    db.close()
    assert folder is not None
    return folder / row[1], row[2], row[3]


def flip_byte(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0xFF
    path.write_bytes(bytes(data))


def desk_queue_ids(db_file: Path) -> list[str]:
    """Article ids the review desk's queue page lists, in order, for the account ``ana`` (logged in via the form)."""
    from monitor.serve import build_datasette
    from tests.test_review_desk import login

    async def go() -> str:
        ds = build_datasette(db_file)
        await ds.invoke_startup()
        cookies = await login(ds, "ana")
        page = await ds.client.get("/-/monitor/queue", cookies=cookies)
        assert page.status_code == 200
        return page.text

    html = asyncio.run(go())
    return list(dict.fromkeys(re.findall(r'/-/monitor/article/([^"?#&/]+)', html)))


# --- the acceptance test ---------------------------------------------------------------

def test_backup_during_a_running_crawl_restores_elsewhere_and_verifies(demo_site, tmp_path) -> None:
    """Back up while `monitor crawl` writes; restore elsewhere; verify-store passes; same desk queue;
    a flipped byte in a restored WARC file is named."""
    db_file = tmp_path / "live" / "monitor.db"
    db_file.parent.mkdir()
    seed_store(demo_site, db_file)
    feeds = tmp_path / "feeds.yaml"
    feeds.write_text(yaml.safe_dump(demo_feeds(demo_site, per_host_delay_s=0.3, concurrency=2)))
    before = store.connect(db_file).execute("SELECT count(*) FROM articles").fetchone()[0]
    cmd = [sys.executable, "-m", "monitor.cli", "--db", str(db_file), "--feeds", str(feeds), "--classifier",
           str(KEYWORD), "crawl", "--once", "--silent"]
    crawl = subprocess.Popen(cmd, env={**os.environ, "PYTHONPATH": str(ROOT)}, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            time.sleep(0.2)
            if store.connect(db_file, migrate=False).execute("SELECT count(*) FROM articles").fetchone()[0] >= before + 3:
                break
        backup = tmp_path / "backups" / "first"
        result = subprocess.run([sys.executable, "-m", "monitor.cli", "--db", str(db_file), "backup", str(backup),
                                 "--silent"], env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True,
                                text=True, timeout=120)
        assert result.returncode == 0, result.stderr
        assert crawl.poll() is None, "the backup must run while the crawl writes"
        out, err = crawl.communicate(timeout=180)
    finally:
        if crawl.poll() is None:
            crawl.kill()
            crawl.wait()
    assert crawl.returncode == 0, err.decode()
    original = store.connect(db_file)
    manifest = json.loads((backup / "manifest.json").read_text())
    assert before + 3 <= manifest["counts"]["articles"] < original.execute("SELECT count(*) FROM articles").fetchone()[0]

    target = tmp_path / "elsewhere" / "store" / "monitor.db"
    result = monitor("--db", str(target), "restore", str(backup))
    assert result.exit_code == 0, result.output
    restored = store.connect(target)
    assert store.backup_counts(restored)["captures"] == manifest["counts"]["captures"]
    assert store.backup_counts(restored)["warc_records"] == manifest["counts"]["warc_records"]
    # the restored store reads its own WARC files, never the original's (which still exist here)
    assert set(store.warc_relocations(restored).values()) == {str((target.parent / "monitor.db.warc").resolve())}
    for store_file in (target, db_file):
        check = monitor("--db", str(store_file), "verify-store", "--silent")
        assert check.exit_code == 0, check.output
        assert check.output.startswith("OK: ")

    # the same queue: the restored verdicts in the original's order, on the restored desk too
    restored_ids = {r[0] for r in restored.execute("SELECT id FROM classifications")}
    expected = [r for r in store.queue(original, limit=1000) if r["classification_id"] in restored_ids]
    assert expected and store.queue(restored, limit=1000) == expected
    assert store.queue(restored, limit=1000, reviewed=True) == [
        r for r in store.queue(original, limit=1000, reviewed=True) if r["classification_id"] in restored_ids]
    desk = desk_queue_ids(target)
    assert desk and desk == [r["article_id"] for r in store.queue(restored)][:len(desk)]

    # a flipped byte in a restored WARC file is named: capture, file, offset, expected hash
    capture_id = restored.execute("SELECT max(capture_id) FROM warc_records").fetchone()[0]
    path, offset, length = warc_file(target, capture_id)
    flip_byte(path, offset + length // 2)
    check = monitor("--db", str(target), "verify-store", "--silent")
    assert check.exit_code == 1
    sha = restored.execute("SELECT sha256 FROM captures WHERE id = ?", [capture_id]).fetchone()[0]
    failures = [line for line in check.output.splitlines() if line.startswith("FAILED")]
    assert len(failures) == 1, check.output
    assert f"capture {capture_id}: WARC {path} offset {offset}: payload SHA-256 expected {sha}, actual" in failures[0]
    # ... while the original, untouched, still verifies
    assert monitor("--db", str(db_file), "verify-store", "--silent").exit_code == 0


# --- backup ----------------------------------------------------------------------------------------

def test_backup_holds_hashed_files_a_manifest_and_a_custody_row(seeded) -> None:
    backup = seeded.parent / "backup"
    manifest = json.loads((backup / "manifest.json").read_text())
    assert manifest["format"] == "smear-monitor-backup/1" and manifest["tool"] == store.TOOL
    assert manifest["schema"]["migrations"] == store.known_migrations()
    db = store.connect(seeded)
    assert manifest["counts"]["captures"] == store.counts(db)["captures"] > 0
    assert manifest["counts"]["reviews"] == 1
    roles = sorted(f["role"] for f in manifest["files"])
    assert roles == ["accounts", "database", "warc"]
    for entry in manifest["files"]:
        data = (backup / entry["path"]).read_bytes()
        assert (len(data), hashlib.sha256(data).hexdigest()) == (entry["size"], entry["sha256"])
    # the WARC copy is the prefix the snapshot references: every record, nothing after the last
    end = db.execute("SELECT max(record_offset + record_length) FROM warc_records").fetchone()[0]
    assert next(f for f in manifest["files"] if f["role"] == "warc")["size"] == end
    if shutil.which("sha256sum"):
        checked = subprocess.run(["sha256sum", "-c", "MANIFEST.sha256"], cwd=backup, capture_output=True, text=True)
        assert checked.returncode == 0, checked.stdout + checked.stderr
    manifest_sha = hashlib.sha256((backup / "manifest.json").read_bytes()).hexdigest()
    logged = db.execute("SELECT actor, details FROM custody WHERE action = 'backup' AND sha256 = ?",
                        [manifest_sha]).fetchone()
    assert logged is not None and json.loads(logged[1])["dest"] == str(backup.resolve())


def test_backup_never_overwrites_and_names_a_missing_database(seeded, tmp_path) -> None:
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "notes.txt").write_text("keep me")
    result = monitor("--db", str(seeded), "backup", str(taken))
    assert result.exit_code == 1 and f"{taken}: already exists and is not an empty folder" in result.output
    assert [p.name for p in taken.iterdir()] == ["notes.txt"]
    result = monitor("--db", str(tmp_path / "nope.db"), "backup", str(tmp_path / "b"))
    assert result.exit_code == 1 and "no database at" in result.output and "nope.db" in result.output
    assert not (tmp_path / "b").exists() and not (tmp_path / "nope.db").exists()
    empty = tmp_path / "empty"          # an existing empty folder (a mounted disk) is fine
    empty.mkdir()
    assert monitor("--db", str(seeded), "backup", str(empty), "--silent").exit_code == 0
    assert (empty / "manifest.json").is_file()


# --- restore -------------------------------------------------------------------------------------

def test_restore_refuses_a_partly_filled_target_and_writes_nothing(seeded, tmp_path) -> None:
    src = str(seeded.parent / "backup")
    for occupied in ("monitor.db", "monitor.db.accounts.sqlite", "monitor.db.warc/old.warc.gz"):
        folder = tmp_path / occupied.replace("/", "_")
        place = folder / occupied
        place.parent.mkdir(parents=True)
        place.write_bytes(b"something")
        result = monitor("--db", str(folder / "monitor.db"), "restore", src)
        assert result.exit_code == 1, result.output
        assert "restore target is not empty" in result.output and f"{place.parent if '/' in occupied else place}" in result.output
        assert sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()) == [occupied]


def test_restore_names_the_damaged_file_and_restores_nothing(seeded, tmp_path) -> None:
    good = seeded.parent / "backup"
    manifest = json.loads((good / "manifest.json").read_text())
    warc = next(f for f in manifest["files"] if f["role"] == "warc")

    def damaged(name: str, damage) -> str:  # type: ignore[no-untyped-def]
        copy = tmp_path / f"backup-{name}"
        shutil.copytree(good, copy)
        damage(copy)
        target = tmp_path / f"target-{name}" / "monitor.db"
        result = monitor("--db", str(target), "restore", str(copy))
        assert result.exit_code == 1
        assert not target.parent.exists() or not any(target.parent.iterdir()), "nothing is restored"
        return result.output

    out = damaged("flip", lambda b: flip_byte(b / warc["path"], 2000))
    actual = hashlib.sha256(
        (tmp_path / "backup-flip" / warc["path"]).read_bytes()).hexdigest()
    assert f"{warc['path']}: SHA-256 mismatch (manifest {warc['sha256']}, file {actual})" in out
    out = damaged("short", lambda b: (b / "database.sqlite").write_bytes((b / "database.sqlite").read_bytes()[:4096]))
    assert "database.sqlite: SHA-256 mismatch" in out and "size" in out
    out = damaged("missing", lambda b: (b / "accounts.sqlite").unlink())
    assert "accounts.sqlite: missing" in out
    out = damaged("manifest", lambda b: (b / "manifest.json").write_text("{not json"))
    assert "manifest.json: unreadable" in out
    out = damaged("incomplete", lambda b: (b / "manifest.json").unlink())
    assert "manifest.json: missing" in out and "incomplete" in out


def test_a_restored_store_can_be_backed_up_and_restored_again(seeded, demo_site, tmp_path) -> None:
    first = restored_copy(seeded, tmp_path, "first")
    # the restored store crawls on: today's restored WARC file grows under the restored folder's name
    summary = crawl_once(store.connect(first), parse_config(demo_feeds(demo_site, ("diario-meridiano",)), "demo"),
                         load_classifier(KEYWORD))
    assert summary.new_captures > 0
    files = store.connect(first).execute("SELECT warc_file, count(DISTINCT warc_dir) FROM warc_records "
                                         "GROUP BY warc_file").fetchall()
    assert any(n == 2 for _, n in files) or len(files) > 1, files   # one file under two folder names (same UTC day)
    result = monitor("--db", str(first), "backup", str(tmp_path / "again"))
    assert result.exit_code == 0, result.output
    second = tmp_path / "second" / "monitor.db"
    assert monitor("--db", str(second), "restore", str(tmp_path / "again")).exit_code == 0
    db = store.connect(second)
    original_dir = store.connect(seeded).execute("SELECT DISTINCT warc_dir FROM warc_records").fetchone()[0]
    restored_dir = str((second.parent / "monitor.db.warc").resolve())
    first_dir = str((first.parent / "monitor.db.warc").resolve())
    assert store.warc_relocations(db) == {original_dir: restored_dir, first_dir: restored_dir}
    check = monitor("--db", str(second), "verify-store", "--silent")
    assert check.exit_code == 0, check.output
    # the restored desk accounts work: ana logs in with her password
    assert desk_queue_ids(second) == [r["article_id"] for r in store.queue(db)][:len(desk_queue_ids(second))]
    restores = db.execute("SELECT count(*) FROM custody WHERE action = 'restore'").fetchone()[0]
    assert restores == 2      # each restore is in the custody log


def test_the_dossier_of_a_restored_store_reads_the_restored_warc(seeded, tmp_path) -> None:
    from monitor.evidence.dossier import _warc_span

    target = restored_copy(seeded, tmp_path)
    db = store.connect(target)
    capture = store.evidence_captures(db, [db.execute("SELECT article_id FROM captures LIMIT 1").fetchone()[0]])[0]
    path, offset, length = warc_file(target, capture["id"])
    flip_byte(path, offset + 10)
    assert _warc_span(db, capture) == path.read_bytes()[offset:offset + capture["record_length"]]


# --- verify-store ----------------------------------------------------------------------------------

def test_verify_store_names_broken_custody_texts_and_database_copies(seeded, tmp_path) -> None:
    target = restored_copy(seeded, tmp_path)
    conn = sqlite3.connect(target)
    for trigger in ("custody_no_update", "custody_no_delete", "captures_no_update"):     # what only a hand with SQLite can do
        conn.execute(f"DROP TRIGGER {trigger}")
    capture_id, article_id = conn.execute("SELECT capture_id, id FROM articles ORDER BY id LIMIT 1").fetchone()
    conn.execute("UPDATE custody SET sha256 = ? WHERE action = 'capture' AND capture_id = ?", ["0" * 64, capture_id])
    conn.execute("UPDATE articles SET text = text || ' (edited by hand)' WHERE id = ?", [article_id])
    import gzip

    other = conn.execute("SELECT max(id), sha256 FROM captures").fetchone()
    conn.execute("UPDATE captures SET body_gz = ? WHERE id = ?", [gzip.compress(b"<html>forged</html>"), other[0]])
    review = conn.execute("SELECT id FROM reviews").fetchone()[0]
    conn.execute("DELETE FROM custody WHERE action = 'review' AND ref_id = ?", [review])
    conn.commit()
    conn.close()
    result = monitor("--db", str(target), "verify-store", "--silent")
    assert result.exit_code == 1
    failures = [line for line in result.output.splitlines() if line.startswith("FAILED")]
    forged = hashlib.sha256(b"<html>forged</html>").hexdigest()
    assert any(f"capture {capture_id}: custody capture row SHA-256 expected" in f and "0" * 64 in f for f in failures)
    assert any(f.startswith(f"FAILED article {article_id} (capture {capture_id}): text SHA-256 expected") for f in failures)
    assert any(f"capture {other[0]}: database copy SHA-256 expected {other[1]}, actual {forged}" in f for f in failures)
    assert any(f"review {review} (article" in f and "no custody review row" in f for f in failures)
    assert len(failures) == 4, failures


def test_verify_store_names_a_missing_warc_file_and_a_missing_database(seeded, tmp_path) -> None:
    target = restored_copy(seeded, tmp_path)
    path, _, _ = warc_file(target)
    path.unlink()
    result = monitor("--db", str(target), "verify-store", "--silent")
    assert result.exit_code == 1
    n = store.connect(target).execute("SELECT count(*) FROM warc_records").fetchone()[0]
    assert result.output.count(f"{path.name} offset") == n and "file missing (looked in" in result.output
    result = monitor("--db", str(tmp_path / "none.db"), "verify-store")
    assert result.exit_code == 1 and "no database at" in result.output and not (tmp_path / "none.db").exists()


def test_verify_store_passes_on_edits_removals_reviews_and_timestamps(make_server, tmp_path) -> None:
    """A store with every kind of evidence row verifies, and still does after a backup and a restore."""
    from tests import evidence_site
    from tests.tsa import TsaServer

    (tmp_path / "tsa").mkdir()
    tsa = TsaServer(tmp_path / "tsa")
    tsa.thread.start()
    try:
        db, _ = evidence_site.build(make_server(), tmp_path / "e.db", tsa_url=tsa.url, tsa_ca_file=str(tsa.ca_file))
    finally:
        tsa.shutdown()
        tsa.server_close()
    counts = store.backup_counts(db)
    assert counts["article_versions"] >= 1 and counts["timestamps"] >= 6 and counts["reviews"] >= 2
    result = monitor("--db", str(tmp_path / "e.db"), "verify-store", "--silent")
    assert result.exit_code == 0, result.output
    texts = counts["articles"] + counts["article_versions"]
    assert (f"{counts['captures']} captures, {counts['warc_records']} WARC records, {texts} texts, "
            f"{counts['classifications']} verdicts, {counts['reviews']} reviews, {counts['timestamps']} timestamps"
            in result.output)
    assert monitor("--db", str(tmp_path / "e.db"), "backup", str(tmp_path / "b"), "--silent").exit_code == 0
    assert monitor("--db", str(tmp_path / "r" / "e.db"), "restore", str(tmp_path / "b"), "--silent").exit_code == 0
    result = monitor("--db", str(tmp_path / "r" / "e.db"), "verify-store", "--silent")
    assert result.exit_code == 0, result.output
