"""Read and validate labelled JSONL (the dev set's schema) for training and evaluation."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import DataError
from .registry import CATEGORIES, VOICES


@dataclass(frozen=True, slots=True)
class Example:
    """One labelled passage."""

    id: str
    text: str
    lang: str
    stigmatising: int
    categories: tuple[str, ...]
    voice: str
    targets: tuple[str, ...]
    about_defenders: int


def json_objects(paths: list[str | Path], problems: list[str]) -> Iterator[tuple[str, dict[str, Any]]]:
    """Yield ``("file:line", object)`` for each JSON-object line of the files; append what is wrong to ``problems``.

    A missing or non-UTF-8 file, invalid JSON or a line that is not an object is recorded as
    ``file[:line]: reason`` and skipped, so a caller can report every problem at once.
    """
    for path in paths:
        p = Path(path)
        try:
            lines = p.read_text(encoding="utf-8").splitlines()
        except FileNotFoundError:
            problems.append(f"{p}: file not found")
            continue
        except UnicodeDecodeError as e:
            problems.append(f"{p}: not UTF-8 ({e})")
            continue
        for n, line in enumerate(lines, 1):
            if not line.strip():
                continue
            where = f"{p}:{n}"
            try:
                r = json.loads(line)
            except json.JSONDecodeError as e:
                problems.append(f"{where}: invalid JSON ({e.msg})")
                continue
            if not isinstance(r, dict):
                problems.append(f"{where}: expected a JSON object")
                continue
            yield where, r


def load_examples(paths: list[str | Path]) -> list[Example]:
    """Load labelled examples from JSONL files.

    ``about_defenders`` is optional (defaults to 1 for stigmatising/counter items, else 0).

    Raises:
        DataError: listing every bad line (file:line: reason), e.g. invalid JSON or an unknown category.
    """
    problems: list[str] = []
    out: list[Example] = []
    seen: dict[str, str] = {}
    for where, r in json_objects(paths, problems):
        missing = [k for k in ("id", "text", "stigmatising") if k not in r]
        if missing:
            problems.append(f"{where}: missing key(s) {', '.join(missing)}")
            continue
        cats = r.get("categories") or []
        bad = [c for c in cats if c not in CATEGORIES]
        if bad:
            problems.append(f"{where}: unknown category {', '.join(map(repr, bad))} (known: {', '.join(CATEGORIES)})")
        voice = r.get("voice", "none")
        if voice not in VOICES:
            problems.append(f"{where}: unknown voice {voice!r} (known: {', '.join(VOICES)})")
        if r["stigmatising"] not in (0, 1, True, False):
            problems.append(f"{where}: stigmatising must be 0 or 1, got {r['stigmatising']!r}")
        if not isinstance(r["text"], str) or not r["text"].strip():
            problems.append(f"{where}: empty text")
        rid = str(r["id"])
        if rid in seen:
            problems.append(f"{where}: duplicate id {rid!r} (first at {seen[rid]})")
        seen[rid] = where
        if problems and problems[-1].startswith(where):
            continue
        stig = int(r["stigmatising"])
        about = r.get("about_defenders")
        out.append(Example(
            id=rid, text=r["text"], lang=r.get("lang", ""), stigmatising=stig, categories=tuple(cats),
            voice=voice, targets=tuple(r.get("targets") or ()),
            about_defenders=int(about) if about is not None else int(stig == 1 or voice == "counter"),
        ))
    if problems:
        shown = problems[:50] + ([f"... and {len(problems) - 50} more"] if len(problems) > 50 else [])
        raise DataError(f"{len(problems)} problem(s) in labelled data:\n" + "\n".join(shown))
    return out


def data_hash(paths: list[str | Path]) -> str:
    """SHA-256 over the files' bytes in the given order (recorded in the model card)."""
    h = hashlib.sha256()
    for p in paths:
        h.update(Path(p).read_bytes())
    return h.hexdigest()
