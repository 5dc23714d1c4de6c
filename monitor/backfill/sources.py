"""Backfill inputs: SOURCE arguments become shards (files); a shard yields its records, bad ones included.

A shard is one WARC file (``.warc``, ``.warc.gz``) or one JSON-lines file (``.jsonl``, ``.jsonl.gz``,
one ``{"url", "text", "published", "title"?}`` object a line, for text-only archives). Reading never
raises for a bad record: it yields a :class:`BadRecord` naming the file and offset and goes on (a
truncated gzip member: reading resumes at the next member). A missing file, or a file that is not a
WARC at all, is a :class:`~monitor.errors.MonitorError` naming it, before any work starts.
"""

from __future__ import annotations

import glob
import gzip
import hashlib
import json
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from warcio.archiveiterator import ArchiveIterator

from ..errors import MonitorError

WARC_SUFFIXES = (".warc", ".warc.gz", ".arc.gz")
TEXT_SUFFIXES = (".jsonl", ".jsonl.gz", ".ndjson")
GZIP_MAGIC = b"\x1f\x8b\x08"


@dataclass(frozen=True, slots=True)
class ArchiveRecord:
    """One page of an archive: a WARC response record, or a text-only JSON line."""

    source: str                   # the shard's absolute path
    offset: int                   # byte offset of the record (gzip member) in the file; of the line for JSON lines
    length: int                   # bytes of the record (member) / of the line
    url: str
    captured_at: str              # WARC-Date (UTC); for JSON lines, "published" or ""
    status: int = 200
    headers: tuple[tuple[str, str], ...] = ()
    body: bytes = b""             # the payload exactly as stored (the HTTP body; the JSON line)
    record_id: str = ""
    payload_digest: str = ""      # WARC-Payload-Digest as written in the archive (any algorithm)
    kind: str = "warc"            # "warc" or "text"
    title: str = ""               # text-only records
    text: str = ""
    published: str | None = None


@dataclass(frozen=True, slots=True)
class BadRecord:
    """A record that cannot be read; counted and logged, never fatal."""

    source: str
    offset: int
    kind: str                     # "truncated", "unreadable", "bad_json"
    message: str


def shard_kind(path: Path) -> str | None:
    """"warc", "text", or None for a file that is neither."""
    name = path.name.lower()
    if name.endswith(WARC_SUFFIXES):
        return "warc"
    if name.endswith(TEXT_SUFFIXES):
        return "text"
    return None


def expand_sources(sources: list[str] | tuple[str, ...]) -> list[Path]:
    """Files, folders (searched recursively) and globs to a sorted list of shard paths, each checked.

    Raises:
        MonitorError: a source matches nothing, a named file is not a WARC/JSON-lines file, or a
            WARC file cannot be read as WARC (named with the reason).
    """
    found: dict[Path, None] = {}
    for source in sources:
        path = Path(source).expanduser()
        if any(c in source for c in "*?["):
            matches = [Path(m) for m in sorted(glob.glob(os.path.expanduser(source), recursive=True))]
            shards = [m for m in matches if m.is_file() and shard_kind(m)]
            if not shards:
                raise MonitorError(f"{source}: no WARC or JSON-lines file matches")
        elif path.is_dir():
            shards = sorted(p for p in path.rglob("*") if p.is_file() and shard_kind(p))
            if not shards:
                raise MonitorError(f"{source}: folder holds no .warc, .warc.gz or .jsonl file")
        elif path.is_file():
            if not shard_kind(path):
                raise MonitorError(f"{source}: not a WARC (.warc, .warc.gz) or JSON-lines (.jsonl) file")
            shards = [path]
        else:
            raise MonitorError(f"{source}: no such file or folder")
        for shard in shards:
            found.setdefault(shard.resolve(), None)
    for shard in found:
        check_shard(shard)
    return list(found)


def check_shard(path: Path) -> None:
    """Read the first record of a WARC shard so that a corrupt file fails up front, named.

    Raises:
        MonitorError: the file is empty or its first record is not WARC.
    """
    if shard_kind(path) != "warc":
        return
    try:
        with open(path, "rb") as f:
            if not f.read(1):
                raise MonitorError(f"{path}: empty file, not a WARC")
            f.seek(0)
            first = next(iter(ArchiveIterator(f)), None)
            # warcio falls back to the old ARC format for anything that is not WARC: refuse that for .warc files
            if first is None or (first.format != "warc" and not path.name.lower().endswith(".arc.gz")):
                raise MonitorError(f"{path}: not a readable WARC file (the first record is not a WARC record)")
    except MonitorError:
        raise
    except Exception as e:  # warcio raises ArchiveLoadFailed, zlib and EOF errors on damaged input
        raise MonitorError(f"{path}: not a readable WARC file ({type(e).__name__}: {e})") from None


def shard_id(path: Path) -> str:
    """A stable name for the shard's output: its file name and a short hash of its absolute path."""
    name = path.name
    for suffix in (".gz", ".warc", ".arc", ".jsonl", ".ndjson"):
        name = name.removesuffix(suffix)
    return f"{name}.{hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:10]}"


def host_filter(hosts: tuple[str, ...] | list[str]) -> Callable[[str], bool] | None:
    """A URL test keeping only these hosts and their subdomains (``jornada.com.mx`` keeps ``www.jornada.com.mx``)."""
    wanted = tuple(h.lower().strip().strip(".") for h in hosts if h.strip())
    if not wanted:
        return None

    def keep(url: str) -> bool:
        host = (urlsplit(url).hostname or "").lower()
        return any(host == h or host.endswith("." + h) for h in wanted)

    return keep


def read_shard(path: Path | str, hosts: tuple[str, ...] | list[str] = ()) -> Iterator[ArchiveRecord | BadRecord]:
    """Every page record of a shard, in file order, and the bad records among them.

    ``hosts``: keep only records of these hosts (and subdomains); the others are skipped unread.
    """
    path = Path(path)
    keep = host_filter(hosts)
    if shard_kind(path) == "text":
        yield from (r for r in _read_text(path) if keep is None or isinstance(r, BadRecord) or keep(r.url))
    else:
        yield from _read_warc(path, keep)


def _read_warc(path: Path, keep: Callable[[str], bool] | None = None) -> Iterator[ArchiveRecord | BadRecord]:
    source = str(path)
    size = path.stat().st_size
    with open(path, "rb") as f:
        start = 0
        while start < size:
            f.seek(start)
            iterator = ArchiveIterator(f)
            try:
                for record in iterator:
                    if record.rec_type != "response" or record.http_headers is None:
                        continue
                    if keep is not None and not keep(record.rec_headers.get_header("WARC-Target-URI") or ""):
                        continue
                    body = record.raw_stream.read()
                    offset, length = iterator.get_record_offset(), iterator.get_record_length()
                    status = int(record.http_headers.get_statuscode() or 0)
                    yield ArchiveRecord(
                        source=source, offset=offset, length=length,
                        url=record.rec_headers.get_header("WARC-Target-URI") or "",
                        captured_at=record.rec_headers.get_header("WARC-Date") or "",
                        status=status, headers=tuple((k, v) for k, v in record.http_headers.headers), body=body,
                        record_id=record.rec_headers.get_header("WARC-Record-ID") or "",
                        payload_digest=record.rec_headers.get_header("WARC-Payload-Digest") or "")
                return
            except Exception as e:  # a truncated or damaged gzip member: count it, resume at the next member
                offset = max(iterator.offset, start)   # where the damaged record starts
                yield BadRecord(source, offset, "truncated", f"unreadable record ({type(e).__name__}: {_short(e)})")
                start = _next_member(f, offset + 1, size)


def _short(e: Exception) -> str:
    text = str(e).encode("ascii", "backslashreplace").decode("ascii")   # warcio quotes the damaged bytes
    return text if len(text) <= 160 else text[:160] + "..."


def _next_member(f, start: int, size: int) -> int:  # type: ignore[no-untyped-def]
    """Offset of the next gzip member header after ``start`` (``size`` when there is none)."""
    block = 1 << 20
    pos = start
    while pos < size:
        f.seek(pos)
        chunk = f.read(block + len(GZIP_MAGIC))
        found = chunk.find(GZIP_MAGIC)
        if found >= 0:
            return pos + found
        pos += block
    return size


def _read_text(path: Path) -> Iterator[ArchiveRecord | BadRecord]:
    source = str(path)
    opener = gzip.open if path.name.endswith(".gz") else open
    offset = 0
    with opener(path, "rb") as f:  # type: ignore[operator]
        for line in f:
            here, offset = offset, offset + len(line)
            if not line.strip():
                continue
            try:
                item = json.loads(line)
                url, text = item["url"], item["text"]
                if not isinstance(url, str) or not isinstance(text, str):
                    raise TypeError("url and text must be strings")
            except (ValueError, KeyError, TypeError) as e:
                yield BadRecord(source, here, "bad_json", f"not a {{url, text, published}} JSON object ({e})")
                continue
            published = item.get("published") if isinstance(item.get("published"), str) else None
            yield ArchiveRecord(source=source, offset=here, length=len(line), url=url, captured_at=published or "",
                                headers=(("Content-Type", "application/json"),), body=line.rstrip(b"\r\n"),
                                kind="text", title=str(item.get("title") or ""), text=text, published=published)
