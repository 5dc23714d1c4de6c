"""Find who a passage targets: watchlisted defenders/organisations (with aliases) and generic groups."""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from pathlib import Path

import yaml

from ..errors import ConfigError

KINDS = ("organisation", "person", "body", "generic")


@dataclass(frozen=True, slots=True)
class Target:
    """One watchlist entry."""

    name: str
    kind: str
    aliases: tuple[str, ...]


def fold(text: str) -> str:
    """Lower-case and strip accents, keeping one character per input character."""
    out = []
    for ch in text:
        base = unicodedata.normalize("NFD", ch)[0]
        out.append(base.lower() if len(base.lower()) == 1 else ch)
    return "".join(out)


class Watchlist:
    """Compiled matcher over a watchlist file."""

    def __init__(self, targets: list[Target]):
        self.targets = targets
        self._patterns: list[tuple[Target, re.Pattern[str], bool]] = []
        for t in targets:
            for alias in sorted({t.name, *t.aliases}, key=len, reverse=True):
                acronym = len(alias) <= 6 and alias.upper() == alias and any(c.isalpha() for c in alias)
                body = re.escape(alias if acronym else fold(alias)).replace(r"\ ", r"\s+")
                pattern = re.compile(rf"(?<![\w-]){body}(?![\w])")
                self._patterns.append((t, pattern, acronym))

    @classmethod
    def load(cls, path: str | Path) -> "Watchlist":
        """Read a watchlist YAML file.

        Raises:
            ConfigError: the file is missing or malformed (every problem listed).
        """
        name = str(path)
        try:
            data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(name, ["file not found"]) from None
        except yaml.YAMLError as e:
            raise ConfigError(name, [f"not valid YAML: {e}"]) from None
        problems: list[str] = []
        targets: list[Target] = []
        if not isinstance(data, dict):
            raise ConfigError(name, ["must be a mapping with 'targets' and 'generic' lists"])
        for key in data:
            if key not in ("version", "targets", "generic"):
                problems.append(f"{key}: unknown key (allowed: generic, targets, version)")
        for section in ("targets", "generic"):
            for i, raw in enumerate(data.get(section) or []):
                where = f"{section}[{i}]"
                if not isinstance(raw, dict) or not isinstance(raw.get("name"), str) or not raw["name"].strip():
                    problems.append(f"{where}.name: is required")
                    continue
                extra = set(raw) - {"name", "kind", "aliases", "note"}
                if extra:
                    problems.append(f"{where}: unknown key(s) {', '.join(sorted(extra))}")
                kind = raw.get("kind", "generic" if section == "generic" else "organisation")
                if kind not in KINDS:
                    problems.append(f"{where}.kind: must be one of {', '.join(KINDS)}, got {kind!r}")
                aliases = raw.get("aliases") or []
                if not isinstance(aliases, list) or not all(isinstance(a, str) and a.strip() for a in aliases):
                    problems.append(f"{where}.aliases: must be a list of non-empty strings")
                    aliases = []
                targets.append(Target(raw["name"].strip(), kind, tuple(a.strip() for a in aliases)))
        if problems:
            raise ConfigError(name, problems)
        return cls(targets)

    def find(self, text: str) -> list[str]:
        """Canonical names of the targets mentioned in ``text``: named ones first, then generic."""
        folded = fold(text)
        hits: dict[str, tuple[int, int]] = {}
        for target, pattern, acronym in self._patterns:
            m = pattern.search(text if acronym else folded)
            if m:
                rank = (1 if target.kind == "generic" else 0, m.start())
                if target.name not in hits or rank < hits[target.name]:
                    hits[target.name] = rank
        return sorted(hits, key=lambda n: hits[n])
