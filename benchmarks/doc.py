"""Write one benchmark's section of docs/benchmarks.md (shared by every script in benchmarks/)."""

from __future__ import annotations

import re
from pathlib import Path


def write_section(path: Path, heading: str, section: str) -> None:
    """Replace the ``## `` section starting with ``heading`` in ``path``, or append it."""
    text = path.read_text() if path.is_file() else "# Benchmarks\n\nFigures written by the scripts in `benchmarks/`.\n"
    pattern = re.compile(rf"^{re.escape(heading)}.*?(?=^## |\Z)", re.S | re.M)
    text = pattern.sub(lambda _m: section + "\n", text) if pattern.search(text) else text.rstrip() + "\n\n" + section
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
