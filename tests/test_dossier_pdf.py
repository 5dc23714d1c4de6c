"""The dossier as PDF (``export dossier --pdf``): text, a page that is not blank, metadata, determinism, verify.

Needs WeasyPrint with Debian's Pango (`make setup`, `make pdf`) and poppler-utils (pdftotext,
pdftoppm, pdfinfo, pdffonts; `make pdf` installs them). Skipped when any is missing, unless
MONITOR_REQUIRE_BROWSER=1 (CI), where that is a failure.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import pytest

from monitor.errors import MonitorError
from tests.httpserver import FixtureServer
from tests import test_dossier
from tests.test_dossier import export, unzip, verify

evidence_db = test_dossier.evidence_db   # the same crawled evidence site (a module-scoped fixture)

ROOT = Path(__file__).resolve().parents[1]
POPPLER = ("pdftotext", "pdftoppm", "pdfinfo", "pdffonts")


def _missing() -> str | None:
    missing = [tool for tool in POPPLER if not shutil.which(tool)]
    if missing:
        return f"{', '.join(missing)} not installed (apt-get install poppler-utils, or `make pdf`)"
    from monitor.evidence.pdf import renderer

    try:
        renderer()
    except MonitorError as e:
        return str(e)
    return None


@pytest.fixture(scope="module")
def pdf_tools() -> None:
    """WeasyPrint and poppler-utils are here: skip (fail in CI) otherwise."""
    missing = _missing()
    if missing:
        if os.environ.get("MONITOR_REQUIRE_BROWSER") == "1":
            pytest.fail(missing)
        pytest.skip(missing)


def _run(*args: str | Path, cwd: Path | None = None) -> str:
    done = subprocess.run([str(a) for a in args], capture_output=True, text=True, cwd=cwd, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout


def _info(pdf: Path) -> dict[str, str]:
    return {k.strip(): v.strip() for k, v in (line.split(":", 1) for line in _run("pdfinfo", "-isodates", pdf).splitlines()
                                              if ":" in line)}


def _png_spread(png: Path) -> tuple[int, float]:
    """(distinct grey levels, variance) of a rendered page."""
    from PIL import Image, ImageStat

    with Image.open(png) as image:
        grey = image.convert("L")
        return len(grey.getcolors(256) or []), ImageStat.Stat(grey).var[0]


@pytest.fixture(scope="module")
def pdf_export(pdf_tools: None, evidence_db: dict[str, Any],
               tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One English export with --pdf, unzipped."""
    folder = tmp_path_factory.mktemp("pdf")
    out = folder / "prodh.zip"
    result = export(evidence_db, out, "--lang", "en", "--pdf")
    assert result.exit_code == 0, result.output
    unzipped = unzip(out, folder / "unzipped")
    return {"zip": out, "folder": unzipped, "pdf": unzipped / "dossier.pdf",
            "items": json.loads((unzipped / "items.json").read_text())}


def test_pdf_holds_every_url_and_hash_and_page_one_is_not_blank(pdf_export: dict[str, Any], tmp_path: Path) -> None:
    pdf, items = pdf_export["pdf"], pdf_export["items"]
    assert pdf.read_bytes().startswith(b"%PDF-")
    text = _run("pdftotext", "-enc", "UTF-8", pdf, "-")
    flat = "".join(text.split())   # a long URL may wrap onto the next line of its cell
    assert len(items["items"]) == 3
    for item in items["items"]:
        assert "".join(item["url"].split()) in flat, item["url"]
        assert item["outlet"] in text and item["date"] in text
        for capture in item["captures"]:
            assert capture["sha256"] in text, capture["sha256"]
            assert capture["captured_at"] in text
        for passage in item["passages"]:
            assert "".join(passage["text"].split())[:60] in flat
    # the allegation summary in --lang, the table's columns, who spoke and whether an official
    for heading in ("1. Alleged victim(s)", "2. Alleged perpetrators", "5. Action taken at the national level",
                    "Table of items", "Public official?", "general Juan Montenegro Ruiz"):
        assert "".join(heading.split()) in flat, heading
    # each item's first row, laid out as on the page, ends with whether its speaker is a public official
    layout = _run("pdftotext", "-layout", "-enc", "UTF-8", pdf, "-")
    rows = {int(m[1]): m[2] for m in re.finditer(r"^\s*(\d+)\s+\d{4}-\d\d-\d\d\s.*?\s(yes|no)$", layout, re.M)}
    assert rows == {i["no"]: "yes" if i["speaker_is_official"] else "no" for i in items["items"]}
    assert list(rows.values()).count("yes") == 1
    # the <script> in a title is text in the PDF, never markup
    assert "<script>alert('título')</script>" in text
    # page numbers on every page
    pages = int(_info(pdf)["Pages"])
    assert pages >= 2 and all(f"Page {n} of {pages}" in text for n in range(1, pages + 1))

    # page 1 rendered to PNG is a page of text, not a blank sheet
    _run("pdftoppm", "-png", "-r", "60", "-f", "1", "-l", "1", pdf, tmp_path / "page")
    (png,) = tmp_path.glob("page*.png")
    levels, variance = _png_spread(png)
    assert levels > 20 and variance > 100, (levels, variance)


def test_pdf_is_a4_with_metadata_from_the_data_and_embedded_fonts(pdf_export: dict[str, Any]) -> None:
    pdf, items = pdf_export["pdf"], pdf_export["items"]
    info = _info(pdf)
    assert info["Page size"].startswith("595.276 x 841.89")   # A4 in points
    assert info["Title"] == "Stigmatisation dossier: Centro Prodh"
    assert info["Author"].startswith("smear-monitor")
    assert info["Subject"].startswith("Summary for a communication: 3 item(s) naming Centro Prodh")
    as_of = items["as_of"]    # e.g. 2026-03-04T05:06:07Z: the dossier's as-of time, not the clock
    assert info["CreationDate"] == info["ModDate"] == as_of
    xmp = _run("pdfinfo", "-meta", pdf)   # PDF/A identification and the same dates in the XMP metadata
    assert 'pdfaid:part="2" pdfaid:conformance="B"' in xmp and f"<xmp:CreateDate>{as_of}</xmp:CreateDate>" in xmp
    assert "<pdf:Keywords>" in xmp and "disloyalty / foreign agents" in xmp
    # the document /ID comes from the data: the SHA-256 of items.json
    seed = hashlib.sha256((pdf_export["folder"] / "items.json").read_bytes()).hexdigest()[:32]
    assert re.search(rb"/ID \[\(" + seed.encode() + rb"\) \([0-9a-f]{32}\)\]", pdf.read_bytes())
    fonts = _run("pdffonts", pdf).splitlines()[2:]
    assert fonts and all(re.search(r"\byes\s+yes\s+yes\b", line) for line in fonts), fonts   # embedded, subset, unicode
    assert all("DejaVu" in line for line in fonts), fonts


def test_pdf_is_in_the_manifest_verifies_and_a_tampered_pdf_is_named(pdf_export: dict[str, Any], tmp_path: Path) -> None:
    folder = pdf_export["folder"]
    manifest = (folder / "MANIFEST.sha256").read_text()
    assert re.search(r"^[0-9a-f]{64}  dossier\.pdf$", manifest, re.M)
    assert "dossier.pdf" in (folder / "README.txt").read_text()
    checked = verify(pdf_export["zip"])
    assert checked.exit_code == 0, checked.output
    assert _run("sha256sum", "--quiet", "-c", "MANIFEST.sha256", cwd=folder) == ""

    tampered = tmp_path / "tampered"
    shutil.copytree(folder, tampered)
    data = bytearray((tampered / "dossier.pdf").read_bytes())
    data[len(data) // 2] ^= 0x01
    (tampered / "dossier.pdf").write_bytes(bytes(data))
    failed = verify(tampered)
    assert failed.exit_code == 1 and "FAILED dossier.pdf: SHA-256 mismatch" in failed.output
    assert failed.output.count("FAILED") == 1


def test_two_pdf_exports_are_byte_identical_and_dated_by_the_data(evidence_db: dict[str, Any], pdf_export: dict[str, Any],
                                                                  tmp_path: Path) -> None:
    # a second export in a fresh process (other hash seed, empty font caches): the same zip, byte for byte
    again = tmp_path / "again.zip"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONHASHSEED": "12345"}
    done = subprocess.run([sys.executable, "-m", "monitor.cli", "--db", str(evidence_db["path"]), "export", "dossier",
                           "--target", "Centro Prodh", "--by", "otra abogada", "--lang", "en", "--pdf",
                           "--out", str(again)], capture_output=True, text=True, env=env, cwd=ROOT, timeout=300)
    assert done.returncode == 0, done.stderr
    assert again.read_bytes() == pdf_export["zip"].read_bytes()

    # another as-of changes the PDF's dates (and nothing reads the clock); Spanish text with --lang es
    later = tmp_path / "later.zip"
    assert export(evidence_db, later, "--pdf", "--as-of", "2030-01-02T03:04:06Z").exit_code == 0
    with zipfile.ZipFile(later) as archive:
        (tmp_path / "later.pdf").write_bytes(archive.read("dossier.pdf"))
    info = _info(tmp_path / "later.pdf")
    assert info["CreationDate"] == info["ModDate"] == "2030-01-02T03:04:06Z"
    text = _run("pdftotext", "-enc", "UTF-8", tmp_path / "later.pdf", "-")
    assert "1. Presunta(s) víctima(s)" in text and "Página 1 de" in text and "¿Funcionariopúblico?" in "".join(text.split())
    assert info["Title"] == "Expediente de estigmatización: Centro Prodh"


def test_the_renderer_fetches_nothing(pdf_tools: None) -> None:
    from monitor.evidence.pdf import render_pdf

    server = FixtureServer()
    server.thread.start()
    try:
        server.add("/x.png", b"\x89PNG", content_type="image/png")
        server.add("/x.css", "body { color: red }", content_type="text/css")
        html = (f'<html><head><link rel="stylesheet" href="{server.url("/x.css")}"></head>'
                f'<body><img src="{server.url("/x.png")}"></body></html>')
        with pytest.raises(MonitorError, match="fetches nothing; refused http://127.0.0.1"):
            render_pdf(html, b"0" * 32)
        assert server.hits == {}
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize("broken", ["package", "pango"])
def test_a_missing_renderer_is_a_clear_error_with_the_install_command(evidence_db: dict[str, Any], tmp_path: Path,
                                                                      broken: str) -> None:
    """Run the real CLI in a process where WeasyPrint is absent, or fails to load Pango as it does without it.

    Needs neither WeasyPrint nor poppler: it runs everywhere.
    """
    stub = tmp_path / "stub"
    if broken == "package":
        prelude = "import sys; sys.modules['weasyprint'] = None"   # what `import weasyprint` does when not installed
    else:
        (stub / "weasyprint").mkdir(parents=True)
        (stub / "weasyprint" / "__init__.py").write_text(
            "raise OSError(\"cannot load library 'libpango-1.0-0': libpango-1.0-0: cannot open shared object file\")\n")
        prelude = f"import sys; sys.path.insert(0, {str(stub)!r})"
    out = tmp_path / "none.zip"
    done = subprocess.run([sys.executable, "-c", f"{prelude}\nfrom monitor.cli import cli\ncli()",
                           "--db", str(evidence_db["path"]), "export", "dossier", "--target", "Centro Prodh", "--pdf",
                           "--out", str(out)],
                          capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)}, cwd=ROOT,
                          timeout=300)
    assert done.returncode == 1, done.stdout + done.stderr
    message = done.stdout + done.stderr
    assert "Traceback" not in message
    assert ("WeasyPrint, which is not installed" if broken == "package" else "cannot be loaded") in message
    assert "pip install 'weasyprint==70.0'" in message and "apt-get install -y libpango-1.0-0" in message
    assert not out.exists()
