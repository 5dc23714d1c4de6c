"""Campaign detection: flagged passages that attack one target across outlets within a window, grouped.

A campaign is found two ways (docs/campaigns.md):

- **target + category**: passages naming the same target in the same category from at least
  ``min_outlets`` distinct outlets within ``window_hours`` (a sliding window);
- **the same text**: passages that are copies (MinHash Jaccard of word shingles, from
  :mod:`monitor.dedup`) or paraphrases (cosine of the classifier's e5 passage embeddings) of one
  another, from at least ``min_outlets`` outlets within the window. With the keyword baseline
  there are no embeddings: only copies are found this way.

Later passages join a campaign when they share its (target, category) and fall within the window
of its span, or copy or paraphrase one of its members. Detection is incremental: each update reads
only the flagged passages added since the last one (a watermark in ``monitor_state``), in
passage order, and compares each with passages seen before it, so ``rebuild`` (the same steps over
every passage) gives the same campaigns. One update is one transaction.
"""

from __future__ import annotations

import json
import logging
import math
import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

import numpy as np
import sqlite_utils

from . import store
from .alerts.config import CampaignSettings
from .dedup import MinHasher, is_empty_signature
from .fetch import utc_now

LOGGER = logging.getLogger(__name__)
WATERMARK = "campaigns.passage_id"
REVIEW_WATERMARK = "campaigns.review_id"   # reviews already applied to campaigns
REBUILD_CHUNK = 2000
_ISO = "%Y-%m-%dT%H:%M:%SZ"
_HASHERS: dict[int, MinHasher] = {}


@dataclass(frozen=True, slots=True)
class Item:
    """One flagged passage as campaign detection sees it."""

    passage_id: int
    classification_id: int
    article_id: str
    outlet_id: str
    at: str                                   # ISO UTC: when it was published (see ``item_time``)
    t: float                                  # the same, in epoch seconds
    keys: tuple[tuple[str, str], ...]         # (target, category) pairs
    signature: bytes                          # MinHash of the passage text
    embedding: np.ndarray | None              # float32, L2-normalised, or None


@dataclass
class UpdateResult:
    """What one update did."""

    items: int = 0
    created: list[int] = field(default_factory=list)
    updated: list[int] = field(default_factory=list)
    reviewed: list[int] = field(default_factory=list)   # recomputed because reviewers decided on a member
    seconds: float = 0.0

    def line(self) -> str:
        """One line for logs and the CLI."""
        return (f"campaigns: {self.items} new flagged passage(s), {len(self.created)} new campaign(s), "
                f"{len(self.updated)} updated, {len(self.reviewed)} recomputed after reviews, {self.seconds:.2f}s")


def hasher(k: int) -> MinHasher:
    """The MinHasher for passages (128 permutations, word ``k``-shingles), built once per ``k``."""
    if k not in _HASHERS:
        _HASHERS[k] = MinHasher(k=k)
    return _HASHERS[k]


# --- items ----------------------------------------------------------------------------------

def iso(t: float) -> str:
    """Epoch seconds as ISO UTC (second precision)."""
    return datetime.fromtimestamp(t, timezone.utc).strftime(_ISO)


def epoch(value: str) -> float:
    """ISO 8601 (with Z or an offset; a bare date is midnight UTC) as epoch seconds."""
    v = value.strip().replace("Z", "+00:00")
    parsed = datetime.fromisoformat(v)
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=timezone.utc)
    return parsed.timestamp()


def item_time(published: str | None, first_seen_at: str) -> str:
    """When a passage appeared: the article's publication time, else when the crawler first saw it.

    Extractors often give a date only; then the first-seen time when it is that same day, else
    noon UTC of that day (half a day at most from the truth). An unreadable date is ignored.
    """
    p = (published or "").strip()
    if re.match(r"\d{4}-\d{2}-\d{2}", p):
        if len(p) == 10:
            return iso(epoch(first_seen_at)) if first_seen_at.startswith(p) else f"{p}T12:00:00Z"
        try:
            return iso(epoch(p))
        except ValueError:
            pass
    return iso(epoch(first_seen_at))


def item_keys(row: dict[str, Any], settings: CampaignSettings, generic: set[str]) -> tuple[tuple[str, str], ...]:
    """The (target, category) pairs of a flagged passage.

    Targets: the passage's own, else its article's; named targets (watchlist people, organisations,
    bodies) when there are any, generic ones ("defensores", "ONG") only when nobody is named.
    Categories: those scoring at least ``category_min``, else the top category.
    """
    targets = json.loads(row.get("targets") or "[]") or json.loads(row.get("article_targets") or "[]")
    named = [t for t in targets if t not in generic]
    chosen = named or targets
    scores = json.loads(row.get("categories") or "{}")
    cats = sorted((c for c, v in scores.items() if v >= settings.category_min), key=lambda c: (-scores[c], c))
    if not cats:
        top = row.get("top_category") or row.get("article_category")
        cats = [top] if top else []
    return tuple((t, c) for t in chosen for c in cats)


def make_item(row: dict[str, Any], settings: CampaignSettings, generic: set[str]) -> Item:
    """An :class:`Item` from a ``store.flagged_passages_after`` row (computes the MinHash signature)."""
    at = item_time(row.get("published"), row["first_seen_at"])
    h = hasher(settings.shingle_k)
    emb = row.get("embedding")
    return Item(passage_id=int(row["passage_id"]), classification_id=int(row["classification_id"]),
                article_id=row["article_id"], outlet_id=row.get("outlet_id") or row["article_id"], at=at,
                t=epoch(at), keys=item_keys(row, settings, generic),
                signature=h.to_bytes(h.signature(without_title(row["text"], row.get("title") or ""))),
                embedding=_vector(emb))


def without_title(text: str, title: str) -> str:
    """The passage without the article's headline in front (copies get new headlines; the smear is what is copied)."""
    body, title = text.lstrip(), title.strip()
    while title and body.startswith(title):
        body = body[len(title):].lstrip()
    return body


def _vector(blob: bytes | None) -> np.ndarray | None:
    if not blob:
        return None
    v = np.frombuffer(blob, dtype="<f2").astype(np.float32)
    n = float(np.linalg.norm(v))
    return v / n if n > 0 else None


# --- the pool: passages near in time, for text similarity ----------------------------------------

class Pool:
    """Indexed passages dated within a time range, as arrays: similarity by vectorised compares."""

    def __init__(self, rows: list[tuple[Any, ...]], num_perm: int):
        n = len(rows)
        self.pid = np.array([r[0] for r in rows], dtype=np.int64)
        self.article = np.array([r[1] for r in rows], dtype=object)
        self.outlet = [r[2] or r[1] for r in rows]
        self.t = np.array([epoch(r[3]) for r in rows], dtype=np.float64)
        self.keys = [r[4] for r in rows]
        self.sigs = np.zeros((n, num_perm), dtype=np.uint64)
        self.empty = np.ones(n, dtype=bool)
        vectors = [_vector(r[6]) for r in rows]
        dims = Counter(v.size for v in vectors if v is not None)
        self.dim = dims.most_common(1)[0][0] if dims else 0
        self.emb = np.zeros((n, self.dim), dtype=np.float32)
        self.has_emb = np.zeros(n, dtype=bool)
        for i, r in enumerate(rows):
            if r[5]:
                sig = np.frombuffer(r[5], dtype="<u8")
                if sig.size == num_perm and not is_empty_signature(sig):
                    self.sigs[i] = sig
                    self.empty[i] = False
            v = vectors[i]
            if v is not None and v.size == self.dim:
                self.emb[i] = v
                self.has_emb[i] = True
        self.index = {int(p): i for i, p in enumerate(self.pid)}

    def neighbours(self, item: Item, settings: CampaignSettings, window_s: float) -> list[tuple[int, str, float]]:
        """Earlier passages of other articles within the window that copy or paraphrase ``item``.

        Returns (pool index, "copy" | "paraphrase", similarity), most similar first.
        """
        mask = (np.abs(self.t - item.t) <= window_s) & (self.pid < item.passage_id) & (self.article != item.article_id)
        idx = np.nonzero(mask)[0]
        if idx.size == 0:
            return []
        found: dict[int, tuple[str, float]] = {}
        sig = np.frombuffer(item.signature, dtype="<u8")
        if not is_empty_signature(sig):
            jac = (self.sigs[idx] == sig).mean(axis=1)
            jac[self.empty[idx]] = 0.0
            for i in np.nonzero(jac >= settings.copy_jaccard)[0]:
                found[int(idx[i])] = ("copy", round(float(jac[i]), 4))
        if item.embedding is not None and self.dim == item.embedding.size:
            cos = self.emb[idx] @ item.embedding
            cos[~self.has_emb[idx]] = -1.0
            for i in np.nonzero(cos >= settings.paraphrase_cosine)[0]:
                j = int(idx[i])
                if j not in found:
                    found[j] = ("paraphrase", round(float(cos[i]), 4))
        return sorted(((j, link, s) for j, (link, s) in found.items()), key=lambda x: (-x[2], x[0]))

    def member(self, j: int, link: str, similarity: float | None) -> dict[str, Any]:
        """A campaign member row for pool entry ``j``."""
        return {"passage_id": int(self.pid[j]), "article_id": self.article[j], "outlet_id": self.outlet[j],
                "at": iso(float(self.t[j])), "link": link, "similarity": similarity}


def _member(item: Item, link: str, similarity: float | None = None) -> dict[str, Any]:
    return {"passage_id": item.passage_id, "article_id": item.article_id, "outlet_id": item.outlet_id, "at": item.at,
            "link": link, "similarity": similarity}


def densest_window(rows: list[dict[str, Any]], t: float, window_s: float) -> list[dict[str, Any]]:
    """The rows of the ``window_s``-long interval containing ``t`` with the most distinct outlets (earliest on ties).

    ``rows`` are sorted by ``at``. Windows start at a row's time in [t - window_s, t].
    """
    times = [epoch(r["at"]) for r in rows]
    best: list[dict[str, Any]] = []
    best_outlets = 0
    for i, start in enumerate(times):
        if start > t or start < t - window_s:
            continue
        members = [r for r, tt in zip(rows[i:], times[i:]) if tt <= start + window_s]
        n = len({r["outlet_id"] or r["article_id"] for r in members})
        if n > best_outlets:
            best, best_outlets = members, n
    return best


# --- detection -----------------------------------------------------------------------------

class Detector:
    """Processes items in passage order against the stored index and campaigns (inside one transaction)."""

    def __init__(self, db: sqlite_utils.Database, settings: CampaignSettings, pool: Pool, now: str):
        self.db = db
        self.settings = settings
        self.pool = pool
        self.now = now
        self.window_s = settings.window_hours * 3600.0
        self.max_span_s = settings.max_span_days * 86400.0
        self.created: list[int] = []
        self.touched: set[int] = set()

    def process(self, item: Item) -> None:
        """Join ``item`` to the campaigns it belongs to, or start the campaigns it completes."""
        lo, hi = iso(item.t - self.window_s), iso(item.t + self.window_s)
        since = iso(item.t - self.max_span_s)  # a campaign older than max_span_days takes no new passage
        joined: dict[int, str] = {}
        for target, category in item.keys:
            cid = store.campaign_for_key(self.db, target, category, lo, hi, since)
            if cid is None:
                rows = store.campaign_key_items(self.db, target, category, lo, hi, item.passage_id)
                window = densest_window(rows, item.t, self.window_s)
                if len({r["outlet_id"] or r["article_id"] for r in window}) < self.settings.min_outlets:
                    continue
                members = [{**r, "link": "target", "similarity": None} for r in window]
                cid = self._holding(members, target, lo, since)
                if cid is None:
                    cid = self._create(f"target|{target}|{category}|{window[0]['passage_id']}", target, category,
                                       "target_category", members)
                else:  # the same passages attack the target in a second category: one campaign, both categories
                    self._add(cid, members)
            else:
                self._add(cid, [_member(item, "target")])
            joined[cid] = "target"
        near = self.pool.neighbours(item, self.settings, self.window_s)
        if not near:
            return
        near_members = [self.pool.member(j, link, s) for j, link, s in near]
        best = max(near, key=lambda x: x[2])
        for cid in store.campaigns_of_passages(self.db, [m["passage_id"] for m in near_members], lo, since):
            if cid not in joined:
                self._add(cid, [_member(item, best[1], best[2])])
                joined[cid] = best[1]
        for cid in joined:  # the copies and paraphrases of a campaign's passage are the campaign's too
            self._add(cid, near_members)
        if joined:
            return
        group = [_member(item, best[1], best[2]), *near_members]
        if len({m["outlet_id"] for m in group}) < self.settings.min_outlets:
            return
        keys = Counter(tuple(k) for j, _l, _s in near for k in json.loads(self.pool.keys[j] or "[]"))
        keys.update(item.keys)
        (target, category), _n = keys.most_common(1)[0] if keys else ((None, None), 0)
        self._create(f"text|{item.passage_id}", target, category, "similar_text", group)

    def _holding(self, members: list[dict[str, Any]], target: str, lo: str, since: str) -> int | None:
        """A campaign on ``target`` (started at or after ``since``) that already holds at least half of these passages."""
        ids = {m["passage_id"] for m in members}
        for cid in store.campaigns_of_passages(self.db, sorted(ids), lo, since):
            row = store.campaign_row(self.db, cid)
            if row is not None and row["target"] == target and 2 * len(ids & store.campaign_member_ids(self.db, cid)) >= len(ids):
                return cid
        return None

    def _create(self, key: str, target: str | None, category: str | None, via: str,
                members: list[dict[str, Any]]) -> int:
        ats = [m["at"] for m in members]
        if store.campaign_by_key(self.db, key) is not None:  # an earlier episode began with the same passage
            key = f"{key}|{max(m['passage_id'] for m in members)}"
        cid = store.create_campaign(self.db, key, target, category, via, min(ats), max(ats), self.now)
        store.add_campaign_members(self.db, cid, members, self.now)
        self.created.append(cid)
        self.touched.add(cid)
        LOGGER.info("new campaign %s: %s / %s via %s, %d passages", cid, target, category, via, len(members))
        return cid

    def _add(self, cid: int, members: list[dict[str, Any]]) -> None:
        if store.add_campaign_members(self.db, cid, members, self.now):
            self.touched.add(cid)
            row = store.campaign_row(self.db, cid)
            ats = [m["at"] for m in members]
            if row is not None:
                store.update_campaign(self.db, cid, {"first_seen": min(row["first_seen"], *ats),
                                                     "last_seen": max(row["last_seen"], *ats)})


# --- a campaign's figures -------------------------------------------------------------------------

def poisson_tail(n: int, lam: float) -> float:
    """P(N >= n) for N ~ Poisson(lam), summed in log space (no overflow for large n)."""
    if n <= 0:
        return 1.0
    if lam <= 0:
        return 0.0
    log_pmf = [-lam + i * math.log(lam) - math.lgamma(i + 1) for i in range(n)]
    lower = sum(math.exp(v) for v in log_pmf)
    if lower < 0.5:
        return max(0.0, 1.0 - lower)
    # the upper tail directly, term by term, when it is small (1 - lower would lose every digit)
    term, i, total = log_pmf[-1] + math.log(lam) - math.log(n), n, 0.0
    while True:
        total += math.exp(term)
        i += 1
        term += math.log(lam) - math.log(i)
        if term < math.log(total) - 40 or i > n + 10_000:
            return total


def burst(n: int, baseline_count: int, baseline_days: int, window_hours: float) -> tuple[float, float, float]:
    """(expected per window, z, burst score) of ``n`` flagged articles in a window against the target's baseline.

    Expected count in a window: ``lam = (baseline_count + 1) / baseline_days * window_hours / 24``
    (the +1 keeps a never-attacked target's rate above zero); ``z = (n - lam) / sqrt(lam)``;
    burst score = ``-log10 P(N >= n)`` for ``N ~ Poisson(lam)`` (capped at 300): 2 means a count
    this high happens by chance once in 100 windows at the target's usual rate.
    """
    lam = (baseline_count + 1) / baseline_days * window_hours / 24.0
    z = (n - lam) / math.sqrt(lam)
    p = poisson_tail(n, lam)
    score = 300.0 if p <= 1e-300 else min(300.0, -math.log10(p))
    return round(lam, 4), round(z, 2), round(max(0.0, score), 2)


def peak_window(times_by_article: dict[str, float], window_s: float) -> tuple[int, float]:
    """Most distinct articles within any window of ``window_s`` seconds, and when that window starts (earliest)."""
    times = sorted(times_by_article.values())
    best, start, j = 0, times[0] if times else 0.0, 0
    for i, t in enumerate(times):
        while times[j] < t - window_s:
            j += 1
        if i - j + 1 > best:
            best, start = i - j + 1, times[j]
    return best, start


def refresh(db: sqlite_utils.Database, cid: int, settings: CampaignSettings, now: str) -> None:
    """Recompute a campaign's targets, categories, outlets, speakers, span, counts and burst from its members.

    Members a reviewer rejected do not count. A campaign left with fewer than ``min_outlets`` sources
    is 'dismissed' (kept, with its figures, so that a later confirmation can bring it back).
    """
    row = store.campaign_row(db, cid)
    if row is None:
        return
    members = store.campaign_member_facts(db, cid)
    if not members:
        store.update_campaign(db, cid, {"items": 0, "articles": 0, "n_outlets": 0, "outlets": "[]", "speakers": "[]",
                                        "officials": 0, "status": "dismissed", "updated_at": now})
        return
    targets: Counter[str] = Counter()
    categories: Counter[str] = Counter()
    speakers: dict[str, dict[str, Any]] = {}
    article_time: dict[str, float] = {}
    outlets: set[str] = set()
    officials = 0
    for article_id, at, outlet, p_targets, p_categories, top, speaker, official in members:
        targets.update(set(json.loads(p_targets or "[]")))
        scores = json.loads(p_categories or "{}")
        categories.update({c for c, v in scores.items() if v >= settings.category_min} or ({top} - {None}))
        if speaker:
            s = speakers.setdefault(speaker, {"speaker": speaker, "official": False, "items": 0})
            s["official"] = s["official"] or bool(official)
            s["items"] += 1
        officials += int(bool(official))
        outlets.add(outlet)
        article_time.setdefault(article_id, epoch(at))
    ats = [m[1] for m in members]
    sources = {m[2] or m[0] for m in members}   # outlet, or the article when it has none (as detection counts)
    if len(sources) < settings.min_outlets:
        status = "dismissed"
    else:
        status = "active" if row["status"] == "dismissed" else row["status"]  # set_campaign_status dates it
    target = row["target"] or (targets.most_common(1)[0][0] if targets else None)
    peak, peak_start = peak_window(article_time, settings.window_hours * 3600.0)
    lam = z = score = None
    if target:  # the peak against the target's rate in the baseline days before the peak
        start = datetime.fromtimestamp(peak_start, timezone.utc)
        count = store.target_flag_count(db, target, (start - timedelta(days=settings.baseline_days)).strftime("%Y-%m-%d"),
                                        start.strftime("%Y-%m-%d"))
        lam, z, score = burst(peak, count, settings.baseline_days, settings.window_hours)
    store.update_campaign(db, cid, {
        "target": target, "first_seen": min(ats), "last_seen": max(ats), "items": len(members),
        "articles": len(article_time), "n_outlets": len(outlets),
        "outlets": json.dumps(sorted(outlets), ensure_ascii=False),
        "targets": json.dumps([t for t, _ in targets.most_common()], ensure_ascii=False),
        "categories": json.dumps([c for c, _ in categories.most_common()]),
        "speakers": json.dumps(sorted(speakers.values(), key=lambda s: (-s["items"], s["speaker"])), ensure_ascii=False),
        "officials": officials, "peak_articles": peak, "baseline_per_window": lam, "burst_z": z, "burst_score": score,
        "updated_at": now, "status": status,
    })


# --- updates --------------------------------------------------------------------------------

def update(db: sqlite_utils.Database, settings: CampaignSettings, generic: Iterable[str] = (),
           now: str | None = None, limit: int | None = None) -> UpdateResult:
    """Consider the flagged passages added since the last update; create and extend campaigns (one transaction).

    Args:
        generic: names of generic watchlist targets ("defensores", "ONG"), used only when no named target is.
        now: the time recorded as ``detected_at``/``updated_at`` (default: the current UTC time).
        limit: at most this many passages (the rest wait for the next update).
    """
    import time

    started = time.perf_counter()
    now = now or utc_now()
    generic_set = set(generic)
    result = UpdateResult()
    with store.atomic(db):
        after = int(store.state_get(db, WATERMARK, "0"))
        rows = store.flagged_passages_after(db, after, limit)
        if rows:
            items = [make_item(r, settings, generic_set) for r in rows]
            _process(db, items, settings, now, result)
            store.state_set(db, WATERMARK, max(int(r["passage_id"]) for r in rows))
        elif limit is None:
            store.state_set(db, WATERMARK, max(after, store.max_passage_id(db)))
        apply_reviews(db, settings, now, result)
        store.set_campaign_status(db, iso(epoch(now) - settings.window_hours * 3600.0))
    result.seconds = time.perf_counter() - started
    LOGGER.info("%s", result.line())
    return result


def apply_reviews(db: sqlite_utils.Database, settings: CampaignSettings, now: str, result: UpdateResult) -> None:
    """Recompute the campaigns holding an article reviewed since the last update.

    A rejection takes the article's passages out of the campaign's figures (and dismisses a
    campaign left with too few outlets); a later confirmation puts them back.
    """
    after = int(store.state_get(db, REVIEW_WATERMARK, "0"))
    last, articles = store.reviewed_articles_after(db, after)
    for cid in store.campaigns_of_articles(db, articles):
        refresh(db, cid, settings, now)
        result.reviewed.append(cid)
    if last != after:
        store.state_set(db, REVIEW_WATERMARK, last)


def _process(db: sqlite_utils.Database, items: list[Item], settings: CampaignSettings, now: str,
             result: UpdateResult) -> None:
    store.add_campaign_items(db, [{"passage_id": i.passage_id, "classification_id": i.classification_id,
                                   "article_id": i.article_id, "outlet_id": i.outlet_id, "at": i.at,
                                   "keys": [list(k) for k in i.keys], "signature": i.signature} for i in items])
    window_s = settings.window_hours * 3600.0
    lo, hi = iso(min(i.t for i in items) - window_s), iso(max(i.t for i in items) + window_s)
    pool = Pool(store.campaign_items_between(db, lo, hi), hasher(settings.shingle_k).num_perm)
    detector = Detector(db, settings, pool, now)
    for item in items:
        detector.process(item)
    for cid in sorted(detector.touched):
        refresh(db, cid, settings, now)
    result.items += len(items)
    result.created += detector.created
    result.updated += sorted(detector.touched - set(detector.created))


def rebuild(db: sqlite_utils.Database, settings: CampaignSettings, generic: Iterable[str] = (),
            now: str | None = None) -> UpdateResult:
    """Forget every campaign and recompute them from all flagged passages (``monitor campaigns --rebuild``).

    The same steps as the incremental updates, in passage order, in chunks; one transaction.
    Alerts already sent stay (their keys are stable, so a rebuilt campaign is not alerted again).
    """
    import time

    started = time.perf_counter()
    now = now or utc_now()
    generic_set = set(generic)
    result = UpdateResult()
    with store.atomic(db):
        store.reset_campaigns(db)
        after = 0
        while True:
            rows = store.flagged_passages_after(db, after, REBUILD_CHUNK)
            if not rows:
                break
            _process(db, [make_item(r, settings, generic_set) for r in rows], settings, now, result)
            after = max(int(r["passage_id"]) for r in rows)
        store.state_set(db, WATERMARK, max(after, store.max_passage_id(db)))
        store.state_set(db, REVIEW_WATERMARK, store.max_review_id(db))  # rebuilt without rejected articles
        store.set_campaign_status(db, iso(epoch(now) - settings.window_hours * 3600.0))
    result.updated = []
    result.seconds = time.perf_counter() - started
    return result
