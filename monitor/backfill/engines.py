"""Run a backfill: shards -> records -> extract -> classify -> Parquet, on a local process pool or on Ray Data.

Both engines run the same functions (``stages``) and write the same shards (``shards``):

- ``local``: the parent reads records and hands batches of 16 to ``--workers`` processes, each
  with the classifier loaded once; rows come back in order and are appended to the shard's output.
  No Ray needed.
- ``ray``: Ray Data (the ``scale`` extra): read shards (tasks) -> ``map_batches`` extraction (CPU
  tasks) -> ``map_batches`` classification in an actor pool (one classifier load per actor; GPU
  actors with ``gpus_per_worker``) -> rows streamed back to the driver, which writes the shards.
  Without ``address`` Ray starts on this machine.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import sys
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import MonitorError
from . import shards as shard_io
from .sources import ArchiveRecord, BadRecord, read_shard
from .stages import BATCH_SIZE, load_classifier_once, process_records

LOGGER = logging.getLogger(__name__)
ENGINES = ("local", "ray")
READ_CPUS = 0.25          # Ray: a shard reader mostly waits on I/O and gunzip
BLOCK_BYTES = 1 << 20     # Ray: blocks of about one batch of pages
CLASSIFY_CPUS = 0.99      # Ray: one core per classifier actor; not 1, so that Ray never fuses it with extraction


@dataclass
class BackfillSummary:
    """Counters of one backfill run."""

    shards: int = 0
    shards_done: int = 0
    shards_skipped: int = 0          # output already complete and current
    records: int = 0
    articles: int = 0
    flagged: int = 0
    bad: Counter = field(default_factory=Counter)   # error kind -> records
    seconds: float = 0.0
    bytes_total: int = 0
    bytes_done: int = 0
    outputs: list[Path] = field(default_factory=list)

    @property
    def rate(self) -> float:
        """Records per second so far."""
        return self.records / self.seconds if self.seconds > 0 else 0.0

    def progress_line(self) -> str:
        """Records/s, shards done and ETA (from the bytes of input read)."""
        eta = ""
        if self.bytes_done and self.bytes_total > self.bytes_done and self.seconds > 0:
            left = self.seconds * (self.bytes_total - self.bytes_done) / self.bytes_done
            eta = f", ETA {_duration(left)}"
        return (f"{self.records} records ({self.rate:.1f}/s), shards {self.shards_done + self.shards_skipped}/"
                f"{self.shards}{eta}")

    def line(self) -> str:
        """The summary printed at the end."""
        bad = ", ".join(f"{k} {v}" for k, v in sorted(self.bad.items())) or "none"
        skipped = f" ({self.shards_skipped} already done)" if self.shards_skipped else ""
        return (f"backfill: {self.shards} shard(s){skipped}, {self.records} records in {self.seconds:.1f} s "
                f"({self.rate:.1f}/s); articles {self.articles}, flagged {self.flagged}; bad records: {bad}")


def _duration(seconds: float) -> str:
    s = int(seconds)
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"


ProgressFn = Callable[[BackfillSummary], None]


def _batches(items: Iterable[Any], size: int) -> Iterator[list[Any]]:
    batch: list[Any] = []
    for item in items:
        batch.append(item)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def run_backfill(sources: list[Path], out: Path, classifier: str, engine: str = "local", workers: int = 0,
                 address: str | None = None, gpus_per_worker: float = 0, model_dir: str | None = None,
                 redo: bool = False, progress: ProgressFn | None = None,
                 hosts: tuple[str, ...] = ()) -> BackfillSummary:
    """Backfill ``sources`` (shard paths, see ``sources.expand_sources``) into Parquet shards under ``out``.

    Shards whose output is complete and current are skipped unless ``redo``. ``hosts``: keep only
    records of these hosts and their subdomains (e.g. the outlets of feeds.yaml in a Common Crawl file).

    Raises:
        MonitorError: unknown engine, or ``ray`` without the ``scale`` extra installed.
    """
    if engine not in ENGINES:
        raise MonitorError(f"--engine must be one of {', '.join(ENGINES)}, got {engine!r}")
    workers = workers if workers > 0 else (os.cpu_count() or 1)
    out.mkdir(parents=True, exist_ok=True)
    summary = BackfillSummary(shards=len(sources))
    todo = []
    for source in sources:
        if not redo and shard_io.is_done(out, source, classifier, hosts):
            summary.shards_skipped += 1
            summary.outputs.append(shard_io.output_path(out, source))
        else:
            todo.append(source)
    summary.bytes_total = sum(s.stat().st_size for s in todo)
    started = time.perf_counter()
    tracker = _Tracker(summary, started, progress)
    if engine == "ray":
        _run_ray(todo, out, classifier, workers, address, gpus_per_worker, model_dir, tracker, hosts)
    else:
        _run_local(todo, out, classifier, workers, model_dir, tracker, hosts)
    summary.seconds = time.perf_counter() - started
    return summary


class _Tracker:
    """Counts rows and shards as they are written; calls ``progress`` at most every 2 s."""

    def __init__(self, summary: BackfillSummary, started: float, progress: ProgressFn | None):
        self.summary, self.started, self.progress = summary, started, progress
        self.last = 0.0
        self.read: dict[str, int] = {}

    def rows(self, rows: list[dict[str, Any]]) -> None:
        s = self.summary
        for row in rows:
            s.records += 1
            if row["error_kind"]:
                s.bad[row["error_kind"]] += 1
                LOGGER.warning("bad record %s@%d (%s): %s", Path(row["source"]).name, row["offset"],
                               row["error_kind"], row["error"])
            s.articles += int(bool(row["text"]))
            s.flagged += int(bool(row["stigmatising"]))
            end = row["offset"] + row["length"]
            if end > self.read.get(row["source"], 0):
                s.bytes_done += end - self.read.get(row["source"], 0)
                self.read[row["source"]] = end
        self._report()

    def shard_done(self, path: Path) -> None:
        self.summary.shards_done += 1
        self.summary.outputs.append(path)
        self._report(force=True)

    def _report(self, force: bool = False) -> None:
        now = time.perf_counter()
        self.summary.seconds = now - self.started
        if self.progress is not None and (force or now - self.last >= 2.0):
            self.last = now
            self.progress(self.summary)


# --- local engine: a process pool, no Ray ------------------------------------------------------

_worker_classifier: Any = None


def _init_worker(classifier: str, model_dir: str | None, threads: int) -> None:
    global _worker_classifier
    signal.signal(signal.SIGINT, signal.SIG_IGN)   # the parent decides when to stop
    _worker_classifier = load_classifier_once(classifier, model_dir)
    _set_threads(threads)


def _set_threads(threads: int) -> None:
    if "torch" in sys.modules:   # the transformer classifier sets torch to every core; one share per worker
        import torch

        torch.set_num_threads(max(1, threads))


def _work(records: list[ArchiveRecord | BadRecord]) -> list[dict[str, Any]]:
    return process_records(records, _worker_classifier)


def _run_local(todo: list[Path], out: Path, classifier: str, workers: int, model_dir: str | None,
               tracker: _Tracker, hosts: tuple[str, ...] = ()) -> None:
    if not todo:
        return
    if workers <= 1:
        model = load_classifier_once(classifier, model_dir)
        for source in todo:
            writer = shard_io.ShardWriter(out, source, classifier, hosts)
            try:
                for batch in _batches(read_shard(source, hosts), BATCH_SIZE):
                    rows = process_records(batch, model)
                    writer.write(shard_io.to_table(rows))
                    tracker.rows(rows)
            except BaseException:
                writer.abort()
                raise
            tracker.shard_done(writer.commit())
        return
    threads = max(1, (os.cpu_count() or 1) // workers)
    # spawn, not fork: the parent may hold threads (torch) that fork would copy mid-lock
    pool = ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"),
                               initializer=_init_worker, initargs=(classifier, model_dir, threads))
    pending: deque[tuple[shard_io.ShardWriter, Future | None]] = deque()   # None: commit the shard here
    open_writers: list[shard_io.ShardWriter] = []

    def settle(limit: int) -> None:
        while len(pending) > limit or (pending and pending[0][1] is None):
            writer, future = pending.popleft()
            if future is None:
                open_writers.remove(writer)
                tracker.shard_done(writer.commit())
                continue
            rows = future.result()
            writer.write(shard_io.to_table(rows))
            tracker.rows(rows)

    try:
        for source in todo:
            writer = shard_io.ShardWriter(out, source, classifier, hosts)
            open_writers.append(writer)
            for batch in _batches(read_shard(source, hosts), BATCH_SIZE):
                pending.append((writer, pool.submit(_work, batch)))
                settle(3 * workers)
            pending.append((writer, None))
        settle(0)
    except BaseException as e:
        for writer in open_writers:
            writer.abort()
        pool.shutdown(wait=False, cancel_futures=True)
        if isinstance(e, BrokenProcessPool):
            raise MonitorError(f"a backfill worker process died (out of memory? killed?) while working on "
                               f"{open_writers[0].path.name if open_writers else 'a shard'}; rerun the same command: "
                               f"finished shards are kept, unfinished ones start over") from None
        raise
    pool.shutdown(wait=True)


# --- Ray Data engine ----------------------------------------------------------------------------

def _record_dict(r: ArchiveRecord | BadRecord) -> dict[str, Any]:
    if isinstance(r, BadRecord):
        return {"source": r.source, "offset": r.offset, "length": 0, "url": "", "captured_at": "", "status": 0,
                "headers": "[]", "body": b"", "record_id": "", "payload_digest": "", "kind": "bad", "title": "",
                "text": "", "published": None, "bad_kind": r.kind, "bad_message": r.message}
    import json

    return {"source": r.source, "offset": r.offset, "length": r.length, "url": r.url, "captured_at": r.captured_at,
            "status": r.status, "headers": json.dumps([list(h) for h in r.headers], ensure_ascii=False),
            "body": r.body, "record_id": r.record_id, "payload_digest": r.payload_digest, "kind": r.kind,
            "title": r.title, "text": r.text, "published": r.published, "bad_kind": "", "bad_message": ""}


def _record_of(d: dict[str, Any]) -> ArchiveRecord | BadRecord:
    import json

    if d["kind"] == "bad":
        return BadRecord(d["source"], d["offset"], d["bad_kind"], d["bad_message"])
    return ArchiveRecord(source=d["source"], offset=d["offset"], length=d["length"], url=d["url"],
                         captured_at=d["captured_at"], status=d["status"],
                         headers=tuple((k, v) for k, v in json.loads(d["headers"])), body=d["body"],
                         record_id=d["record_id"], payload_digest=d["payload_digest"], kind=d["kind"],
                         title=d["title"], text=d["text"], published=d["published"])


def _record_schema():  # type: ignore[no-untyped-def]
    import pyarrow as pa

    return pa.schema([("source", pa.string()), ("offset", pa.int64()), ("length", pa.int64()), ("url", pa.string()),
                      ("captured_at", pa.string()), ("status", pa.int32()), ("headers", pa.string()),
                      ("body", pa.binary()), ("record_id", pa.string()), ("payload_digest", pa.string()),
                      ("kind", pa.string()), ("title", pa.string()), ("text", pa.string()),
                      ("published", pa.string()), ("bad_kind", pa.string()), ("bad_message", pa.string())])


def _read_shards(batch, hosts: tuple[str, ...] = ()):  # type: ignore[no-untyped-def]
    """Ray task: the records of each shard in the batch, one block per classifier batch (a generator: bounded memory)."""
    import pyarrow as pa

    schema = _record_schema()
    for path in batch.column("path").to_pylist():
        for records in _batches(read_shard(path, hosts), BATCH_SIZE):
            yield pa.Table.from_pylist([_record_dict(r) for r in records], schema=schema)


def _extract(batch):  # type: ignore[no-untyped-def]
    """Ray task: extraction and dedup keys (the crawl's ``process_page``), no classifier."""
    from .stages import bad_row, record_row

    rows = [bad_row(r) if isinstance(r, BadRecord) else record_row(r) for r in map(_record_of, batch.to_pylist())]
    return shard_io.to_table(rows)


class _Classify:
    """Ray actor: loads the classifier once, then classifies batches of extracted rows."""

    def __init__(self, classifier: str, model_dir: str | None, threads: int, gpu: bool):
        self.classifier = load_classifier_once(classifier, model_dir)
        _set_threads(threads)
        if gpu:
            _to_gpu(self.classifier)

    def __call__(self, batch):  # type: ignore[no-untyped-def]
        from .stages import classify_rows

        return shard_io.to_table(classify_rows(self.classifier, batch.to_pylist()))


def _to_gpu(classifier: Any) -> None:
    """Move a transformer classifier to CUDA when there is one (a keyword classifier has nothing to move)."""
    import torch

    if torch.cuda.is_available() and hasattr(classifier, "to_device"):
        classifier.to_device("cuda")
    else:
        LOGGER.warning("--gpus-per-worker given but %s", "CUDA is not available" if not torch.cuda.is_available()
                       else "this classifier runs on CPU only")


def _run_ray(todo: list[Path], out: Path, classifier: str, workers: int, address: str | None,
             gpus_per_worker: float, model_dir: str | None, tracker: _Tracker, hosts: tuple[str, ...] = ()) -> None:
    try:
        import ray
        import ray.data
    except ImportError:
        raise MonitorError("--engine ray needs Ray: pip install 'smear-monitor[scale]' (or '.[scale]' in a "
                           "checkout), or use --engine local") from None
    if not todo:
        return
    started_here = not ray.is_initialized()
    if started_here:
        # each worker: one extraction slot and one classifier actor, hence 2 logical CPUs per worker locally
        ray.init(address=address, num_cpus=None if address else 2 * workers + 1, include_dashboard=False,
                 log_to_driver=False, configure_logging=False,
                 runtime_env={"env_vars": {"PYTHONPATH": os.environ["PYTHONPATH"]}}
                 if not address and os.environ.get("PYTHONPATH") else None)
    try:
        context = ray.data.DataContext.get_current()
        context.execution_options.preserve_order = True   # rows reach each shard in file order
        # Ray Data buffers a task's output up to target_max_block_size (128 MiB) before passing it on: a
        # whole shard would become one block, extracted by one task and classified by one actor. Small
        # blocks (about one batch of pages) spread a shard over every actor and stream rows back.
        context.target_max_block_size = BLOCK_BYTES
        context.enable_progress_bars = False
        window = max(1, 2 * workers)
        for start in range(0, len(todo), window):
            _ray_window(ray, todo[start:start + window], out, classifier, workers, gpus_per_worker, model_dir, tracker,
                        hosts)
    finally:
        if started_here:
            ray.shutdown()


def _ray_window(ray, sources: list[Path], out: Path, classifier: str, workers: int,  # type: ignore[no-untyped-def]
                gpus_per_worker: float, model_dir: str | None, tracker: _Tracker, hosts: tuple[str, ...]) -> None:
    writers = {str(s): shard_io.ShardWriter(out, s, classifier, hosts) for s in sources}
    try:
        # Different CPU requests keep Ray from fusing the three steps into one (fused, one shard would be
        # read, extracted and classified by a single actor): reading is light, extraction takes a core
        # per task, each classifier actor a core (or its GPUs).
        ds = ray.data.from_items([{"path": str(s)} for s in sources], override_num_blocks=len(sources))
        ds = ds.map_batches(_read_shards, batch_size=1, batch_format="pyarrow", fn_kwargs={"hosts": tuple(hosts)},
                            num_cpus=READ_CPUS)
        ds = ds.map_batches(_extract, batch_size=BATCH_SIZE, batch_format="pyarrow", num_cpus=1)
        ds = ds.map_batches(_Classify, fn_constructor_args=(classifier, model_dir, 1, gpus_per_worker > 0),
                            compute=ray.data.ActorPoolStrategy(size=workers), batch_size=BATCH_SIZE,
                            batch_format="pyarrow", num_cpus=CLASSIFY_CPUS, num_gpus=gpus_per_worker or None)
        for table in ds.iter_batches(batch_format="pyarrow", batch_size=None):
            rows = table.to_pylist()
            for source, part in _by_source(rows).items():
                writers[source].write(shard_io.to_table(part))
            tracker.rows(rows)
    except BaseException:
        for writer in writers.values():
            writer.abort()
        raise
    for writer in writers.values():
        tracker.shard_done(writer.commit())


def _by_source(rows: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    grouped: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        grouped.setdefault(row["source"], []).append(row)
    return grouped
