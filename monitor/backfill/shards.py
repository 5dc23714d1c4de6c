"""The Parquet shard format: one output file per input shard, written to a temporary name, then renamed.

A rerun of a shard replaces only its own output (``<name>.<hash>.parquet``); a run killed
mid-shard leaves at most a ``.tmp`` file, never a half shard under the final name. The file's
metadata names the source (path, size, mtime) and the classifier, so a rerun skips shards whose
output is complete and current.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from .sources import shard_id

SCHEMA = pa.schema([
    ("source", pa.string()), ("offset", pa.int64()), ("length", pa.int64()), ("kind", pa.string()),
    ("url", pa.string()), ("captured_at", pa.string()), ("status", pa.int32()), ("headers", pa.string()),
    ("content_type", pa.string()), ("sha256", pa.string()), ("size", pa.int64()), ("body_gz", pa.binary()),
    ("record_id", pa.string()), ("payload_digest", pa.string()), ("error_kind", pa.string()), ("error", pa.string()),
    ("title", pa.string()), ("text", pa.string()), ("author", pa.string()), ("published", pa.string()),
    ("site_name", pa.string()), ("language", pa.string()), ("canonical_url", pa.string()),
    ("description", pa.string()), ("fingerprint", pa.string()), ("signature", pa.binary()), ("bands", pa.string()),
    ("model_id", pa.string()), ("model_version", pa.string()), ("stigmatising", pa.bool_()), ("score", pa.float64()),
    ("classification", pa.string()),
])
META_KEY = b"smear-monitor.backfill"


def output_path(out: Path, source: Path) -> Path:
    """Where a shard's rows go."""
    return out / f"{shard_id(source)}.parquet"


def source_stamp(source: Path, classifier: str, hosts: tuple[str, ...] = ()) -> dict[str, Any]:
    """What identifies an input shard's content and how it was processed (classifier, host filter)."""
    st = source.stat()
    return {"source": str(source), "size": st.st_size, "mtime_ns": st.st_mtime_ns, "classifier": classifier,
            "hosts": sorted(hosts)}


def is_done(out: Path, source: Path, classifier: str, hosts: tuple[str, ...] = ()) -> bool:
    """True when the shard's output exists, is complete, and was made from this file with this classifier."""
    path = output_path(out, source)
    if not path.is_file():
        return False
    try:
        meta = pq.read_schema(path).metadata or {}
        return json.loads(meta.get(META_KEY, b"{}")) == source_stamp(source, classifier, hosts)
    except (OSError, ValueError, pa.ArrowException):
        return False


def to_table(rows: list[dict[str, Any]]) -> pa.Table:
    """Rows (``stages`` dicts) as an Arrow table of :data:`SCHEMA`."""
    return pa.Table.from_pylist(rows, schema=SCHEMA)


class ShardWriter:
    """Appends a shard's rows to ``<output>.tmp``; ``commit`` renames it into place (fsync'ed)."""

    def __init__(self, out: Path, source: Path, classifier: str, hosts: tuple[str, ...] = ()):
        out.mkdir(parents=True, exist_ok=True)
        self.path = output_path(out, source)
        self.tmp = self.path.with_name(self.path.name + ".tmp")
        schema = SCHEMA.with_metadata({META_KEY: json.dumps(source_stamp(source, classifier, hosts)).encode()})
        self._writer = pq.ParquetWriter(self.tmp, schema, compression="zstd")
        self.rows = 0

    def write(self, table: pa.Table) -> None:
        """Append rows (a table of :data:`SCHEMA`)."""
        if table.num_rows:
            self._writer.write_table(table.cast(self._writer.schema))
            self.rows += table.num_rows

    def commit(self) -> Path:
        """Close and move the file into place: the shard's previous output is replaced at once."""
        self._writer.close()
        with open(self.tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(self.tmp, self.path)
        return self.path

    def abort(self) -> None:
        """Drop the partial output."""
        try:
            self._writer.close()
        finally:
            self.tmp.unlink(missing_ok=True)


def shard_files(folder: Path) -> list[Path]:
    """The committed shard outputs of a backfill folder."""
    return sorted(folder.glob("*.parquet"))


def iter_rows(path: Path, batch_size: int = 256) -> Iterator[dict[str, Any]]:
    """The rows of one shard output, in order, a batch at a time."""
    parquet = pq.ParquetFile(path)
    for batch in parquet.iter_batches(batch_size=batch_size):
        yield from batch.to_pylist()
