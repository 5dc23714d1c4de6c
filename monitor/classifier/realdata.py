"""Labels on real text that the project may not copy: resolve them from a local copy of the source.

Two of the real sources the classifier learns from (``ljz``, ``mananeras``) state no licence, so the
repository keeps only *pointers*: a label line names the source, the document id, the character
span and the SHA-256 of the passage text. This module finds the documents in a local copy of the
sources (``../shared/data/news`` by default, ``MONITOR_NEWS_SOURCES`` or a path the caller gives),
cuts each passage out, checks its hash, and returns ordinary training examples. Anything that does
not match is named with ``file:line``; nothing is trained on silently.

The CC BY 4.0 corpus (``news2018``) is resolved the same way, so every real label has one format.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import DataError
from .data import Example, json_objects
from .registry import CATEGORIES, VOICES

SOURCE_FILES = {
    "news2018": "spanish_news_2018.jsonl",
    "ljz": "ljz/articles_2013.jsonl.gz",
    "mananeras": "mananeras/segments_2018_2023h1.jsonl.gz",
}
SPLITS = ("train", "real-dev")
# The newest part of each source's TRAIN split, held back when a training run is for choosing
# settings (``monitor train --hold-out-calibration``): settings and thresholds are chosen on it, so
# that real-dev is only ever read for the figures. The shipped model is then trained on all of train.
CALIBRATION_FROM = {"mananeras": "2021-09-01", "ljz": "2013-09-01"}
VIEWS = ("train", "real-dev", "calibration", "train-fit")


@dataclass(frozen=True, slots=True)
class Document:
    """One document of a real source (text never leaves the local copy)."""

    source: str
    id: str
    date: str
    text: str
    title: str = ""
    section: str = ""
    speaker: str = ""


@dataclass(frozen=True, slots=True)
class RealExample:
    """A resolved label: the example plus where it came from."""

    example: Example
    source: str
    doc: str
    start: int
    end: int
    split: str
    date: str


def default_root() -> Path:
    """The local copy of the real sources: ``MONITOR_NEWS_SOURCES`` or ``../shared/data/news``."""
    env = os.environ.get("MONITOR_NEWS_SOURCES")
    if env:
        return Path(env)
    here = Path(__file__).resolve().parents[2]
    return here.parent / "shared" / "data" / "news"


def in_calibration(source: str, doc: str, date: str) -> bool:
    """Is a train document in the calibration fold (newest train months; a fixed fifth of news2018)?"""
    if source in CALIBRATION_FROM:
        return date >= CALIBRATION_FROM[source]
    return int(hashlib.sha256(doc.encode()).hexdigest(), 16) % 5 == 0


def passage_sha256(text: str) -> str:
    """The hash a label keeps for its passage (UTF-8 bytes of exactly the span)."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _open_lines(path: Path):
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as fh:
        yield from fh


def _document(source: str, row: dict[str, Any]) -> Document:
    if source == "news2018":
        # the corpus numbers its train and development splits separately
        return Document(source, f"{row['split']}-{row['id']}", "", row.get("text") or "",
                        title=row.get("headline") or "", section=row.get("topic") or "")
    speaker = row.get("speaker")
    return Document(source, str(row["id"]), str(row.get("date") or ""), row.get("text") or "",
                    title=row.get("title") or "", section=str(row.get("section") or ""),
                    speaker="" if speaker in (None, "None") else str(speaker))


_CACHE: dict[tuple[str, str], dict[str, Document]] = {}


def load_documents(source: str, root: str | Path | None = None) -> dict[str, Document]:
    """All documents of one source, by id.

    Raises:
        DataError: unknown source, or its file is missing from the local copy.
    """
    if source not in SOURCE_FILES:
        raise DataError(f"unknown source {source!r} (known: {', '.join(SOURCE_FILES)})")
    base = Path(root) if root else default_root()
    path = base / SOURCE_FILES[source]
    key = (source, str(path))
    if key in _CACHE:
        return _CACHE[key]
    if not path.is_file():
        raise DataError(
            f"source {source!r} not found at {path}: labels on real text need a local copy of the sources "
            f"(give its folder with --sources or MONITOR_NEWS_SOURCES); the shipped model works without them"
        )
    docs: dict[str, Document] = {}
    for n, line in enumerate(_open_lines(path), 1):
        if not line.strip():
            continue
        try:
            doc = _document(source, json.loads(line))
        except (json.JSONDecodeError, KeyError, TypeError) as e:
            raise DataError(f"{path}:{n}: not a document of {source} ({e})") from None
        docs[doc.id] = doc
    _CACHE[key] = docs
    return docs


_REQUIRED = ("source", "doc", "start", "end", "sha256", "stigmatising", "split")


def load_real_labels(paths: list[str | Path], root: str | Path | None = None,
                     splits: tuple[str, ...] = SPLITS) -> list[RealExample]:
    """Resolve pointer labels (JSON lines) against the local sources and verify every hash.

    Args:
        paths: label files (``classifiers/<name>/data/real/*.jsonl``).
        root: the local copy of the sources (default: :func:`default_root`).
        splits: keep only labels of these splits (``train``, ``real-dev``) or views of train
            (``calibration``: its newest documents; ``train-fit``: train without them).

    Raises:
        DataError: every bad line, as ``file:line: reason`` (missing source, unknown document,
            offsets outside the document, hash mismatch, unknown category or voice, bad split).
    """
    problems: list[str] = []
    out: list[RealExample] = []
    seen: dict[tuple[str, str, int, int], str] = {}
    for where, r in json_objects(paths, problems):
        missing = [k for k in _REQUIRED if k not in r]
        if missing:
            problems.append(f"{where}: missing key(s) {', '.join(missing)}")
            continue
        line_problems = _check_fields(r)
        if line_problems:
            problems += [f"{where}: {m}" for m in line_problems]
            continue
        try:
            docs = load_documents(r["source"], root)
        except DataError as e:
            problems.append(f"{where}: {e}")
            continue
        doc = docs.get(str(r["doc"]))
        if doc is None:
            problems.append(f"{where}: document {r['doc']!r} not in source {r['source']!r}")
            continue
        start, end = int(r["start"]), int(r["end"])
        if not 0 <= start < end <= len(doc.text):
            problems.append(f"{where}: offsets {start}:{end} outside document {doc.id!r} "
                            f"({len(doc.text)} characters)")
            continue
        text = doc.text[start:end]
        if passage_sha256(text) != r["sha256"]:
            problems.append(f"{where}: SHA-256 of {r['source']}/{doc.id}[{start}:{end}] does not match the "
                            f"label: the local source differs from the one labelled")
            continue
        key = (r["source"], doc.id, start, end)
        if key in seen:
            problems.append(f"{where}: the same passage is labelled twice (first at {seen[key]})")
            continue
        seen[key] = where
        view = r["split"]
        if view == "train":
            view = "calibration" if in_calibration(r["source"], doc.id, doc.date) else "train-fit"
        if r["split"] not in splits and view not in splits:
            continue
        stig = int(r["stigmatising"])
        voice = r.get("voice") or "none"
        about = r.get("about_defenders")
        targets = tuple(r.get("targets") or ()) + tuple(
            doc.text[a:b] for a, b in (r.get("target_spans") or ()) if 0 <= a < b <= len(doc.text))
        example = Example(
            id=f"{r['source']}:{doc.id}:{start}-{end}", text=text, lang="es", stigmatising=stig,
            categories=tuple(r.get("categories") or ()), voice=voice, targets=targets,
            about_defenders=int(about) if about is not None else int(stig == 1 or voice == "counter"),
        )
        out.append(RealExample(example, r["source"], doc.id, start, end, r["split"], doc.date))
    if problems:
        shown = problems[:50] + ([f"... and {len(problems) - 50} more"] if len(problems) > 50 else [])
        raise DataError(f"{len(problems)} problem(s) in real-text labels:\n" + "\n".join(shown))
    return out


def _check_fields(r: dict[str, Any]) -> list[str]:
    problems = []
    if r["source"] not in SOURCE_FILES:
        problems.append(f"unknown source {r['source']!r} (known: {', '.join(SOURCE_FILES)})")
    if r["split"] not in SPLITS:
        problems.append(f"unknown split {r['split']!r} (known: {', '.join(SPLITS)})")
    if r["stigmatising"] not in (0, 1, True, False):
        problems.append(f"stigmatising must be 0 or 1, got {r['stigmatising']!r}")
    cats = r.get("categories") or []
    bad = [c for c in cats if c not in CATEGORIES]
    if bad:
        problems.append(f"unknown category {', '.join(map(repr, bad))} (known: {', '.join(CATEGORIES)})")
    if r.get("voice", "none") not in VOICES:
        problems.append(f"unknown voice {r.get('voice')!r} (known: {', '.join(VOICES)})")
    if not all(isinstance(r[k], int) and not isinstance(r[k], bool) for k in ("start", "end")):
        problems.append("start and end must be integers")
    if not isinstance(r["sha256"], str) or len(r["sha256"]) != 64:
        problems.append("sha256 must be 64 hex digits")
    return problems
