"""Near-duplicate detection for syndicated copies: MinHash signatures + LSH banding.

Mexican outlets republish the same wire story or press release with small edits
(another headline, a dateline, a byline, "Con información de EFE", one paragraph
more or less, ad teasers).  This module turns an article's text into a fixed-size
MinHash signature, cuts it into LSH band keys for an incremental candidate index,
and verifies candidates with the estimated Jaccard similarity of their word
5-shingle sets.  Everything here is a pure function of the text and the hasher's
parameters: no database, no global state, no salted ``hash()``, so signatures and
band keys stored in SQLite stay valid across processes, machines and versions of
Python/numpy.  (If ``k``, ``num_perm`` or ``seed`` ever change, stored signatures
must be recomputed; :attr:`MinHasher.params` names the scheme so rows can record it.)

Pipeline: ``normalise`` -> word ``shingles`` (blake2b-64) -> ``MinHasher.signature``
(``num_perm`` universal hashes ``(a*x + b) mod (2**61 - 1)``, minimum over shingles)
-> ``band_keys`` for lookup -> ``jaccard`` / ``is_near_duplicate`` for verification.

What edits cost (measured on the ~250-word, seven-paragraph stories in
``tests/test_dedup.py``, 5-word shingles, headline included in the text): a
syndicated copy with a new headline, byline, dateline, "Con información de EFE"
and one paragraph dropped has exact Jaccard 0.70-0.77 with the original; the same
copy without the headline change (body text only) 0.79-0.88; a verbatim copy with
a new headline, credit line and "Te puede interesar" teaser ~0.89.  Different
stories on the same topic (same city, same crisis) share no 5-shingles at all
(0.00).  Every inserted or removed run of words costs its own length plus up to
k-1 shingles, so short texts and heavy edits score lowest, long articles highest:
Jaccard >= 0.8 would miss most heavily edited copies of short wire stories.  Hence
``DUPLICATE_JACCARD = 0.55``: over three standard errors of the 128-slot estimate
(``sqrt(s(1-s)/128)`` ~ 0.04) below 0.70, and three above 0.40 (texts sharing
well under half of their shingles).

LSH defaults: 128 permutations cut into ``DEFAULT_BANDS = 32`` bands of ``r = 4``
rows.  The probability that a pair with Jaccard ``s`` shares at least one band key
(i.e. becomes a candidate) is ``1 - (1 - s**r)**b``:

    s = 0.3  ->  0.229
    s = 0.5  ->  0.873
    s = 0.55 ->  0.954
    s = 0.6  ->  0.988
    s = 0.7  ->  0.9998
    s = 0.8  ->  0.99999995

Pairs at 0.3 are themselves rare in news (unrelated texts sit near 0, where the
candidate rate is ``~32 * s**4``: 2e-4 at s = 0.05) and a false candidate costs one
1 KiB signature compare, so the curve is set for recall at the threshold.  For
comparison, 25 x 5 gives 0.059 / 0.548 / 0.725 / 0.868 / 0.990 / 0.99995 (misses
13% of pairs at 0.6) and 16 x 8 misses 5% even at 0.8.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections.abc import Iterable, Sequence
from hashlib import blake2b
from typing import Union

import numpy as np

__all__ = [
    "DEFAULT_BANDS",
    "DEFAULT_NUM_PERM",
    "DUPLICATE_JACCARD",
    "MERSENNE_61",
    "SHINGLE_K",
    "MinHasher",
    "StoryIndex",
    "content_fingerprint",
    "is_empty_signature",
    "is_near_duplicate",
    "jaccard",
    "normalise",
    "s_curve",
    "shingles",
]

MERSENNE_61 = (1 << 61) - 1
SHINGLE_K = 5
DEFAULT_NUM_PERM = 128
DEFAULT_BANDS = 32
#: Estimated Jaccard at or above which two signatures are the same story (see the
#: module docstring for why it is well below 0.8).
DUPLICATE_JACCARD = 0.55

Signature = np.ndarray  # 1-D, dtype uint64, length num_perm
SigLike = Union[np.ndarray, bytes, bytearray, memoryview, Sequence[int]]

_EMPTY_VALUE = np.uint64(np.iinfo(np.uint64).max)  # never produced by a real hash (< 2**61 - 1)
_P = np.uint64(MERSENNE_61)
_M32 = np.uint64(0xFFFF_FFFF)
_M29 = np.uint64((1 << 29) - 1)
_SEP = re.compile(r"[\W_]+")


# --------------------------------------------------------------------------- text


def normalise(text: str, *, keep_numbers: bool = False) -> str:
    """Lower-case, accent-free, punctuation-free text: words joined by single spaces.

    NFKD-decomposes and drops combining marks (``"Información"`` -> ``"informacion"``,
    ``"ñ"`` -> ``"n"``), turns every run of non-alphanumeric characters into one
    space.  Tokens made only of digits are dropped unless ``keep_numbers``: dates,
    times, figures and datelines are what copies of one story most often disagree
    on (``"12 de agosto"`` vs ``"13 de agosto"``, an updated toll), while the words
    around them survive.  The cost: templated reports that differ only in their
    numbers (exchange-rate notes, daily bulletins) look even more alike, which they
    already are.  Mixed tokens (``"covid19"``, ``"g20"``) are kept.
    """
    decomposed = unicodedata.normalize("NFKD", text.casefold())
    for mark in [ch for ch in set(decomposed) if unicodedata.combining(ch)]:
        decomposed = decomposed.replace(mark, "")  # a few distinct marks: far faster than a per-char filter
    tokens = _SEP.split(decomposed)
    if keep_numbers:
        return " ".join(t for t in tokens if t)
    return " ".join(t for t in tokens if t and not t.isdigit())


def _shingle_digests(text: str, k: int) -> bytes:
    """Concatenated 8-byte blake2b digests of the word k-shingles of ``normalise(text)``."""
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    words = normalise(text).split()
    if not words:
        return b""
    if len(words) <= k:
        return blake2b(" ".join(words).encode("utf-8"), digest_size=8).digest()
    return b"".join(blake2b(" ".join(words[i:i + k]).encode("utf-8"), digest_size=8).digest()
                    for i in range(len(words) - k + 1))


def shingles(text: str, k: int = SHINGLE_K) -> set[int]:
    """Word ``k``-shingles of ``normalise(text)``, each hashed to a stable 64-bit int.

    The hash is blake2b (8-byte digest, read little-endian) of the shingle's words
    joined by single spaces, so it is identical in every process, unlike the salted
    built-in ``hash()``.  A text with fewer than ``k`` (but at least one) words gives
    one shingle of the whole text; an empty (or punctuation/number-only) text gives
    an empty set.
    """
    return set(np.frombuffer(_shingle_digests(text, k), dtype="<u8").tolist())


def content_fingerprint(text: str) -> str:
    """SHA-256 hex of ``normalise(text, keep_numbers=True)``: exact-content dedup.

    Equal for texts that differ only in case, accents, whitespace or punctuation;
    numbers are kept here (unlike in shingling), so a corrected figure is new content.
    """
    return hashlib.sha256(normalise(text, keep_numbers=True).encode("utf-8")).hexdigest()


# ---------------------------------------------------------------------- arithmetic


_S3, _S29, _S32, _S61 = (np.uint64(n) for n in (3, 29, 32, 61))


def _affine_mod61(a_lo: np.ndarray, a_hi: np.ndarray, b: np.ndarray, x: np.ndarray) -> np.ndarray:
    """``(a*x + b) mod (2**61 - 1)`` for every ``a`` (column, split in 32-bit halves) and ``x`` (row).

    Exact in uint64, no overflow: with ``a = a_hi*2**32 + a_lo`` and ``x`` likewise
    (``a, x, b < p = 2**61 - 1``, so the high halves are < 2**29),
    ``a*x = hh*2**64 + mid*2**32 + ll`` with ``hh < 2**58``, ``mid < 2**62``, ``ll < 2**64``.
    Modulo p, ``2**61 == 1``, so ``2**64 == 8``, ``ll == (ll & p) + (ll >> 61)`` and
    ``mid*2**32 == (mid >> 29) + ((mid & (2**29-1)) << 32)``.  Summing those terms and
    ``b`` stays below ``2**63 + 2**34``; one more fold brings it below ``p + 4`` and a
    conditional subtraction to ``[0, p)``.  Works in place to keep allocations down.
    """
    x_lo = x & _M32
    x_hi = x >> _S32
    s = a_lo * x_lo                    # ll
    t = s >> _S61
    s &= _P
    s += t                             # ll mod-folded: < 2**61 + 8
    np.multiply(a_hi, x_hi, out=t)     # hh < 2**58
    t <<= _S3
    s += t                             # + hh*8 < 2**61
    mid = a_hi * x_lo
    np.multiply(a_lo, x_hi, out=t)
    mid += t                           # mid < 2**62
    np.right_shift(mid, _S29, out=t)
    s += t                             # + < 2**33
    mid &= _M29
    mid <<= _S32
    s += mid                           # + < 2**61
    s += b                             # + < 2**61
    np.right_shift(s, _S61, out=t)
    s &= _P
    s += t                             # < 2**61 + 4
    np.subtract(s, _P, out=s, where=s >= _P)
    return s


def _param(seed: int, i: int, which: str, low: int) -> int:
    """Deterministic value in ``[low, p)`` from blake2b: no RNG stream to drift between numpy versions."""
    digest = hashlib.blake2b(f"minhash/{seed}/{i}/{which}".encode(), digest_size=16).digest()
    return low + int.from_bytes(digest, "little") % (MERSENNE_61 - low)


# ------------------------------------------------------------------------ signatures


def _as_sig(sig: SigLike) -> np.ndarray:
    if isinstance(sig, (bytes, bytearray, memoryview)):
        return _from_bytes(bytes(sig))
    arr = sig if isinstance(sig, np.ndarray) else np.asarray(sig, dtype=np.uint64)
    if arr.ndim != 1:
        raise ValueError(f"a signature is 1-D, got shape {arr.shape}")
    return arr.astype(np.uint64, copy=False)


def _from_bytes(b: bytes) -> np.ndarray:
    if len(b) % 8:
        raise ValueError(f"signature bytes must be a multiple of 8 long, got {len(b)}")
    return np.frombuffer(b, dtype="<u8").astype(np.uint64)


def is_empty_signature(sig: SigLike) -> bool:
    """True for the signature of a text with no shingles (all slots the sentinel ``2**64 - 1``)."""
    arr = _as_sig(sig)
    return bool(arr.size == 0 or np.all(arr == _EMPTY_VALUE))


def jaccard(sig_a: SigLike, sig_b: SigLike) -> float:
    """Estimated Jaccard similarity: the fraction of slots where the signatures agree.

    Accepts arrays or the bytes of :meth:`MinHasher.to_bytes`.  An empty text's
    signature is similar to nothing (0.0), not even another empty one.
    """
    a, b = _as_sig(sig_a), _as_sig(sig_b)
    if a.shape != b.shape:
        raise ValueError(f"signatures differ in length: {a.size} vs {b.size}")
    if is_empty_signature(a) or is_empty_signature(b):
        return 0.0
    return float(np.count_nonzero(a == b)) / a.size


def is_near_duplicate(sig_a: SigLike, sig_b: SigLike, threshold: float = DUPLICATE_JACCARD) -> bool:
    """Whether the estimated Jaccard of the two signatures is at least ``threshold``."""
    return jaccard(sig_a, sig_b) >= threshold


class MinHasher:
    """MinHash over word shingles with ``num_perm`` hashes ``h_i(x) = (a_i*x + b_i) mod (2**61-1)``.

    ``a_i in [1, p)`` and ``b_i in [0, p)`` are derived from ``seed`` with blake2b, so
    the same ``(k, num_perm, seed)`` always gives the same signatures.  Shingle hashes
    (64-bit) are reduced mod ``p`` first; the multiply is done exactly in uint64
    (see ``_affine_mod61``), all permutations at once.
    """

    def __init__(self, num_perm: int = DEFAULT_NUM_PERM, seed: int = 1, k: int = SHINGLE_K) -> None:
        if num_perm < 1:
            raise ValueError(f"num_perm must be >= 1, got {num_perm}")
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        self.num_perm = num_perm
        self.seed = seed
        self.k = k
        self._a = np.array([_param(seed, i, "a", 1) for i in range(num_perm)], dtype=np.uint64)[:, None]
        self._b = np.array([_param(seed, i, "b", 0) for i in range(num_perm)], dtype=np.uint64)[:, None]
        self._a_lo = self._a & _M32
        self._a_hi = self._a >> _S32

    @property
    def params(self) -> str:
        """Names the scheme, e.g. ``"minhash-v1/k5/p128/s1"``: store it next to signatures."""
        return f"minhash-v1/k{self.k}/p{self.num_perm}/s{self.seed}"

    @property
    def permutations(self) -> list[tuple[int, int]]:
        """The ``(a, b)`` pairs, as Python ints (for reference implementations and tests)."""
        return [(int(a), int(b)) for a, b in zip(self._a[:, 0], self._b[:, 0])]

    def empty_signature(self) -> Signature:
        return np.full(self.num_perm, _EMPTY_VALUE, dtype=np.uint64)

    def signature_of_shingles(self, hashes: Iterable[int] | np.ndarray, chunk: int = 1024) -> Signature:
        """Signature of 64-bit shingle hashes (as from :func:`shingles`; repeats are harmless)."""
        if isinstance(hashes, np.ndarray):
            x = hashes.astype(np.uint64, copy=False).ravel()
        else:
            values = hashes if isinstance(hashes, (set, frozenset, list, tuple)) else list(hashes)
            x = np.fromiter(values, dtype=np.uint64, count=len(values))
        if x.size == 0:
            return self.empty_signature()
        x = x % _P
        sig = self.empty_signature()
        for start in range(0, x.size, chunk):  # bounded memory for very long texts
            h = _affine_mod61(self._a_lo, self._a_hi, self._b, x[None, start:start + chunk])
            np.minimum(sig, h.min(axis=1), out=sig)
        return sig

    def signature(self, text: str) -> Signature:
        """uint64 array of length ``num_perm``; all ``2**64 - 1`` for a text without shingles."""
        return self.signature_of_shingles(np.frombuffer(_shingle_digests(text, self.k), dtype="<u8"))

    def to_bytes(self, sig: SigLike) -> bytes:
        """Fixed little-endian uint64 bytes (``8 * num_perm`` long): the SQLite BLOB."""
        arr = _as_sig(sig)
        self._check_len(arr)
        return arr.astype("<u8").tobytes()

    def from_bytes(self, b: bytes) -> Signature:
        """Inverse of :meth:`to_bytes`; a writable native uint64 array."""
        arr = _from_bytes(bytes(b))
        self._check_len(arr)
        return arr

    def band_keys(self, sig: SigLike, bands: int = DEFAULT_BANDS) -> list[str]:
        """LSH band keys ``"NN:hhhhhhhhhh"``: band number + 40-bit blake2b of the band's rows.

        ``rows = num_perm // bands`` (the last ``num_perm % bands`` values are not banded).
        Two signatures share key ``NN:...`` iff (barring a 2**-40 collision, caught
        by verification) they agree on all rows of band NN.  An empty text's signature
        has no keys, so it is never a candidate.
        """
        arr = _as_sig(sig)
        self._check_len(arr)
        if not 1 <= bands <= self.num_perm:
            raise ValueError(f"bands must be in [1, {self.num_perm}], got {bands}")
        if is_empty_signature(arr):
            return []
        rows = self.num_perm // bands
        le = arr.astype("<u8")
        width = len(str(bands - 1))
        return [
            f"{i:0{max(2, width)}d}:"
            + hashlib.blake2b(le[i * rows:(i + 1) * rows].tobytes(), digest_size=5, person=b"mon-band").hexdigest()
            for i in range(bands)
        ]

    jaccard = staticmethod(jaccard)
    is_near_duplicate = staticmethod(is_near_duplicate)

    def _check_len(self, arr: np.ndarray) -> None:
        if arr.size != self.num_perm:
            raise ValueError(f"expected a signature of {self.num_perm} values, got {arr.size}")


def s_curve(s: float, bands: int = DEFAULT_BANDS, rows: int = DEFAULT_NUM_PERM // DEFAULT_BANDS) -> float:
    """Probability that a pair with Jaccard ``s`` shares at least one band key: ``1 - (1 - s**r)**b``."""
    return 1.0 - (1.0 - s ** rows) ** bands


# ------------------------------------------------------------------------- the index


class StoryIndex:
    """In-memory reference for incremental story grouping; the SQLite version mirrors it.

    ``add(id, sig)``, for articles in the order they were first seen:

    1. candidates = every indexed article sharing at least one of ``sig``'s band keys
       (SQL: ``SELECT article_id FROM band_keys WHERE key IN (...)``);
    2. verify each candidate with ``jaccard(sig, candidate_sig) >= threshold`` against
       the *candidate's own* signature (not a story representative);
    3. the article joins the story of the earliest-added verified candidate (by
       insertion order); story id = that story's id, which is the id of its first
       member.  No verified candidate: it founds a story with its own id;
    4. its band keys are indexed.

    Grouping is single-link (C may join A's story through B even if A and C differ
    more) and story ids never change: two existing stories are not merged later when
    an article resembles both; it simply joins the earlier one.  Re-adding a known id
    returns its story unchanged.  An empty text's signature has no band keys: it is
    always its own story and never a candidate.
    """

    def __init__(self, hasher: MinHasher | None = None, bands: int = DEFAULT_BANDS,
                 threshold: float = DUPLICATE_JACCARD) -> None:
        self.hasher = hasher or MinHasher()
        self.bands = bands
        self.threshold = threshold
        self._buckets: dict[str, list[str]] = {}
        self._sigs: dict[str, np.ndarray] = {}
        self._order: dict[str, int] = {}
        self._story: dict[str, str] = {}

    def __len__(self) -> int:
        return len(self._sigs)

    def __contains__(self, item_id: object) -> bool:
        return item_id in self._sigs

    def candidates(self, sig: SigLike) -> list[str]:
        """Indexed ids sharing at least one band key with ``sig``, in insertion order (unverified)."""
        found: set[str] = set()
        for key in self.hasher.band_keys(sig, self.bands):
            found.update(self._buckets.get(key, ()))
        return sorted(found, key=self._order.__getitem__)

    def matches(self, sig: SigLike) -> list[str]:
        """Candidates verified by ``jaccard >= threshold``, in insertion order."""
        arr = _as_sig(sig)
        return [c for c in self.candidates(arr) if jaccard(arr, self._sigs[c]) >= self.threshold]

    def add(self, item_id: str, sig: SigLike) -> str:
        """Index ``item_id`` and return its story id (see the class docstring)."""
        if item_id in self._story:
            return self._story[item_id]
        arr = _as_sig(sig).copy()
        keys = self.hasher.band_keys(arr, self.bands)
        matched = [c for c in self.matches(arr) if c != item_id]
        story = item_id
        if matched:
            story = min((self._story[c] for c in matched), key=self._order.__getitem__)
        self._order[item_id] = len(self._order)
        self._sigs[item_id] = arr
        self._story[item_id] = story
        for key in keys:
            self._buckets.setdefault(key, []).append(item_id)
        return story

    def story_of(self, item_id: str) -> str:
        return self._story[item_id]

    def stories(self) -> dict[str, list[str]]:
        """Story id -> member ids, both in insertion order."""
        out: dict[str, list[str]] = {}
        for item_id in self._order:  # dicts keep insertion order
            out.setdefault(self._story[item_id], []).append(item_id)
        return out
