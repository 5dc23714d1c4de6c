"""Backfill: archives through the crawl's stages give the crawl's verdicts; merge is idempotent and keeps provenance."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from monitor import store
from monitor.cli import cli
from tests.backfill_archive import KEYWORD, crawl_demo, crawled_pages, write_warc

ROOT = Path(__file__).resolve().parents[1]
COUNTED = ("captures", "articles", "classifications", "passages", "warc_records", "custody", "failures")


@pytest.fixture(scope="module")
def archive(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The demo site crawled (keyword baseline), and a WARC of its pages plus bad records, written with warcio."""
    folder = tmp_path_factory.mktemp("backfill")
    crawl_db, feeds = crawl_demo(folder)
    pages = crawled_pages(crawl_db)
    assert len(pages) >= 30
    warc = write_warc(folder / "demo-pages.warc.gz", pages, extras=True)
    return {"folder": folder, "crawl_db": crawl_db, "feeds": feeds, "pages": pages, "warc": warc}


def run_cli(*args: str, db: Path | None = None, feeds: Path | None = None) -> Any:
    opts = ["--classifier", KEYWORD] + (["--db", str(db)] if db else []) + (["--feeds", str(feeds)] if feeds else [])
    return CliRunner().invoke(cli, [*opts, *args], catch_exceptions=False)


def verdicts(db_path: Path) -> dict[str, tuple[str, float, list[tuple[int, int, str, float]]]]:
    """URL -> (article text, score to 4 decimals, flagged passages) of every classified article."""
    db = store.connect(db_path)
    out = {}
    for row in db.query("SELECT a.url, a.text, c.id, c.score FROM articles a JOIN latest_classifications c "
                        "ON c.article_id = a.id"):
        passages = [(p["start"], p["end"], p["text"], round(p["score"], 4)) for p in
                    db.query('SELECT start, "end", text, score FROM passages WHERE classification_id = ? '
                             "ORDER BY start, id", [row["id"]])]
        out[row["url"]] = (row["text"], round(row["score"], 4), passages)
    db.close()
    return out


def counts(db_path: Path) -> dict[str, int]:
    db = store.connect(db_path)
    result = {t: db.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in COUNTED}
    db.close()
    return result


@pytest.fixture(scope="module")
def local_run(archive: dict[str, Any]) -> dict[str, Any]:
    """``monitor backfill --engine local --workers 2`` then ``backfill merge`` into a fresh database."""
    out, db = archive["folder"] / "out-local", archive["folder"] / "local.db"
    result = run_cli("backfill", str(archive["warc"]), "--engine", "local", "--workers", "2", "--out", str(out),
                     "--silent")
    assert result.exit_code == 0, result.output
    merged = run_cli("backfill", "merge", str(out), db=db, feeds=archive["feeds"])
    assert merged.exit_code == 0, merged.output
    return {"out": out, "db": db, "output": result.output, "merge_output": merged.output}


def test_local_backfill_gives_the_crawls_verdicts(archive: dict[str, Any], local_run: dict[str, Any]) -> None:
    crawl = verdicts(archive["crawl_db"])
    backfilled = verdicts(local_run["db"])
    assert len(crawl) >= 30 and sum(bool(v[2]) for v in crawl.values()) >= 10
    assert backfilled == crawl   # same texts, same scores to 4 decimals, same flagged passages
    # bad records are counted by kind, named with file and offset, and never stop the run
    assert "bad records: extract 1, not_html 1, status 1, truncated 1" in local_run["output"]
    db = store.connect(local_run["db"])
    failures = [r["message"] for r in db.query("SELECT message FROM failures WHERE stage = 'backfill'")]
    assert len(failures) == 4 and all(m.startswith("demo-pages.warc.gz@") for m in failures)
    # outlets matched by URL from feeds.yaml (an archive has no feed: sections come from URL and byline only)
    crawl_db = store.connect(archive["crawl_db"])
    outlets = {r["url"]: r["outlet_id"] for r in crawl_db.query("SELECT url, outlet_id FROM articles")}
    assert {r["url"]: r["outlet_id"] for r in db.query("SELECT url, outlet_id FROM articles")} == outlets


def test_provenance_is_the_archive_record(archive: dict[str, Any], local_run: dict[str, Any]) -> None:
    from warcio.archiveiterator import ArchiveIterator

    index = {}
    stopped: Exception | None = None
    with open(archive["warc"], "rb") as f:
        it = ArchiveIterator(f)
        try:
            for record in it:
                if record.rec_type == "response":
                    uri = record.rec_headers.get_header("WARC-Target-URI")
                    digest = record.rec_headers.get_header("WARC-Payload-Digest")
                    date = record.rec_headers.get_header("WARC-Date")
                    record.raw_stream.read()
                    index[uri] = (it.get_record_offset(), it.get_record_length(), digest, date)
        except Exception as e:   # warcio stops at the truncated member; the page after it is checked by re-reading below
            stopped = e
    assert stopped is not None, "the archive's truncated gzip member must stop a plain warcio reader"
    last = archive["pages"][-1]["final_url"]
    assert last not in index
    db0 = store.connect(local_run["db"])
    offset, length = db0.execute("SELECT record_offset, record_length FROM warc_records w JOIN captures c "
                                 "ON c.id = w.capture_id WHERE c.final_url = ?", [last]).fetchone()
    with open(archive["warc"], "rb") as f:
        f.seek(offset)
        record = next(iter(ArchiveIterator(io.BytesIO(f.read(length)))))
        record.raw_stream.read()
        index[last] = (offset, length, record.rec_headers.get_header("WARC-Payload-Digest"),
                       record.rec_headers.get_header("WARC-Date"))
    db = store.connect(local_run["db"])
    rows = list(db.query("SELECT c.final_url, c.captured_at, c.sha256, w.warc_dir, w.warc_file, w.record_offset, "
                         "w.record_length, w.payload_digest FROM captures c JOIN warc_records w ON w.capture_id = c.id"))
    assert len(rows) == len(archive["pages"])
    bodies = {p["final_url"]: p for p in archive["pages"]}
    import hashlib

    for r in rows:
        offset, length, digest, date = index[r["final_url"]]
        assert (r["warc_dir"], r["warc_file"]) == (str(archive["warc"].parent), archive["warc"].name)
        assert (r["record_offset"], r["record_length"], r["payload_digest"], r["captured_at"]) == \
            (offset, length, digest, date)
        assert digest.startswith("sha1:") and r["sha256"] == hashlib.sha256(bodies[r["final_url"]]["body"]).hexdigest()
    custody = db.execute("SELECT count(*) FROM custody WHERE action = 'capture' AND details LIKE '%demo-pages.warc.gz@%'")
    assert custody.fetchone()[0] == len(rows)
    # verify-store reads every backfilled capture back from the archive's own record (SHA-1 digests there)
    from monitor.evidence.storecheck import verify_store

    report = verify_store(db)
    assert report.ok, report.failures[:5]
    assert report.warc_records == len(rows)


def test_merge_twice_adds_nothing(archive: dict[str, Any], local_run: dict[str, Any]) -> None:
    before = counts(local_run["db"])
    again = run_cli("backfill", "merge", str(local_run["out"]), db=local_run["db"], feeds=archive["feeds"])
    assert again.exit_code == 0, again.output
    assert f"already stored {len(archive['pages'])}" in again.output and "new captures 0" in again.output
    assert counts(local_run["db"]) == before


def test_rerun_skips_done_shards_and_redo_replaces_only_that_output(archive: dict[str, Any],
                                                                    local_run: dict[str, Any]) -> None:
    shard = next(local_run["out"].glob("*.parquet"))
    mtime = shard.stat().st_mtime_ns
    again = run_cli("backfill", str(archive["warc"]), "--workers", "1", "--out", str(local_run["out"]), "--silent")
    assert again.exit_code == 0 and "(1 already done), 0 records" in again.output
    assert shard.stat().st_mtime_ns == mtime


def test_dossier_of_backfilled_items_verifies_and_a_flipped_byte_is_named(local_run: dict[str, Any],
                                                                        tmp_path: Path) -> None:
    out = tmp_path / "prodh.zip"
    exported = run_cli("export", "dossier", "--target", "Centro Prodh", "--by", "abogada", "--out", str(out),
                       db=local_run["db"])
    assert exported.exit_code == 0, exported.output
    checked = run_cli("verify", str(out))
    assert checked.exit_code == 0, checked.output
    items = json.loads(zipfile.ZipFile(out).read("items.json"))["items"]
    captures = [c for item in items for c in item["captures"]]
    assert captures and all(c["warc"] and c["warc"]["source_file"] == "demo-pages.warc.gz" for c in captures)
    assert f"{len(captures)} captures, {len(captures)} WARC records" in checked.output
    folder = tmp_path / "unzipped"
    zipfile.ZipFile(out).extractall(folder)
    victim = captures[0]["body_file"]
    data = bytearray((folder / victim).read_bytes())
    data[len(data) // 2] ^= 0x01
    (folder / victim).write_bytes(bytes(data))
    failed = run_cli("verify", str(folder))
    assert failed.exit_code == 1 and f"FAILED {victim}: not the bytes captured" in failed.output
    # a flipped byte in the backfilled WARC record itself is named too
    warc_file = captures[1]["warc"]["file"]
    (folder / victim).write_bytes(bytes(data[:len(data) // 2]) + bytes([data[len(data) // 2] ^ 0x01]) +
                                  bytes(data[len(data) // 2 + 1:]))
    import gzip

    record = bytearray(gzip.decompress((folder / warc_file).read_bytes()))
    record[-10] ^= 0x01
    (folder / warc_file).write_bytes(gzip.compress(bytes(record)))
    failed = run_cli("verify", str(folder))
    assert failed.exit_code == 1 and f"FAILED {warc_file}:" in failed.output


def test_missing_and_corrupt_sources_are_named(tmp_path: Path) -> None:
    missing = run_cli("backfill", str(tmp_path / "nowhere.warc.gz"), "--out", str(tmp_path / "out"))
    assert missing.exit_code == 1 and f"{tmp_path / 'nowhere.warc.gz'}: no such file or folder" in missing.output
    corrupt = tmp_path / "broken.warc.gz"
    corrupt.write_bytes(b"this is not a WARC file at all\n" * 20)
    failed = run_cli("backfill", str(corrupt), "--out", str(tmp_path / "out"))
    assert failed.exit_code == 1 and f"{corrupt}: not a readable WARC file" in failed.output
    empty = tmp_path / "empty"
    empty.mkdir()
    assert "folder holds no .warc" in run_cli("backfill", str(empty)).output
    assert "no backfill shard" in run_cli("backfill", "merge", str(empty), db=tmp_path / "x.db").output


def test_text_only_json_lines_are_classified_and_merged(tmp_path: Path) -> None:
    lines = [{"url": "https://diario.example/2019/prodh.html", "published": "2019-05-02",
              "title": "Columna", "text": "Los abogados del Centro Prodh son defensores de delincuentes y agentes "
                                          "extranjeros que buscan desestabilizar al país con cada informe."},
             {"url": "https://diario.example/2019/clima.html", "published": "2019-05-03",
              "text": "El servicio meteorológico pronosticó lluvias fuertes en el sur del país durante la semana."}]
    source = tmp_path / "old.jsonl"
    source.write_text("\n".join(json.dumps(x, ensure_ascii=False) for x in lines) + "\nnot json\n", encoding="utf-8")
    result = run_cli("backfill", str(source), "--workers", "1", "--out", str(tmp_path / "out"), "--silent")
    assert result.exit_code == 0 and "2 articles" not in result.output and "bad records: bad_json 1" in result.output
    db_path = tmp_path / "text.db"
    for _ in range(2):
        merged = run_cli("backfill", "merge", str(tmp_path / "out"), db=db_path)
        assert merged.exit_code == 0, merged.output
    db = store.connect(db_path)
    rows = list(db.query("SELECT a.url, a.published, c.stigmatising FROM articles a JOIN classifications c "
                         "ON c.article_id = a.id ORDER BY a.url"))
    assert [(r["url"], r["published"], r["stigmatising"]) for r in rows] == [
        ("https://diario.example/2019/clima.html", "2019-05-03", 0),
        ("https://diario.example/2019/prodh.html", "2019-05-02", 1)]


def _backfill_command(out: Path, *sources: Path, block_ray: bool = True) -> list[str]:
    prelude = "import sys; sys.modules['ray'] = None; " if block_ray else ""   # prove the local engine needs no Ray
    return [sys.executable, "-c", prelude + "from monitor.cli import cli; cli()", "--classifier", KEYWORD,
            "backfill", *map(str, sources), "--engine", "local", "--workers", "1", "--out", str(out), "--silent"]


def test_killed_backfill_rerun_has_every_record_once(archive: dict[str, Any], tmp_path: Path) -> None:
    pages = archive["pages"]
    shards = [write_warc(tmp_path / f"part-{i}.warc.gz", pages[i::6]) for i in range(6)]
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(_backfill_command(out, *shards), env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None and not list(out.glob("*.parquet")):
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    assert proc.returncode == -signal.SIGKILL, "the backfill finished before it could be killed"
    done_before = {p.name for p in out.glob("*.parquet")}
    assert 1 <= len(done_before) < len(shards)
    rerun = subprocess.run(_backfill_command(out, *shards), env=env, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    assert f"({len(done_before)} already done)" in rerun.stdout
    assert not list(out.glob("*.tmp"))
    import pyarrow.parquet as pq

    assert sum(pq.read_metadata(p).num_rows for p in out.glob("*.parquet")) == len(pages)
    db = tmp_path / "killed.db"
    merged = run_cli("backfill", "merge", str(out), db=db)
    assert merged.exit_code == 0, merged.output
    assert counts(db)["captures"] == len(pages)
    assert set(verdicts(db)) == set(verdicts(archive["crawl_db"]))


@pytest.mark.ray
def test_ray_backfill_gives_the_same_shards_and_verdicts(archive: dict[str, Any], local_run: dict[str, Any]) -> None:
    pytest.importorskip("ray")
    out, db = archive["folder"] / "out-ray", archive["folder"] / "ray.db"
    result = run_cli("backfill", str(archive["warc"]), "--engine", "ray", "--workers", "1", "--out", str(out),
                     "--silent")
    assert result.exit_code == 0, result.output
    assert "bad records: extract 1, not_html 1, status 1, truncated 1" in result.output
    import pyarrow.parquet as pq

    local = pq.read_table(next(local_run["out"].glob("*.parquet"))).to_pylist()
    ray_rows = pq.read_table(next(out.glob("*.parquet"))).to_pylist()
    assert ray_rows == local   # the same rows, in file order
    merged = run_cli("backfill", "merge", str(out), db=db, feeds=archive["feeds"])
    assert merged.exit_code == 0, merged.output
    assert verdicts(db) == verdicts(archive["crawl_db"])


def test_host_filter_keeps_only_those_hosts(archive: dict[str, Any], tmp_path: Path) -> None:
    from monitor.backfill.sources import ArchiveRecord, read_shard

    kept = [r for r in read_shard(archive["warc"], ("demo.invalid",)) if isinstance(r, ArchiveRecord)]
    assert sorted(r.url for r in kept) == ["http://demo.invalid/empty.html", "http://demo.invalid/feed.xml",
                                           "http://demo.invalid/gone.html"]
    # --outlet-hosts: the hosts of feeds.yaml's outlets (the demo site's loopback host) keep every page
    result = run_cli("backfill", str(archive["warc"]), "--outlet-hosts", "--workers", "1", "--out", str(tmp_path),
                     "--silent", feeds=archive["feeds"])
    assert result.exit_code == 0, result.output
    assert f"{len(archive['pages']) + 1} records" in result.output and "articles 36" in result.output


def test_two_captures_of_one_page_with_a_smear_edited_in_become_a_classified_edit(tmp_path: Path) -> None:
    """An archive's later capture with another text is an edit (article_versions + its own verdict), as a re-check."""
    from tests.pages import article_html, story_text

    clean = story_text(5)
    smear = ("La organización Tlachinollan y sus supuestos defensores de derechos humanos son delincuentes "
             "disfrazados de activistas que reciben dinero extranjero para desestabilizar al país.")
    url = "https://diario.example/2019/reunion.html"
    headers = [["Content-Type", "text/html; charset=utf-8"]]

    def page(paragraphs: list[str], at: str) -> dict[str, Any]:
        return {"final_url": url, "status": 200, "headers": headers, "captured_at": at,
                "body": article_html("Reunión en la montaña", paragraphs).encode("utf-8")}

    warc = write_warc(tmp_path / "two.warc.gz", [page(clean, "2019-05-01T10:00:00Z"),
                                                 page(clean[:2] + [smear] + clean[2:], "2019-05-03T10:00:00Z"),
                                                 page(clean, "2019-04-28T10:00:00Z")])   # older than both: a capture only
    out, db_path = tmp_path / "out", tmp_path / "two.db"
    assert run_cli("backfill", str(warc), "--workers", "1", "--out", str(out), "--silent").exit_code == 0
    for _ in range(2):   # idempotent: the second merge adds nothing
        merged = run_cli("backfill", "merge", str(out), db=db_path)
        assert merged.exit_code == 0, merged.output
    db = store.connect(db_path)
    assert db.execute("SELECT count(*) FROM articles").fetchone()[0] == 1
    aid = db.execute("SELECT id FROM articles").fetchone()[0]
    versions = store.text_versions(db, aid)
    assert [(v["at"][:10], v["classification"]["stigmatising"]) for v in versions] == [
        ("2019-05-01", 0), ("2019-05-03", 1)]
    assert [c["kind"] for c in store.smear_changes(versions)] == ["added"]
    assert db.execute("SELECT count(*) FROM captures").fetchone()[0] == 3
    assert db.execute("SELECT stigmatising, version_id FROM latest_classifications").fetchone()[0] == 1
    assert "edits 1" in merged.output or "edits 0" in merged.output   # the second merge reports none
    from monitor.evidence.storecheck import verify_store

    assert verify_store(db).ok
