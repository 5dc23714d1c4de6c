"""Turn reviewers' decisions stored in the database into training examples (``monitor train --from-db``)."""

from __future__ import annotations

import json
from typing import Any

from .data import Example
from .registry import CATEGORIES


def examples_from_reviews(db: Any, category_threshold: float = 0.4) -> list[Example]:
    """One example per reviewed article (its latest decision), on the flagged passages' text.

    confirm -> stigmatising with the reviewer's categories/voice, else the model's;
    reject -> not stigmatising (voice "counter" if the reviewer said so, else "none");
    relabel -> stigmatising with the reviewer's categories.
    """
    rows = db.query(
        "SELECT r.article_id, r.decision, r.categories AS r_categories, r.voice AS r_voice, r.targets AS r_targets, "
        "c.categories AS c_categories, c.voice AS c_voice, "
        "(SELECT group_concat(p.text, '\n') FROM passages p WHERE p.classification_id = c.id) AS passages "
        "FROM latest_reviews r JOIN latest_classifications c ON c.article_id = r.article_id"
    )
    out: list[Example] = []
    for r in rows:
        if not r["passages"]:
            continue
        model_cats = json.loads(r["c_categories"] or "{}")
        reviewer_cats = [c for c in json.loads(r["r_categories"] or "[]") if c in CATEGORIES]
        targets = tuple(json.loads(r["r_targets"] or "[]"))
        if r["decision"] == "reject":
            voice = r["r_voice"] if r["r_voice"] in ("counter", "none") else "none"
            out.append(Example(f"review-{r['article_id'][:12]}", r["passages"], "", 0, (), voice,
                               targets if voice == "counter" else (), int(voice == "counter")))
            continue
        cats = reviewer_cats or [c for c, v in model_cats.items() if v >= category_threshold]
        if not cats:
            continue
        voice = r["r_voice"] if r["r_voice"] in ("authorial", "attributed") else (
            r["c_voice"] if r["c_voice"] in ("authorial", "attributed") else "authorial")
        out.append(Example(f"review-{r['article_id'][:12]}", r["passages"], "", 1, tuple(cats), voice, targets, 1))
    return out
