"""Split an article text into plain and highlighted segments (the desk and the dossier escape every one)."""

from __future__ import annotations

from typing import Any


def highlight_segments(text: str, passages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``[{"text", "mark", "score"}]`` covering ``text`` in order; flagged passages have ``mark`` true.

    Passage offsets are character offsets into ``articles.text``; overlapping passages are
    merged (keeping the higher score); offsets outside the text (-1: the headline) are skipped.
    """
    spans = sorted((max(0, int(p["start"])), min(len(text), int(p["end"])), float(p.get("score") or 0.0))
                   for p in passages if int(p["start"]) >= 0 and int(p["end"]) > int(p["start"]))
    merged: list[list[Any]] = []
    for start, end, score in spans:
        if merged and start <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], end)
            merged[-1][2] = max(merged[-1][2], score)
        elif start < end:
            merged.append([start, end, score])
    out: list[dict[str, Any]] = []
    pos = 0
    for start, end, score in merged:
        if start > pos:
            out.append({"text": text[pos:start], "mark": False, "score": None})
        out.append({"text": text[start:end], "mark": True, "score": round(score, 2)})
        pos = end
    if pos < len(text):
        out.append({"text": text[pos:], "mark": False, "score": None})
    return out
