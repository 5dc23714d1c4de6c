"""Split article text into passages (paragraphs, or sentence windows) with character offsets."""

from __future__ import annotations

import re
from collections.abc import Callable

_SENTENCE_END = re.compile(r"(?<=[.!?…»”\"])\s+(?=[¿¡«“\"A-ZÁÉÍÓÚÑ0-9])")


def _len_chars(text: str) -> int:
    return max(1, len(text) // 4)  # rough token estimate when no tokenizer is given


def split_passages(text: str, max_tokens: int = 160, min_chars: int = 60,
                   count_tokens: Callable[[str], int] | None = None) -> list[tuple[int, int]]:
    """Return ``(start, end)`` spans covering the text's paragraphs.

    A paragraph that is too long for the model is cut into windows of whole sentences; a very
    short line (a subheading, a dateline) is merged into the next paragraph.

    Args:
        text: article text, paragraphs separated by newlines.
        max_tokens: the most tokens a passage may hold.
        min_chars: paragraphs shorter than this are merged with the following one.
        count_tokens: token counter of the model (default: characters / 4).
    """
    count = count_tokens or _len_chars
    paragraphs = [(m.start(), m.end()) for m in re.finditer(r"[^\n]+", text)]
    paragraphs = [(s + _lead(text[s:e]), e - _trail(text[s:e])) for s, e in paragraphs]
    paragraphs = [(s, e) for s, e in paragraphs if e > s]
    merged: list[tuple[int, int]] = []
    carry: int | None = None
    for s, e in paragraphs:
        start = carry if carry is not None else s
        if e - start < min_chars:
            carry = start
            continue
        merged.append((start, e))
        carry = None
    if carry is not None:
        if merged and count(text[merged[-1][0]:paragraphs[-1][1]]) <= max_tokens:
            merged[-1] = (merged[-1][0], paragraphs[-1][1])
        else:
            merged.append((carry, paragraphs[-1][1]))
    spans: list[tuple[int, int]] = []
    for s, e in merged:
        if count(text[s:e]) <= max_tokens:
            spans.append((s, e))
        else:
            spans.extend(_sentence_windows(text, s, e, max_tokens, count))
    return spans


def _lead(s: str) -> int:
    return len(s) - len(s.lstrip())


def _trail(s: str) -> int:
    return len(s) - len(s.rstrip())


def _sentence_windows(text: str, start: int, end: int, max_tokens: int,
                      count: Callable[[str], int]) -> list[tuple[int, int]]:
    """Greedy windows of whole sentences within ``max_tokens``; an overlong sentence is cut by words."""
    chunk = text[start:end]
    bounds = [0] + [m.end() for m in _SENTENCE_END.finditer(chunk)] + [len(chunk)]
    sentences = [(start + a, start + b) for a, b in zip(bounds, bounds[1:]) if chunk[a:b].strip()]
    windows: list[tuple[int, int]] = []
    cur: tuple[int, int] | None = None
    for s, e in sentences:
        s_trim = s + _lead(text[s:e])
        e_trim = e - _trail(text[s:e])
        if cur and count(text[cur[0]:e_trim]) <= max_tokens:
            cur = (cur[0], e_trim)
            continue
        if cur:
            windows.append(cur)
        if count(text[s_trim:e_trim]) <= max_tokens:
            cur = (s_trim, e_trim)
        else:
            windows.extend(_word_windows(text, s_trim, e_trim, max_tokens, count))
            cur = None
    if cur:
        windows.append(cur)
    return windows


def _word_windows(text: str, start: int, end: int, max_tokens: int,
                  count: Callable[[str], int]) -> list[tuple[int, int]]:
    words = [(start + m.start(), start + m.end()) for m in re.finditer(r"\S+", text[start:end])]
    out: list[tuple[int, int]] = []
    i = 0
    while i < len(words):
        j = i + 1
        while j < len(words) and count(text[words[i][0]:words[j][1]]) <= max_tokens:
            j += 1
        out.append((words[i][0], words[j - 1][1]))
        i = j
    return out


HEADING_MAX_CHARS = 60
_SENTENCE_FINAL = (".", "!", "…", ":", ";", "»", "”", '"')


def body_start(text: str, start: int, end: int) -> int:
    """Where a passage's own text begins, past the kicker and headline lines merged into it.

    Short lines are merged into the next paragraph so the model reads them in context (see
    :func:`split_passages`); but a section kicker ("Opinión · Desde la Montaña") or a headline
    ("¿Buscadoras o protagonistas?") is not the smear and must not be highlighted as if it were.
    Leading lines shorter than ``HEADING_MAX_CHARS`` that do not end a sentence (a question mark
    does not: headlines ask) are skipped; the last line is always kept.
    """
    pos = start
    while True:
        newline = text.find("\n", pos, end)
        if newline < 0:
            return pos
        line = text[pos:newline].strip()
        rest = text[newline:end]
        if len(line) >= HEADING_MAX_CHARS or line.endswith(_SENTENCE_FINAL) or not rest.strip():
            return pos
        pos = newline + len(rest) - len(rest.lstrip())
