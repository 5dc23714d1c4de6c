"""Turn per-passage scores into an article verdict (shared by every classifier kind)."""

from __future__ import annotations

from ..models import Classification, Passage
from .passages import body_start
from .speakers import find_speaker
from .targets import Watchlist


def article_verdict(model_id: str, model_version: str, text: str, passages: list[Passage], threshold: float,
                    watchlist: Watchlist | None) -> Classification:
    """Combine scored passages into a :class:`Classification`.

    The article score is its best passage's score; flagged passages are those at or above
    ``threshold``, best first, each annotated with targets and (when attributed) the speaker
    (read from the whole passage the model scored) and trimmed of the kicker and headline lines
    merged into it (:func:`~monitor.classifier.passages.body_start`), so only its body is quoted.
    Category probabilities of the article are the maximum over flagged passages (over all
    passages when none is flagged).
    """
    flagged = sorted((p for p in passages if p.score >= threshold), key=lambda p: -p.score)
    annotated = []
    for p in flagged:
        targets = tuple(watchlist.find(p.text)) if watchlist else ()
        voice = p.voice
        if voice not in ("authorial", "attributed") and p.voice_scores:
            # flagged, so someone says it: the more likely of the two speaking voices
            voice = max(("authorial", "attributed"), key=lambda v: p.voice_scores.get(v, 0.0))
        speaker, official = find_speaker(p.text) if voice == "attributed" else ("", False)
        start = body_start(text, p.start, p.end) if text[p.start:p.end] == p.text else p.start
        annotated.append(Passage(start=start, end=p.end, text=text[start:p.end] if start != p.start else p.text,
                                 score=round(p.score, 4),
                                 categories={k: round(v, 4) for k, v in p.categories.items()}, voice=voice,
                                 voice_scores={k: round(v, 4) for k, v in p.voice_scores.items()},
                                 relevance=round(p.relevance, 4), speaker=speaker,
                                 speaker_is_official=official, targets=targets, embedding=p.embedding))
    pool = annotated or passages
    categories: dict[str, float] = {}
    for p in pool:
        for k, v in p.categories.items():
            categories[k] = round(max(categories.get(k, 0.0), v), 4)
    best = annotated[0] if annotated else (max(passages, key=lambda p: p.score) if passages else None)
    targets: list[str] = []
    for p in annotated:
        targets += [t for t in p.targets if t not in targets]
    if annotated and not targets and watchlist:
        targets = watchlist.find(text)[:5]  # the passage names nobody; fall back to the article
    speaker_passage = next((p for p in annotated if p.speaker), None)
    return Classification(
        model_id=model_id, model_version=model_version, stigmatising=bool(annotated),
        score=round(best.score, 4) if best else 0.0, categories=categories,
        voice=annotated[0].voice if annotated else (
            "counter" if any(p.voice == "counter" for p in passages) else "none"),
        speaker=speaker_passage.speaker if speaker_passage else "",
        speaker_is_official=speaker_passage.speaker_is_official if speaker_passage else False,
        targets=tuple(targets), passages=tuple(annotated), n_passages=len(passages),
    )
