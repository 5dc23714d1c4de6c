"""The dossier for UN / IACHR communications: contents, verification with standard tools, determinism, escaping."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from monitor.cli import cli
from tests import evidence_site
from tests.httpserver import FixtureServer
from tests.tsa import TsaServer


@pytest.fixture(scope="module")
def evidence_db(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """The evidence site crawled with a TSA configured: edits, a removal, reviews, timestamps."""
    folder = tmp_path_factory.mktemp("dossier")
    (folder / "tsa").mkdir()
    site, tsa = FixtureServer(), TsaServer(folder / "tsa")
    site.thread.start()
    tsa.thread.start()
    try:
        db, _config = evidence_site.build(site, folder / "monitor.db", tsa_url=tsa.url, tsa_ca_file=str(tsa.ca_file))
        yield {"db": db, "path": folder / "monitor.db", "folder": folder, "ids": evidence_site.article_ids(db),
               "ca": tsa.ca_file}
    finally:
        for server in (site, tsa):
            server.shutdown()
            server.server_close()


def export(env: dict[str, Any], out: Path, *args: str) -> Any:
    result = CliRunner().invoke(cli, ["--db", str(env["path"]), "export", "dossier", "--target", "Centro Prodh",
                                      "--by", "abogada", "--out", str(out), *args])
    return result


def verify(path: Path, *args: str) -> Any:
    return CliRunner().invoke(cli, ["verify", str(path), *args])


def unzip(path: Path, folder: Path) -> Path:
    with zipfile.ZipFile(path) as archive:
        archive.extractall(folder)
    return folder


def test_export_verifies_with_monitor_and_sha256sum_and_a_flipped_byte_is_named(evidence_db, tmp_path: Path) -> None:
    out = tmp_path / "prodh.zip"
    result = export(evidence_db, out)
    assert result.exit_code == 0, result.output
    assert "3 item(s), 4 capture(s)" in result.output
    checked = verify(out)
    assert checked.exit_code == 0, checked.output
    assert "4 captures, 4 WARC records, 4 timestamp token(s) verified" in checked.output
    folder = unzip(out, tmp_path / "unzipped")
    standard = subprocess.run(["sha256sum", "-c", "MANIFEST.sha256"], cwd=folder, capture_output=True, text=True)
    assert standard.returncode == 0 and standard.stdout.count(": OK") == len(list(folder.rglob("*.*"))) - 1
    # the bundled CA checks a timestamp with plain openssl too
    item = json.loads((folder / "items.json").read_text())["items"][0]
    stamp = item["captures"][0]["timestamps"][0]
    plain = subprocess.run(["openssl", "ts", "-verify", "-digest", item["captures"][0]["sha256"], "-in", stamp["file"],
                            "-CAfile", "timestamps/tsa-ca.pem"], cwd=folder, capture_output=True, text=True)
    assert plain.returncode == 0, plain.stderr

    # flip one byte of one capture in the unzipped folder: sha256sum and monitor verify both name it
    victim = item["captures"][0]["body_file"]
    data = bytearray((folder / victim).read_bytes())
    data[len(data) // 2] ^= 0x01
    (folder / victim).write_bytes(bytes(data))
    standard = subprocess.run(["sha256sum", "--quiet", "-c", "MANIFEST.sha256"], cwd=folder, capture_output=True, text=True)
    assert standard.returncode != 0 and f"{victim}: FAILED" in standard.stdout
    failed = verify(folder)
    assert failed.exit_code == 1 and f"FAILED {victim}: SHA-256 mismatch" in failed.output
    assert f"FAILED {victim}: not the bytes captured" in failed.output

    # the same flip inside a well-formed zip, with a MANIFEST recomputed to match: still caught
    forged = tmp_path / "forged.zip"
    manifest = (folder / "MANIFEST.sha256").read_text().replace(
        json.loads((folder / "items.json").read_text())["items"][0]["captures"][0]["sha256"],
        hashlib.sha256(bytes(data)).hexdigest())
    (folder / "MANIFEST.sha256").write_text(manifest)
    shutil.make_archive(str(forged.with_suffix("")), "zip", folder)
    failed = verify(forged)
    assert failed.exit_code == 1 and f"FAILED {victim}: not the bytes captured" in failed.output

    # a byte flipped in the zip file itself fails the entry's CRC: named too
    raw = bytearray(out.read_bytes())
    with zipfile.ZipFile(out) as archive:
        info = archive.getinfo(victim)
    raw[info.header_offset + 30 + len(info.filename.encode()) + len(info.extra) + info.compress_size // 2] ^= 0xFF
    damaged = tmp_path / "damaged.zip"
    damaged.write_bytes(bytes(raw))
    failed = verify(damaged)
    assert failed.exit_code == 1 and f"FAILED {victim}:" in failed.output


def test_two_exports_of_the_same_selection_are_byte_identical(evidence_db, tmp_path: Path) -> None:
    first, second = tmp_path / "a.zip", tmp_path / "b.zip"
    assert export(evidence_db, first, "--lang", "en").exit_code == 0
    assert export(evidence_db, second, "--lang", "en").exit_code == 0   # after the first export's custody row
    assert first.read_bytes() == second.read_bytes()
    with zipfile.ZipFile(first) as archive:
        names = archive.namelist()
        assert names == sorted(names)
        assert {i.date_time for i in archive.infolist()} == {archive.getinfo("items.json").date_time}
        as_of = json.loads(archive.read("items.json"))["as_of"]
    assert archive.getinfo("items.json").date_time[:3] == tuple(int(x) for x in as_of[:10].split("-"))
    exports = list(evidence_db["db"].query("SELECT actor, sha256, details FROM custody WHERE action = 'export'"))
    assert {e["actor"] for e in exports} == {"abogada"}
    assert hashlib.sha256(first.read_bytes()).hexdigest() in {e["sha256"] for e in exports}
    third = tmp_path / "c.zip"
    assert export(evidence_db, third, "--lang", "en", "--as-of", "2030-01-02T03:04:06Z").exit_code == 0
    assert third.read_bytes() != first.read_bytes()
    with zipfile.ZipFile(third) as archive:
        assert archive.getinfo("dossier.html").date_time == (2030, 1, 2, 3, 4, 6)
        assert json.loads(archive.read("items.json"))["as_of"] == "2030-01-02T03:04:06Z"
    bad = export(evidence_db, tmp_path / "x.zip", "--as-of", "yesterday")
    assert bad.exit_code == 1 and "--as-of must be a UTC date or time" in bad.output


def test_removed_item_keeps_its_capture_and_edited_item_shows_both_captures(evidence_db, tmp_path: Path) -> None:
    out = tmp_path / "d.zip"
    assert export(evidence_db, out).exit_code == 0
    with zipfile.ZipFile(out) as archive:
        items = {i["article_id"]: i for i in json.loads(archive.read("items.json"))["items"]}
        html = archive.read("dossier.html").decode()
        names = set(archive.namelist())
        removed = items[evidence_db["ids"]["general"]]
        assert removed["removed_at"] and [h["event"] for h in removed["history"]] == ["removed"]
        (capture,) = removed["captures"]
        assert capture["body_file"] in names and archive.read(capture["body_file"]).startswith(b"<!doctype html>")
        assert f"Retirado de la web el</th><td class=\"flag\">{removed['removed_at']}" in html
        edited = items[evidence_db["ids"]["agentes"]]
        assert edited["edited"] and len(edited["captures"]) == 2
        first, second = (archive.read(c["body_file"]) for c in edited["captures"])
        assert b"agentes extranjeros" in first and b"agentes extranjeros" not in second
        assert all(c["warc"]["file"] in names for c in edited["captures"])
        assert html.count("capture-") >= 2 * 4 and "editado el" in html
        assert edited["review"]["reviewer"] == "ana" and "confirmado por ana" in html


def test_dossier_contents_summary_counts_and_escaping(evidence_db, tmp_path: Path) -> None:
    out = tmp_path / "e.zip"
    # an alias, in other case and without accents, names the same target
    result = CliRunner().invoke(cli, ["--db", str(evidence_db["path"]), "export", "dossier", "--target",
                                      "centro de derechos humanos miguel agustin pro juarez", "--lang", "en",
                                      "--out", str(out)])
    assert result.exit_code == 0, result.output
    with zipfile.ZipFile(out) as archive:
        html = archive.read("dossier.html").decode()
        items = json.loads(archive.read("items.json"))["items"]
        csv_text = archive.read("items.csv").decode()
        summary_es = archive.read("summary-es.txt").decode()
        summary_en = archive.read("summary-en.txt").decode()
        custody = archive.read("custody.csv").decode()
        readme = archive.read("README.txt").decode()
    # the GIEI column (another target, and rejected) and the bridge story are not in it
    assert {i["title"] for i in items} == {"General acusa a ONG de defender delincuentes", "¿Quién paga al Centro Prodh?",
                                          "<script>alert('título')</script> La red del Centro Prodh"}
    # article text is escaped: the <script> in a title and a paragraph never reaches the page as markup
    assert "<script" not in html.lower() and "<img" not in html.lower()
    assert "&lt;script&gt;alert(&#39;título&#39;)&lt;/script&gt;" in html
    assert "<svg" in html and "<rect" in html and "http" not in html.split("<style>")[1].split("</style>")[0]
    official = next(i for i in items if i["speaker_is_official"])
    assert official["speaker"] == "general Juan Montenegro Ruiz" and official["speaker_type"] == "official"
    assert "State actors (public officials quoted): general Juan Montenegro Ruiz (1)" in summary_en
    assert "Actores estatales (funcionarios públicos citados): general Juan Montenegro Ruiz (1)" in summary_es
    for heading in ("1. Alleged victim(s)", "2. Alleged perpetrators", "3. Dates and places",
                    "4. Description of the facts and the pattern", "5. Action taken at the national level"):
        assert heading in summary_en and heading in html
    assert "5. Acciones emprendidas a nivel nacional" in summary_es
    assert "By category" in html and "By speaker type" in html and "public official (State)" in html
    assert ">disloyalty, foreign agents</td><td>1<" in html
    assert "sha256sum -c MANIFEST.sha256" in readme and "monitor verify" in readme
    assert csv_text.splitlines()[0].startswith("no,date,outlet") and len(csv_text.splitlines()) == 4
    actions = {line.split(",")[2] for line in custody.splitlines()[1:]}
    assert {"capture", "extraction", "classification", "review", "removal", "timestamp"} <= actions
    assert "export" not in actions and "luis" not in custody   # the rejected GIEI review is another item


def test_selection_options_and_errors(evidence_db, tmp_path: Path) -> None:
    confirmed = tmp_path / "c.zip"
    assert export(evidence_db, confirmed, "--confirmed-only").exit_code == 0
    with zipfile.ZipFile(confirmed) as archive:
        items = json.loads(archive.read("items.json"))["items"]
    assert [i["article_id"] for i in items] == [evidence_db["ids"]["agentes"]]
    future = export(evidence_db, tmp_path / "f.zip", "--from", "2099-01-01")
    assert future.exit_code == 1 and "no item names Centro Prodh between 2099-01-01" in future.output
    unknown = CliRunner().invoke(cli, ["--db", str(evidence_db["path"]), "export", "dossier", "--target", "Nadie",
                                       "--out", str(tmp_path / "n.zip")])
    assert unknown.exit_code == 1 and "not a name or alias in the watchlist" in unknown.output
    assert not (tmp_path / "n.zip").exists()
    assert verify(tmp_path / "c.zip", "--tsa-ca", str(evidence_db["ca"])).exit_code == 0
    junk = tmp_path / "junk.zip"
    junk.write_bytes(b"not a zip")
    bad = verify(junk)
    assert bad.exit_code == 1 and "junk.zip: not a readable zip" in bad.output
