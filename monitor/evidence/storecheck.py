"""``monitor verify-store``: every capture against its WARC record, and the chain of custody, in the database.

Checks, each failure naming the capture (or row), the WARC file and offset, expected vs actual:

1. each capture's stored body (``captures.body_gz``) still has the SHA-256 and size recorded at
   capture time;
2. each capture with a ``warc_records`` row: the WARC file exists (in the folder recorded, the
   folder it was restored to, or ``<db>.warc/``), the span at the recorded offset is readable,
   its first record is the ``response`` with the recorded record id, whose payload has the
   capture's SHA-256 and whose ``WARC-Payload-Digest`` says so, and its ``metadata`` record names
   the same hash;
3. the custody chain: one ``capture`` row per capture with its hash; for every extracted text
   (article and later versions) the text has its recorded hash and an ``extraction`` row links it
   to its capture's hash; every verdict has a ``classification`` row whose input is a text
   extracted for that article; every review has its ``review`` row; every RFC 3161 token stamps
   its capture's hash and has a ``timestamp`` row with the token's hash; no custody row names a
   capture that is not there.

Rows older than the custody log (made before migration 3) have no custody rows: they are
counted, not failed.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sqlite_utils
from warcio.archiveiterator import ArchiveIterator

from .. import store
from .warc import candidate_folders, digest_matches, locate, read_span

Progress = Callable[[str, int, int], None]


@dataclass
class StoreReport:
    """What ``verify_store`` checked and every failure, one line each."""

    captures: int = 0
    warc_records: int = 0
    texts: int = 0
    classifications: int = 0
    reviews: int = 0
    timestamps: int = 0
    before_custody: int = 0               # rows older than the custody log
    failures: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when nothing failed."""
        return not self.failures

    def line(self) -> str:
        """One summary line."""
        return (f"{self.captures} captures, {self.warc_records} WARC records, {self.texts} texts, "
                f"{self.classifications} verdicts, {self.reviews} reviews, {self.timestamps} timestamps checked"
                + (f"; {self.before_custody} row(s) older than the custody log" if self.before_custody else ""))


def verify_store(db: sqlite_utils.Database, progress: Progress | None = None) -> StoreReport:
    """Check the whole store (see the module docstring); never writes."""
    progress = progress or (lambda *a: None)
    report = StoreReport()
    db_file = store.database_file(db)
    relocations = store.warc_relocations(db)
    cutoff = store.custody_cutoff(db) or "9999"
    total = store.table_count(db, "captures")
    for row in store.integrity_captures(db):
        report.captures += 1
        _check_capture(row, db_file, relocations, cutoff, report)
        progress("verify-store: captures", report.captures, total)
    total = store.table_count(db, "articles") + store.table_count(db, "article_versions")
    for row in store.integrity_texts(db):
        report.texts += 1
        _check_text(row, cutoff, report)
        progress("verify-store: texts", report.texts, total)
    total = store.table_count(db, "classifications")
    for row in store.integrity_classifications(db):
        report.classifications += 1
        where = f"classification {row['id']} (article {row['article_id']})"
        inputs = json.loads(row["custody_inputs"] or "[]")
        if not row["text_known"]:
            report.failures.append(f"{where}: classified a text ({row['text_sha256']}) that no extraction of "
                                   "this article produced")
        if not inputs:
            _missing(report, row["at"], cutoff, f"{where}: no custody classification row")
        elif row["text_sha256"] and row["text_sha256"] not in inputs:
            report.failures.append(f"{where}: custody input hash expected {row['text_sha256']}, actual {inputs[0]}")
        progress("verify-store: verdicts", report.classifications, total)
    for row in store.integrity_reviews(db):
        report.reviews += 1
        if not row["custody_ok"]:
            _missing(report, row["at"], cutoff,
                     f"review {row['id']} (article {row['article_id']}, by {row['reviewer']}): no custody review row")
    for row in store.integrity_timestamps(db):
        report.timestamps += 1
        where = f"timestamp {row['id']} (capture {row['capture_id']})"
        if row["sha256"] != row["capture_sha256"]:
            report.failures.append(f"{where}: stamps SHA-256 {row['sha256']}, the capture's is {row['capture_sha256']}")
        token_sha = hashlib.sha256(row["token"]).hexdigest()
        inputs = json.loads(row["custody_inputs"] or "[]")
        if token_sha not in inputs:
            report.failures.append(f"{where}: custody timestamp row expected token SHA-256 {token_sha}, actual "
                                   f"{inputs[0] if inputs else 'no row'}")
    for row in store.dangling_custody(db):
        report.failures.append(f"custody {row['id']} ({row['action']}): names capture {row['capture_id']}, "
                               "which the database does not hold")
    return report


def _missing(report: StoreReport, at: str | None, cutoff: str, failure: str) -> None:
    """A missing custody row fails, unless the row predates the custody log."""
    if (at or "") < cutoff:
        report.before_custody += 1
    else:
        report.failures.append(failure)


def _check_capture(row: dict[str, Any], db_file: Path | None, relocations: dict[str, str], cutoff: str,
                   report: StoreReport) -> None:
    cid, expected = row["id"], row["sha256"]
    try:
        body = gzip.decompress(row["body_gz"])
        actual = hashlib.sha256(body).hexdigest()
        if actual != expected or len(body) != row["size"]:
            report.failures.append(f"capture {cid}: database copy SHA-256 expected {expected}, actual {actual} "
                                   f"({len(body)} bytes, {row['size']} recorded)")
    except (OSError, EOFError, zlib.error) as e:
        report.failures.append(f"capture {cid}: database copy unreadable ({type(e).__name__}: {e})")
    custody = json.loads(row["custody_sha256"] or "[]")
    if not custody:
        _missing(report, row["captured_at"], cutoff, f"capture {cid}: no custody capture row")
    elif any(sha != expected for sha in custody):
        report.failures.append(f"capture {cid}: custody capture row SHA-256 expected {expected}, actual "
                               f"{next(s for s in custody if s != expected)}")
    if row["warc_capture_id"] is None:
        return
    report.warc_records += 1
    where = f"capture {cid}: WARC {row['warc_file']} offset {row['record_offset']}"
    path = locate(row["warc_dir"], row["warc_file"], db_file, relocations)
    if path is None:
        folders = candidate_folders(row["warc_dir"], db_file, relocations)
        report.failures.append(f"{where}: file missing (looked in {', '.join(str(f) for f in folders)})")
        return
    where = f"capture {cid}: WARC {path} offset {row['record_offset']}"
    try:
        span = read_span(path, row["record_offset"], row["record_length"])
    except OSError as e:
        report.failures.append(f"{where}: unreadable ({e})")
        return
    for problem in _check_span(span, row):
        report.failures.append(f"{where}: {problem}")


def _check_span(span: bytes, row: dict[str, Any]) -> list[str]:
    """What is wrong with a capture's WARC records (empty when they hold exactly that capture)."""
    expected = row["sha256"]
    problems: list[str] = []
    try:
        plain = _gunzip_members(span)
    except ValueError as e:
        return [f"payload SHA-256 expected {expected}, actual: unreadable (damaged gzip data: {e})"]
    try:
        records = []
        for record in ArchiveIterator(io.BytesIO(plain), check_digests=False):
            payload = record.raw_stream.read()
            records.append((record.rec_type, record.rec_headers, payload))
    except Exception as e:  # warcio raises several kinds on damaged records
        return [f"payload SHA-256 expected {expected}, actual: unreadable (WARC record: {type(e).__name__}: "
                f"{str(e)[:160]!r})"]
    if not records or records[0][0] != "response":
        return [f"payload SHA-256 expected {expected}, actual: no response record at this offset "
                f"(found {records[0][0] if records else 'nothing'})"]
    _, headers, payload = records[0]
    actual = hashlib.sha256(payload).hexdigest()
    if actual != expected:
        problems.append(f"payload SHA-256 expected {expected}, actual {actual}")
    if headers.get_header("WARC-Record-ID") != row["record_id"]:
        problems.append(f"record id expected {row['record_id']}, actual {headers.get_header('WARC-Record-ID')}")
    digest = headers.get_header("WARC-Payload-Digest") or ""
    # SHA-256 in the monitor's own WARC files; SHA-1 in archives other tools wrote (backfilled captures)
    if digest != row["payload_digest"] or not digest_matches(digest, payload):
        problems.append(f"WARC-Payload-Digest expected {row['payload_digest']}, actual {digest or 'none'}")
    meta = next((p for t, _, p in records if t == "metadata"), None)
    if meta is not None and f"payload-sha256: {expected}".encode() not in meta:
        problems.append(f"metadata record does not name payload-sha256 {expected}")
    return problems


def _gunzip_members(data: bytes) -> bytes:
    """Decompress concatenated gzip members strictly (each member's CRC-32 and length checked).

    Raises:
        ValueError: naming the byte (from the record's start) where the damage was found.
    """
    out = []
    pos = 0
    while pos < len(data):
        member = zlib.decompressobj(zlib.MAX_WBITS | 16)
        try:
            out.append(member.decompress(data[pos:]))
            out.append(member.flush())
        except zlib.error as e:
            raise ValueError(f"gzip member at byte {pos} of the record: {e}") from None
        if not member.eof:
            raise ValueError(f"gzip member at byte {pos} of the record is truncated")
        pos = len(data) - len(member.unused_data)
    return b"".join(out)


def _check_text(row: dict[str, Any], cutoff: str, report: StoreReport) -> None:
    where = (f"article {row['article_id']}" if row["kind"] == "article"
             else f"article {row['article_id']} version {row['id']}") + f" (capture {row['capture_id']})"
    actual = hashlib.sha256((row["text"] or "").encode("utf-8")).hexdigest()
    if actual != row["text_sha256"]:
        report.failures.append(f"{where}: text SHA-256 expected {row['text_sha256']}, actual {actual}")
    if row["capture_sha256"] is None:
        report.failures.append(f"{where}: its capture is missing")
    elif not row["custody_ok"]:
        _missing(report, row["at"], cutoff, f"{where}: no custody extraction row from capture SHA-256 "
                                            f"{row['capture_sha256']} to text SHA-256 {row['text_sha256']}")
