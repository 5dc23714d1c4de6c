"""Plain data passed between pipeline stages (frozen dataclasses, no behaviour)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Fetched:
    """One HTTP response exactly as served, with what is needed to prove it later."""

    url: str                      # the URL requested
    final_url: str                # after redirects
    status: int
    headers: tuple[tuple[str, str], ...]
    body: bytes                   # raw bytes as served (after transfer decoding only)
    captured_at: str              # UTC, ISO 8601 with "Z"
    sha256: str                   # of ``body``
    redirects: tuple[str, ...] = ()
    elapsed_ms: int = 0
    request_headers: tuple[tuple[str, str], ...] = ()   # as sent for ``final_url`` (for the WARC request record)
    http_version: str = "HTTP/1.1"
    reason: str = ""

    def header(self, name: str, default: str = "") -> str:
        """Return the first header called ``name`` (case-insensitive)."""
        lname = name.lower()
        for key, value in self.headers:
            if key.lower() == lname:
                return value
        return default


@dataclass(frozen=True, slots=True)
class Entry:
    """One item of a feed: a candidate article."""

    url: str
    title: str = ""
    author: str = ""
    published: str | None = None  # ISO 8601 UTC when the feed gave a date
    summary: str = ""
    guid: str = ""


@dataclass(frozen=True, slots=True)
class ParsedFeed:
    """A parsed feed: its entries plus the parser's warnings."""

    entries: tuple[Entry, ...]
    title: str = ""
    version: str = ""
    warning: str | None = None    # set when the document was ill-formed but still parsed


@dataclass(frozen=True, slots=True)
class Article:
    """Text and metadata extracted from a captured page."""

    url: str
    title: str
    text: str
    author: str = ""
    published: str | None = None
    site_name: str = ""
    language: str = ""
    canonical_url: str = ""
    description: str = ""


@dataclass(frozen=True, slots=True)
class Passage:
    """A scored span of an article's text (``start``/``end`` are character offsets)."""

    start: int
    end: int
    text: str
    score: float
    categories: dict[str, float] = field(default_factory=dict)
    voice: str = "none"
    voice_scores: dict[str, float] = field(default_factory=dict)
    relevance: float = 0.0
    speaker: str = ""
    speaker_is_official: bool = False
    targets: tuple[str, ...] = ()
    embedding: bytes = b""        # the encoder's pooled vector, L2-normalised float16 (b"" when there is none)


@dataclass(frozen=True, slots=True)
class Classification:
    """The verdict of one classifier version on one text."""

    model_id: str
    model_version: str
    stigmatising: bool
    score: float
    categories: dict[str, float]
    voice: str
    speaker: str
    speaker_is_official: bool
    targets: tuple[str, ...]
    passages: tuple[Passage, ...]     # the flagged passages (above threshold)
    n_passages: int = 0               # how many passages were scored


@dataclass(frozen=True, slots=True)
class WarcRef:
    """Where the WARC copy of one capture was written (response, request and metadata records, in that order)."""

    warc_dir: str                 # the folder, as resolved when written
    warc_file: str                # file name inside it
    offset: int                   # of the response record (where a CDX index points)
    length: int                   # bytes of the capture's three records together (each its own gzip member)
    response_length: int          # bytes of the response record alone
    record_id: str                # WARC-Record-ID of the response record
    payload_digest: str           # "sha256:BASE32" of the payload = the capture's raw bytes
