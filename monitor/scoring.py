"""What the classifier reads of an article and how its verdict maps back onto the article's text.

Pure functions shared by the crawl (``pipeline.classify_pending``) and the backfill
(``monitor.backfill``): the same title + body text goes in, the same passage offsets come out.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Protocol

from .models import Classification


class Classifier(Protocol):
    """What the pipeline needs from a classifier."""

    model_id: str
    model_version: str

    def classify(self, texts: list[str]) -> list[Classification]:
        """Classify texts, one result per text, same order."""
        ...


def article_text(title: str | None, text: str) -> str:
    """The text scored for an article: the title with the body (headlines carry smears too)."""
    title = (title or "").strip()
    return f"{title}\n\n{text}" if title else text


def shift_to_text(result: Classification, title: str | None) -> Classification:
    """Make passage offsets point into the article's body text (the title prefix is dropped).

    A passage inside the title becomes -1 (the headline); one that runs from the title into the
    body is clipped to its body part, so the text can still be highlighted.
    """
    title = (title or "").strip()
    if not title:
        return result
    shift = len(title) + 2
    passages = tuple(
        replace(p, start=max(0, p.start - shift), end=p.end - shift) if p.end > shift else replace(p, start=-1, end=-1)
        for p in result.passages
    )
    return replace(result, passages=passages)


def classify_articles(classifier: Classifier, articles: list[tuple[str | None, str]]) -> list[Classification]:
    """Verdicts for ``(title, text)`` pairs, passage offsets into each text; one batch, same order."""
    results = classifier.classify([article_text(title, text) for title, text in articles])
    return [shift_to_text(result, title) for result, (title, _text) in zip(results, articles)]
