"""The keyword baseline: a transparent lexicon classifier, for tests and as a fallback."""

from __future__ import annotations

import re

from ..models import Classification, Passage
from .passages import split_passages
from .registry import ClassifierSpec
from .targets import Watchlist, fold
from .verdict import article_verdict


class KeywordClassifier:
    """Flags passages holding a smear phrase and a target, unless counter-speech cues are present."""

    def __init__(self, spec: ClassifierSpec):
        self.spec = spec
        self.model_id = spec.name
        self.model_version = spec.version
        self.watchlist = Watchlist.load(spec.watchlist) if spec.watchlist else None
        self._lexicon = {cat: [re.compile(rf"\b{re.escape(fold(p))}") for p in phrases]
                         for cat, phrases in spec.lexicon.items()}
        self._counter = [re.compile(rf"\b{re.escape(fold(p))}") for p in spec.counter_cues]

    def score_passage(self, text: str) -> tuple[float, dict[str, float], str]:
        """Return (score, category scores, voice) for one passage."""
        folded = fold(text)
        cats = {c: min(1.0, 0.45 * sum(bool(p.search(folded)) for p in pats)) for c, pats in self._lexicon.items()}
        cats = {c: v for c, v in cats.items() if v > 0}
        if not cats:
            return 0.0, {}, "none"
        has_target = bool(self.watchlist.find(text)) if self.watchlist else True
        counter = any(p.search(folded) for p in self._counter)
        if counter:
            return 0.1, cats, "counter"
        score = min(0.95, 0.4 + max(cats.values())) if has_target else 0.3
        voice = "attributed" if re.search(r"[\"“”«»]|\b(dijo|aseguró|afirmó|acusó|said)\b", text) else "authorial"
        return score, cats, voice

    def classify(self, texts: list[str]) -> list[Classification]:
        """Classify whole texts (articles or passages), same order as given."""
        out = []
        for text in texts:
            passages = []
            for start, end in split_passages(text, self.spec.passage_max_tokens, self.spec.passage_min_chars):
                score, cats, voice = self.score_passage(text[start:end])
                passages.append(Passage(start=start, end=end, text=text[start:end], score=score,
                                        categories=cats, voice=voice))
            out.append(article_verdict(self.model_id, self.model_version, text, passages,
                                       self.spec.threshold("stigmatising"), self.watchlist))
        return out
