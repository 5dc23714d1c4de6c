"""Charts for analysts as inline SVG built on the server: no JavaScript library, no CDN."""

from __future__ import annotations

from collections.abc import Callable
from html import escape
from typing import Any

import sqlite_utils

from .. import store
from ..classifier.registry import CATEGORIES

PALETTE = ["#1b6ca8", "#d1495b", "#edae49", "#66a182", "#8d6a9f", "#00798c", "#e07a5f", "#3d405b"]


def chart_data(db: sqlite_utils.Database, target: str = "") -> dict[str, Any]:
    """The overview (weekly categories, top outlets and targets), or one target's timeline."""
    if target:
        return {"weekly": [], "outlets": [], "targets": [], "timeline": store.target_timeline(db, target)}
    return {"weekly": store.weekly_flags_by_category(db), "outlets": store.top_outlets(db),
            "targets": store.top_targets(db), "timeline": []}


def stacked_weeks(rows: list[dict[str, Any]], label: Callable[[str], str]) -> str:
    """Stacked bars: one per week, one colour per category, with a legend."""
    weeks = sorted({r["week"] for r in rows})
    if not weeks:
        return ""
    totals = {w: sum(r["n"] for r in rows if r["week"] == w) for w in weeks}
    top = max(totals.values()) or 1
    width, height, bar = 760, 220, max(4, min(40, 700 // len(weeks) - 4))
    parts = [f'<svg class="chart" viewBox="0 0 {width} {height + 90}" role="img" xmlns="http://www.w3.org/2000/svg">']
    for i, w in enumerate(weeks):
        x, y = 40 + i * (bar + 4), height
        for j, cat in enumerate(CATEGORIES):
            n = sum(r["n"] for r in rows if r["week"] == w and r["category"] == cat)
            if n:
                h = n / top * (height - 20)
                y -= h
                parts.append(f'<rect x="{x}" y="{y:.1f}" width="{bar}" height="{h:.1f}" fill="{PALETTE[j]}">'
                             f'<title>{escape(w)} · {escape(label("cat." + cat))}: {n}</title></rect>')
        if i % max(1, len(weeks) // 8) == 0:
            parts.append(f'<text x="{x}" y="{height + 14}" font-size="10">{escape(w[5:])}</text>')
    parts.append(f'<text x="0" y="12" font-size="10">{top}</text>')
    for j, cat in enumerate(CATEGORIES):
        lx, ly = 40 + (j % 4) * 180, height + 36 + (j // 4) * 18
        parts.append(f'<rect x="{lx}" y="{ly - 9}" width="10" height="10" fill="{PALETTE[j]}"/>'
                     f'<text x="{lx + 14}" y="{ly}" font-size="11">{escape(label("cat." + cat))}</text>')
    parts.append("</svg>")
    return "".join(parts)


def bars(rows: list[dict[str, Any]], link: Callable[[str], str] | None = None) -> str:
    """Horizontal bars with labels and counts (optionally linking each label)."""
    if not rows:
        return ""
    top = max(r["n"] for r in rows) or 1
    height = 24 * len(rows) + 10
    parts = [f'<svg class="chart" viewBox="0 0 760 {height}" role="img" xmlns="http://www.w3.org/2000/svg">']
    for i, r in enumerate(rows):
        y = 5 + i * 24
        label = escape(str(r["label"]))
        text = f'<text x="0" y="{y + 14}" font-size="12">{label}</text>'
        if link:
            text = f'<a href="{escape(link(str(r["label"])))}">{text}</a>'
        w = r["n"] / top * 440
        parts.append(f'{text}<rect x="280" y="{y}" width="{w:.1f}" height="18" fill="{PALETTE[0]}"/>'
                     f'<text x="{285 + w:.1f}" y="{y + 14}" font-size="12">{r["n"]}</text>')
    parts.append("</svg>")
    return "".join(parts)


def timeline(rows: list[dict[str, Any]]) -> str:
    """Weekly counts for one target as bars."""
    if not rows:
        return ""
    top = max(r["n"] for r in rows) or 1
    bar = max(4, min(30, 700 // len(rows) - 4))
    parts = ['<svg class="chart" viewBox="0 0 760 200" role="img" xmlns="http://www.w3.org/2000/svg">']
    for i, r in enumerate(rows):
        h = r["n"] / top * 160
        x = 40 + i * (bar + 4)
        parts.append(f'<rect x="{x}" y="{170 - h:.1f}" width="{bar}" height="{h:.1f}" fill="{PALETTE[1]}">'
                     f'<title>{escape(r["week"])}: {r["n"]}</title></rect>')
        if i % max(1, len(rows) // 8) == 0:
            parts.append(f'<text x="{x}" y="186" font-size="10">{escape(r["week"][5:])}</text>')
    parts.append(f'<text x="0" y="12" font-size="10">{top}</text></svg>')
    return "".join(parts)


def render_all(data: dict[str, Any], label: Callable[[str], str]) -> dict[str, str]:
    """The page's SVG charts, ready to embed (every label escaped here)."""
    from urllib.parse import urlencode

    return {"weekly": stacked_weeks(data["weekly"], label), "outlets": bars(data["outlets"]),
            "targets": bars(data["targets"], lambda t: "/-/monitor/charts?" + urlencode({"target": t})),
            "timeline": timeline(data["timeline"])}
