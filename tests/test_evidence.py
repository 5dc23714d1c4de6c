"""Preservation: append-only captures and custody, WARC copies of every capture, custody rows, RFC 3161 timestamps."""

from __future__ import annotations

import hashlib
import io
import re
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from warcio.archiveiterator import ArchiveIterator

from monitor import store
from monitor.config import parse_config
from monitor.errors import ConfigError
from monitor.evidence import timestamps
from monitor.evidence.warc import WarcStore, digest_label_hex, responses
from monitor.models import Fetched
from monitor.recheck import recheck
from tests import evidence_site
from tests.tsa import TsaServer

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def crawled(make_server, db_path: Path):  # type: ignore[no-untyped-def]
    site = make_server()
    db, config = evidence_site.build(site, db_path)
    return site, db, config


@pytest.fixture(scope="module")
def tsa(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    server = TsaServer(tmp_path_factory.mktemp("tsa"))
    server.thread.start()
    yield server
    server.shutdown()
    server.server_close()


def test_evidence_tables_refuse_update_and_delete(crawled) -> None:
    _site, db, _config = crawled
    capture = dict(next(db.query("SELECT id, article_id, sha256 FROM captures")))
    store.record_timestamp(db, capture, "http://tsa.test/", "2026-01-01T00:00:00Z", None, b"token", None)
    for table, column in (("captures", "sha256"), ("custody", "actor"), ("warc_records", "warc_file"),
                          ("timestamps", "token")):
        before = db.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
        assert before > 0
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            db.execute(f"UPDATE {table} SET {column} = 'x'")
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            db.execute(f"DELETE FROM {table}")
        db.conn.rollback()
        assert db.execute(f"SELECT count(*) FROM {table}").fetchone()[0] == before


def test_no_code_path_updates_or_deletes_evidence() -> None:
    """Belt and braces with the triggers: no SQL in the package modifies an append-only table."""
    pattern = re.compile(r"\b(UPDATE|DELETE\s+FROM|REPLACE\s+INTO|INSERT\s+OR\s+REPLACE\s+INTO)\s+(\w+)", re.I)
    table_api = re.compile(r"""\[["'](\w+)["']\]\.(update|upsert|delete|delete_where|transform|drop)\b""")
    offenders = [f"{path.relative_to(ROOT)}: {m.group(0)}"
                 for path in (ROOT / "monitor").rglob("*.py")
                 for regex, group in ((pattern, 2), (table_api, 1))
                 for m in regex.finditer(path.read_text(encoding="utf-8"))
                 if m.group(group).lower() in store.APPEND_ONLY]
    assert offenders == []


def test_warc_files_hold_every_capture_with_matching_sha256_digest(crawled, db_path: Path) -> None:
    _site, db, _config = crawled
    captures = {r["id"]: r for r in db.query("SELECT c.id, c.sha256, c.final_url, w.warc_file, w.record_offset, "
                                             "w.payload_digest FROM captures c LEFT JOIN warc_records w ON w.capture_id = c.id")}
    assert len(captures) == 6 and all(c["warc_file"] for c in captures.values())  # 5 pages + the edited one
    folder = db_path.with_name(db_path.name + ".warc")
    files = sorted(folder.glob("*.warc.gz"))
    assert files
    found: dict[str, list[str]] = {}
    for path in files:
        with open(path, "rb") as stream:
            for uri, digest, payload_sha in responses(stream):
                assert digest_label_hex(digest) == payload_sha    # the header states the payload's SHA-256
                found.setdefault(uri, []).append(payload_sha)
        checked = subprocess.run([str(Path(sys.executable).with_name("warcio")), "check", "-v", str(path)],
                                 capture_output=True, text=True)
        assert checked.returncode == 0, checked.stdout
    for c in captures.values():
        assert c["sha256"] in found[c["final_url"]]
        assert digest_label_hex(c["payload_digest"]) == c["sha256"]
        with open(folder / c["warc_file"], "rb") as stream:   # the recorded offset is that capture's response
            stream.seek(c["record_offset"])
            record = next(iter(ArchiveIterator(stream)))
            assert record.rec_type == "response" and record.rec_headers.get_header("WARC-Target-URI") == c["final_url"]
            assert store.capture_body(db, c["id"]) == record.raw_stream.read()
    request_uris = [r.rec_headers.get_header("WARC-Target-URI") for p in files
                    for r in ArchiveIterator(open(p, "rb")) if r.rec_type == "request"]
    assert sorted(request_uris) == sorted(c["final_url"] for c in captures.values())


def test_custody_log_covers_every_step_with_hashes(crawled) -> None:
    _site, db, _config = crawled
    ids = evidence_site.article_ids(db)
    rows = list(db.query("SELECT * FROM custody ORDER BY id"))
    actions = [r["action"] for r in rows]
    assert actions.count("capture") == 6 and actions.count("extraction") == 6  # 5 articles + 1 new version
    assert actions.count("classification") == 5 and actions.count("review") == 2 and actions.count("removal") == 1
    capture_rows = {r["capture_id"]: r for r in rows if r["action"] == "capture"}
    for c in db.query("SELECT id, sha256, captured_at FROM captures"):
        assert capture_rows[c["id"]]["sha256"] == c["sha256"] and capture_rows[c["id"]]["at"] == c["captured_at"]
    extraction = next(r for r in rows if r["action"] == "extraction" and r["article_id"] == ids["agentes"])
    art = db.execute("SELECT text_sha256, capture_id FROM articles WHERE id = ?", [ids["agentes"]]).fetchone()
    assert extraction["sha256"] == art[0] and extraction["capture_id"] == art[1]
    assert extraction["input_sha256"] == capture_rows[art[1]]["sha256"]
    review = next(r for r in rows if r["action"] == "review" and r["actor"] == "ana")
    assert review["article_id"] == ids["agentes"] and '"decision":"confirm"' in review["details"]
    classification = next(r for r in rows if r["action"] == "classification" and r["article_id"] == ids["agentes"])
    assert '"model_id": "keyword-baseline"' in classification["details"] and classification["input_sha256"] == art[0]
    # a removal seen twice is logged once
    recheck(db, _config)
    assert db.execute("SELECT count(*) FROM custody WHERE action = 'removal'").fetchone()[0] == 1


def test_warc_settings_are_validated_and_honoured(make_server, tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as error:
        parse_config({"defaults": {"warc_max_mb": 0, "tsa_url": "ftp://tsa", "tsa_ca_file": "/nonexistent.pem",
                                   "warc": "yes"}, "outlets": [{"name": "A", "feeds": [{"url": "https://a.mx/rss", "section": "news"}]}]})
    text = str(error.value)
    assert all(k in text for k in ("warc_max_mb", "tsa_url", "tsa_ca_file", "defaults.warc:"))
    site = make_server()
    evidence_site.build(site, tmp_path / "a.db", warc_dir="archive/warc")
    assert list((tmp_path / "archive" / "warc").glob("*.warc.gz")) and not (tmp_path / "a.db.warc").exists()
    db, _ = evidence_site.build(make_server(), tmp_path / "b.db", warc=False)
    assert not (tmp_path / "b.db.warc").exists() and db.execute("SELECT count(*) FROM warc_records").fetchone()[0] == 0


def test_warc_rotates_by_size(tmp_path: Path) -> None:
    def fetched(n: int) -> Fetched:
        body = f"<html>{n}</html>".encode() * 50
        return Fetched(url=f"http://a.mx/{n}", final_url=f"http://a.mx/{n}", status=200,
                       headers=(("content-type", "text/html"),), body=body, captured_at="2026-01-01T00:00:00.000000Z",
                       sha256=hashlib.sha256(body).hexdigest())

    warcs = WarcStore(tmp_path / "w", max_bytes=2500)
    refs = [warcs.write(fetched(n)) for n in range(6)]
    assert len({r.warc_file for r in refs}) >= 2
    for ref in refs:
        data = (tmp_path / "w" / ref.warc_file).read_bytes()[ref.offset:ref.offset + ref.length]
        assert [uri for uri, _, _ in responses(io.BytesIO(data))] == [f"http://a.mx/{refs.index(ref)}"]


def test_warc_write_failure_is_recorded_and_the_capture_kept(make_server, tmp_path: Path) -> None:
    (tmp_path / "blocked").write_text("a file where the WARC folder should be")
    db, _ = evidence_site.build(make_server(), tmp_path / "c.db", warc_dir="blocked")
    assert db.execute("SELECT count(*) FROM captures").fetchone()[0] == 6
    assert db.execute("SELECT count(*) FROM warc_records").fetchone()[0] == 0
    assert db.execute("SELECT count(*) FROM failures WHERE stage = 'warc'").fetchone()[0] == 6


def test_rfc3161_timestamps_from_a_local_tsa(make_server, tmp_path: Path, tsa) -> None:
    db, config = evidence_site.build(make_server(), tmp_path / "t.db", tsa_url=tsa.url, tsa_ca_file=str(tsa.ca_file))
    rows = list(db.query("SELECT t.*, c.sha256 AS capture_sha256 FROM timestamps t JOIN captures c ON c.id = t.capture_id"))
    assert len(rows) == 6 and all(r["sha256"] == r["capture_sha256"] and r["gen_time"] for r in rows)
    assert db.execute("SELECT count(*) FROM custody WHERE action = 'timestamp'").fetchone()[0] == 6
    token = rows[0]
    assert timestamps.verify(token["token"], token["sha256"], ca_file=tsa.ca_file) is None
    assert timestamps.verify(token["token"], "0" * 64, ca_file=tsa.ca_file)          # another hash: refused
    path = tmp_path / "token.tsr"
    path.write_bytes(token["token"])
    plain = subprocess.run(["openssl", "ts", "-verify", "-digest", token["sha256"], "-in", str(path), "-CAfile",
                            str(tsa.ca_file)], capture_output=True, text=True)
    assert plain.returncode == 0 and "Verification: OK" in plain.stdout
    assert token["ca_pem"] == tsa.ca_file.read_text()


def test_tsa_down_is_a_recorded_failure_not_a_crash(make_server, tmp_path: Path) -> None:
    db, _ = evidence_site.build(make_server(), tmp_path / "d.db", tsa_url="http://127.0.0.1:9/tsa")
    assert db.execute("SELECT count(*) FROM timestamps").fetchone()[0] == 0
    assert db.execute("SELECT count(*) FROM failures WHERE stage = 'timestamp'").fetchone()[0] >= 1
    assert db.execute("SELECT count(*) FROM articles").fetchone()[0] == 5
