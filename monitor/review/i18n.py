"""The desk's translations: one catalogue (messages.yaml), Spanish by default, English selectable."""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache
from pathlib import Path

import yaml

LANGUAGES = ("es", "en")
DEFAULT = "es"


@lru_cache(maxsize=1)
def catalogue() -> dict[str, dict[str, str]]:
    """Message id -> {language: text}."""
    return yaml.safe_load((Path(__file__).with_name("messages.yaml")).read_text(encoding="utf-8"))


def translator(lang: str) -> Callable[[str], str]:
    """``_(msgid)`` for ``lang``; an unknown id comes back as itself (visible, never a crash)."""
    lang = lang if lang in LANGUAGES else DEFAULT
    messages = catalogue()

    def _(msgid: str) -> str:
        entry = messages.get(msgid)
        return entry.get(lang, entry.get(DEFAULT, msgid)) if entry else msgid

    return _
