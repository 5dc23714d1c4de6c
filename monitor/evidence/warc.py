"""Write every capture to WARC files (ISO 28500, WARC/1.1) that standard web-archive tools replay.

Each capture becomes three records, each its own gzip member, written in ONE ``write`` call:
``response`` (status line, headers and the exact bytes served; ``WARC-Payload-Digest`` is the
SHA-256 of those bytes), ``request`` (the request line and headers sent) and ``metadata`` (the
URL requested, redirects, the capture's SHA-256 and tool). Files rotate by size and by UTC day:
``<prefix>-YYYYMMDD-NNNNN.warc.gz``, each opening with a ``warcinfo`` record.

Crash safety: the WARC records are written and fsync'ed BEFORE the database transaction that
stores the capture and a ``warc_records`` row pointing at them. A crash in between leaves a
complete WARC record that no row references (harmless: it is skipped when exporting); it never
leaves a row pointing at missing bytes. Writers in several threads or processes take an
exclusive lock on ``<dir>/.lock`` for each write, so records never interleave.
"""

from __future__ import annotations

import base64
import fcntl
import hashlib
import io
import os
import re
import threading
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from http import HTTPStatus
from pathlib import Path
from urllib.parse import urlsplit

from warcio.archiveiterator import ArchiveIterator
from warcio.statusandheaders import StatusAndHeaders
from warcio.utils import Digester
from warcio.warcwriter import WARCWriter

from ..models import Fetched, WarcRef

PREFIX = "monitor"
WARC_VERSION = "1.1"
# The body is stored de-chunked, so a served Transfer-Encoding header would make replay tools
# try to de-chunk it again; it is kept under this name instead (the database keeps it as served).
RENAMED_HEADERS = {"transfer-encoding": "X-Archive-Orig-Transfer-Encoding"}


class Sha256WARCWriter(WARCWriter):
    """warcio writer with SHA-256 block and payload digests (warcio's default is SHA-1)."""

    @staticmethod
    def _create_digester() -> Digester:
        return Digester("sha256")


def sha256_digest_label(hex_digest: str) -> str:
    """``sha256:BASE32`` as written in WARC digest headers, from a hex SHA-256."""
    return "sha256:" + base64.b32encode(bytes.fromhex(hex_digest)).decode("ascii")


def digest_label_hex(label: str) -> str:
    """Hex SHA-256 of a ``sha256:BASE32`` (or ``sha256:HEX``) WARC digest header."""
    algo, _, value = label.partition(":")
    if algo.lower() != "sha256":
        raise ValueError(f"not a SHA-256 digest: {label!r}")
    return value.lower() if re.fullmatch(r"[0-9a-fA-F]{64}", value) else base64.b32decode(value).hex()


def default_dir(db_file: Path) -> Path:
    """``<db>.warc/`` next to the database file."""
    return db_file.with_name(db_file.name + ".warc")


def resolve_dir(configured: str, db_file: Path) -> Path:
    """The WARC folder: configured (relative to the database's folder) or ``<db>.warc/``."""
    if not configured:
        return default_dir(db_file)
    path = Path(configured).expanduser()
    return path if path.is_absolute() else db_file.parent / path


def candidate_folders(recorded_dir: str, db_file: Path | None, relocations: dict[str, str] | None = None) -> list[Path]:
    """Where to look for a WARC file whose ``warc_records`` row names the folder ``recorded_dir``.

    In a restored store (``relocations`` from ``store.warc_relocations``) only the folder it was
    restored to: never the original's, which may still exist on the same machine. Otherwise the
    recorded folder, then ``<db>.warc/`` beside the database (a store moved by hand).
    """
    if relocations and recorded_dir in relocations:
        return [Path(relocations[recorded_dir])]
    folders = [Path(recorded_dir)]
    if db_file is not None and default_dir(db_file) not in folders:
        folders.append(default_dir(db_file))
    return folders


def locate(recorded_dir: str, warc_file: str, db_file: Path | None,
           relocations: dict[str, str] | None = None) -> Path | None:
    """The WARC file a ``warc_records`` row names, in the first of :func:`candidate_folders` holding it."""
    return next((f / warc_file for f in candidate_folders(recorded_dir, db_file, relocations)
                 if (f / warc_file).is_file()), None)


class WarcStore:
    """Appends capture records to rotating WARC files in one folder."""

    def __init__(self, folder: Path, max_bytes: int = 1_000_000_000, software: str = "", prefix: str = PREFIX):
        self.folder = Path(folder).resolve()
        self.max_bytes = max_bytes
        self.software = software
        self.prefix = prefix
        self._lock = threading.Lock()

    def write(self, fetched: Fetched, prepared: PreparedRecords | None = None) -> WarcRef:
        """Write a capture's records (fsync'ed) and return where they are.

        ``prepared``: the records already built by :func:`capture_records` (the crawler builds
        them in its extraction processes: compressing them is most of the cost).
        """
        response, request, metadata, record_id = prepared or capture_records(fetched, self.software)
        data = response + request + metadata
        self.folder.mkdir(parents=True, exist_ok=True)
        with self._lock, _locked(self.folder / ".lock"):
            path = self._file_for(len(data))
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                size = os.fstat(fd).st_size
                head = b"" if size else self._warcinfo(path.name)
                _write_all(fd, head + data)
                os.fsync(fd)
            finally:
                os.close(fd)
        return WarcRef(warc_dir=str(self.folder), warc_file=path.name, offset=size + len(head), length=len(data),
                       response_length=len(response), record_id=record_id,
                       payload_digest=sha256_digest_label(fetched.sha256))

    def _file_for(self, incoming: int) -> Path:
        day = datetime.now(timezone.utc).strftime("%Y%m%d")
        numbers = sorted(int(m.group(1)) for p in self.folder.glob(f"{self.prefix}-{day}-*.warc.gz")
                         if (m := re.fullmatch(rf"{re.escape(self.prefix)}-{day}-(\d+)\.warc\.gz", p.name)))
        seq = numbers[-1] if numbers else 1
        path = self.folder / f"{self.prefix}-{day}-{seq:05d}.warc.gz"
        if path.exists() and path.stat().st_size and path.stat().st_size + incoming > self.max_bytes:
            path = self.folder / f"{self.prefix}-{day}-{seq + 1:05d}.warc.gz"
        return path

    def _warcinfo(self, filename: str) -> bytes:
        out = io.BytesIO()
        writer = Sha256WARCWriter(out, gzip=True, warc_version=WARC_VERSION)
        writer.write_record(writer.create_warcinfo_record(filename, {
            "software": self.software, "format": "WARC File Format 1.1",
            "conformsTo": "https://iipc.github.io/warc-specifications/specifications/warc-format/warc-1.1/",
            "description": "Captures of news pages by the smear-campaign monitor; payload digests are SHA-256 "
                           "of the bytes as served (see docs/evidence.md)",
        }))
        return out.getvalue()


PreparedRecords = tuple[bytes, bytes, bytes, str]
GZIP_LEVEL = 3  # warcio compresses at 9: 3-4x the CPU of level 3 for ~15 % smaller records


def _gzip_member(data: bytes) -> bytes:
    compressor = zlib.compressobj(GZIP_LEVEL, zlib.DEFLATED, zlib.MAX_WBITS + 16)  # one gzip member, mtime 0
    return compressor.compress(data) + compressor.flush()


def capture_records(fetched: Fetched, software: str = "") -> PreparedRecords:
    """The gzipped response, request and metadata records of a capture, and the response's record id.

    Each record is its own gzip member (as warcio writes them), compressed at level 3.
    """
    date = fetched.captured_at  # UTC with microseconds: allowed by WARC/1.1
    reason = fetched.reason or _reason(fetched.status)
    headers = [(RENAMED_HEADERS.get(k.lower(), k), v) for k, v in fetched.headers]
    http = StatusAndHeaders(f"{fetched.status} {reason}".strip(), headers, protocol=fetched.http_version or "HTTP/1.1")

    def serialise(record) -> bytes:  # type: ignore[no-untyped-def]
        out = io.BytesIO()
        Sha256WARCWriter(out, gzip=False, warc_version=WARC_VERSION).write_record(record)
        return _gzip_member(out.getvalue())

    writer = Sha256WARCWriter(io.BytesIO(), gzip=False, warc_version=WARC_VERSION)
    response = writer.create_warc_record(fetched.final_url, "response", payload=io.BytesIO(fetched.body),
                                         length=len(fetched.body), http_headers=http,
                                         warc_headers_dict={"WARC-Date": date})
    record_id = response.rec_headers.get_header("WARC-Record-ID")
    parts = urlsplit(fetched.final_url)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    request_headers = list(fetched.request_headers) or [("Host", parts.netloc)]
    request = writer.create_warc_record(
        fetched.final_url, "request", payload=io.BytesIO(b""), length=0,
        http_headers=StatusAndHeaders(f"GET {target} HTTP/1.1", request_headers, is_http_request=True),
        warc_headers_dict={"WARC-Date": date, "WARC-Concurrent-To": record_id})
    fields = [("requested-url", fetched.url), *[("redirected-from", r) for r in fetched.redirects],
              ("final-url", fetched.final_url), ("captured-at", fetched.captured_at),
              ("payload-sha256", fetched.sha256), ("software", software)]
    text = "".join(f"{k}: {v}\r\n" for k, v in fields if v).encode("utf-8")
    metadata = writer.create_warc_record(
        fetched.final_url, "metadata", payload=io.BytesIO(text), length=len(text),
        warc_content_type="application/warc-fields",
        warc_headers_dict={"WARC-Date": date, "WARC-Concurrent-To": record_id})
    return serialise(response), serialise(request), serialise(metadata), record_id


def read_span(path: Path, offset: int, length: int) -> bytes:
    """The bytes of one capture's records inside a WARC file (itself a valid .warc.gz)."""
    with open(path, "rb") as f:
        f.seek(offset)
        data = f.read(length)
    if len(data) != length:
        raise OSError(f"{path}: only {len(data)} of {length} bytes at offset {offset}")
    return data


def responses(stream: io.BufferedIOBase | io.BytesIO) -> Iterator[tuple[str, str, str]]:
    """``(target URI, WARC-Payload-Digest, SHA-256 of the stored payload)`` of every response record."""
    for uri, digest, payload in response_payloads(stream):
        yield uri, digest, hashlib.sha256(payload).hexdigest()


def response_payloads(stream: io.BufferedIOBase | io.BytesIO) -> Iterator[tuple[str, str, bytes]]:
    """``(target URI, WARC-Payload-Digest, stored payload)`` of every response record."""
    for record in ArchiveIterator(stream):
        if record.rec_type == "response":
            payload = record.raw_stream.read()
            yield (record.rec_headers.get_header("WARC-Target-URI"),
                   record.rec_headers.get_header("WARC-Payload-Digest") or "", payload)


def digest_matches(label: str, payload: bytes) -> bool:
    """Whether a WARC digest header (``sha256:`` or ``sha1:``, base32 or hex) is the digest of ``payload``.

    The monitor writes SHA-256; archives made by other tools (Common Crawl, Heritrix, the
    Internet Archive, warcio's default) write SHA-1. Backfilled captures keep the archive's own.
    """
    algo, _, value = label.partition(":")
    algo = algo.lower().replace("-", "")
    if algo not in ("sha256", "sha1") or not value:
        return False
    digest = hashlib.new(algo, payload).digest()
    try:
        expected = bytes.fromhex(value) if re.fullmatch(r"[0-9a-fA-F]+", value) and len(value) == 2 * len(digest) \
            else base64.b32decode(value.upper())
    except ValueError:
        return False
    return expected == digest


def _reason(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return ""


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    with open(path, "a+b") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
