"""Read and validate feeds.yaml into frozen dataclasses, reporting every problem at once."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from .errors import ConfigError

SECTIONS = ("news", "opinion")
SCOPES = ("national", "regional", "international")
FEED_KINDS = ("feed", "sitemap", "html")   # RSS/Atom/RDF, XML sitemap, HTML listing page
DEFAULT_USER_AGENT = "smear-monitor/0.1 (+https://github.com/; human-rights press monitoring)"


@dataclass(frozen=True, slots=True)
class FetchSettings:
    """How to fetch: timeouts, size cap, politeness."""

    connect_timeout_s: float = 10.0
    read_timeout_s: float = 20.0
    max_bytes: int = 10_000_000
    user_agent: str = DEFAULT_USER_AGENT
    retries: int = 2
    concurrency: int = 8
    per_host_delay_s: float = 1.0
    max_entries_per_feed: int = 100
    per_host_concurrency: int = 2        # requests in flight to one host at a time
    respect_robots: bool = True          # robots.txt is fetched (cached) and honoured
    extract_workers: int = 0             # processes extracting pages; 0 = one per CPU core
    failure_backoff_s: float = 900.0     # a failing feed waits this, doubled per failure, before the next poll
    max_backoff_s: float = 86_400.0      # ... but never longer than this
    max_request_s: float = 60.0          # total deadline of one request: redirects and body included
    allow_private: tuple[str, ...] = ()  # non-public addresses that may be crawled: "IP:PORT", "IP", CIDR


@dataclass(frozen=True, slots=True)
class EvidenceSettings:
    """How captures are preserved beyond the database: WARC files, trusted timestamps (docs/evidence.md)."""

    warc: bool = True                    # also write every capture to WARC files
    warc_dir: str = ""                   # "" = <db>.warc/ next to the database; relative = to the database's folder
    warc_max_mb: int = 1000              # start a new WARC file past this size (and every UTC day)
    tsa_url: str = ""                    # RFC 3161 time-stamping authority; "" = no trusted timestamps
    tsa_ca_file: str = ""                # the TSA's CA certificate (PEM): tokens are verified and kept with it


@dataclass(frozen=True, slots=True)
class Feed:
    """One feed of an outlet."""

    id: str
    outlet_id: str
    url: str
    section: str
    kind: str = "feed"
    language: str = "es"
    columnist: str = ""
    tags: tuple[str, ...] = ()
    enabled: bool = True
    verified: bool = False
    note: str = ""
    link_pattern: str = ""        # kind html: regex (re.search) the article links of the page match


@dataclass(frozen=True, slots=True)
class Outlet:
    """A news outlet and its feeds."""

    id: str
    name: str
    feeds: tuple[Feed, ...]
    homepage: str = ""
    scope: str = "national"
    state: str = ""
    country: str = "MX"
    language: str = "es"
    tags: tuple[str, ...] = ()
    columnists: tuple[str, ...] = ()
    enabled: bool = True
    note: str = ""


@dataclass(frozen=True, slots=True)
class Config:
    """The whole validated feeds.yaml."""

    source: str
    outlets: tuple[Outlet, ...]
    fetch: FetchSettings = field(default_factory=FetchSettings)
    evidence: EvidenceSettings = field(default_factory=EvidenceSettings)

    def enabled_feeds(self) -> list[tuple[Outlet, Feed]]:
        """Every enabled feed of every enabled outlet, in file order."""
        return [(o, f) for o in self.outlets if o.enabled for f in o.feeds if f.enabled]


def slugify(text: str) -> str:
    """Lower-case ASCII slug of ``text`` ("La Jornada" -> "la-jornada")."""
    import unicodedata

    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return re.sub(r"[^a-z0-9]+", "-", ascii_text.lower()).strip("-")


class _Checker:
    """Collects problems with their locations while reading plain YAML data."""

    def __init__(self) -> None:
        self.problems: list[str] = []

    def fail(self, where: str, message: str) -> None:
        self.problems.append(f"{where}: {message}")

    def mapping(self, value: Any, where: str, allowed: dict[str, type | tuple[type, ...]],
                required: tuple[str, ...] = ()) -> dict[str, Any]:
        if not isinstance(value, dict):
            self.fail(where, f"must be a mapping, got {type(value).__name__}")
            return {}
        for key in value:
            if key not in allowed:
                self.fail(f"{where}.{key}", f"unknown key (allowed: {', '.join(sorted(allowed))})")
        for key in required:
            if key not in value or value[key] in (None, ""):
                self.fail(f"{where}.{key}", "is required")
        out = {}
        for key, types in allowed.items():
            if key in value and value[key] is not None:
                v = value[key]
                if isinstance(v, bool) and bool not in (types if isinstance(types, tuple) else (types,)):
                    self.fail(f"{where}.{key}", f"must be {_type_name(types)}, got a boolean")
                elif not isinstance(v, types):
                    self.fail(f"{where}.{key}", f"must be {_type_name(types)}, got {type(v).__name__}")
                else:
                    out[key] = v
        return out

    def choice(self, value: str, where: str, choices: tuple[str, ...]) -> None:
        if value not in choices:
            self.fail(where, f"must be one of {', '.join(choices)}, got {value!r}")

    def url(self, value: str, where: str) -> None:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            self.fail(where, f"must be http(s), got {value!r}")

    def str_list(self, value: Any, where: str) -> tuple[str, ...]:
        if value is None:
            return ()
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            self.fail(where, "must be a list of strings")
            return ()
        return tuple(value)


def _type_name(types: type | tuple[type, ...]) -> str:
    names = {str: "a string", bool: "true/false", int: "an integer", float: "a number",
             list: "a list", dict: "a mapping"}
    tt = types if isinstance(types, tuple) else (types,)
    if set(tt) == {int, float}:
        return "a number"
    return " or ".join(names.get(t, t.__name__) for t in tt)


_FETCH_KEYS: dict[str, type | tuple[type, ...]] = {
    "connect_timeout_s": (int, float), "read_timeout_s": (int, float), "timeout_s": (int, float),
    "max_bytes": int, "user_agent": str, "retries": int, "concurrency": int,
    "per_host_delay_s": (int, float), "max_entries_per_feed": int, "per_host_concurrency": int,
    "respect_robots": bool, "extract_workers": int, "failure_backoff_s": (int, float), "max_backoff_s": (int, float),
    "max_request_s": (int, float), "allow_private": list,
}
_EVIDENCE_KEYS: dict[str, type | tuple[type, ...]] = {
    "warc": bool, "warc_dir": str, "warc_max_mb": int, "tsa_url": str, "tsa_ca_file": str,
}
_DEFAULT_KEYS: dict[str, type | tuple[type, ...]] = {"language": str, "country": str, **_FETCH_KEYS, **_EVIDENCE_KEYS}
_OUTLET_KEYS: dict[str, type | tuple[type, ...]] = {
    "name": str, "id": str, "homepage": str, "scope": str, "state": str, "country": str,
    "language": str, "tags": list, "columnists": list, "enabled": bool, "note": str, "feeds": list,
}
_FEED_KEYS: dict[str, type | tuple[type, ...]] = {
    "url": str, "section": str, "kind": str, "language": str, "columnist": str, "tags": list,
    "enabled": bool, "verified": bool, "note": str, "link_pattern": str,
}


def parse_config(data: Any, source: str = "feeds.yaml") -> Config:
    """Validate parsed YAML ``data`` and build a :class:`Config`.

    Raises:
        ConfigError: listing every problem, each with its location.
    """
    c = _Checker()
    top = c.mapping(data, "(top level)", {"version": int, "defaults": dict, "outlets": list},
                    required=("outlets",))
    if isinstance(data, dict) and data.get("version", 1) != 1:
        c.fail("version", f"unsupported version {data.get('version')!r} (this monitor reads version 1)")
    defaults = c.mapping(top.get("defaults", {}), "defaults", _DEFAULT_KEYS)
    fetch = _fetch_settings(defaults, c)
    evidence = _evidence_settings(defaults, c)
    for key in ("connect_timeout_s", "read_timeout_s", "timeout_s", "per_host_delay_s", "extract_workers",
                "failure_backoff_s", "max_backoff_s"):
        if key in defaults and defaults[key] < 0:
            c.fail(f"defaults.{key}", "must not be negative")
    for key in ("max_bytes", "concurrency", "max_entries_per_feed", "per_host_concurrency"):
        if key in defaults and defaults[key] < 1:
            c.fail(f"defaults.{key}", "must be at least 1")
    if "max_request_s" in defaults and defaults["max_request_s"] <= 0:
        c.fail("defaults.max_request_s", "must be more than 0 (seconds)")
    outlets: list[Outlet] = []
    seen_ids: dict[str, str] = {}
    seen_urls: dict[str, str] = {}
    raw_outlets = top.get("outlets", [])
    if isinstance(raw_outlets, list) and not raw_outlets and "outlets" in top:
        c.fail("outlets", "is empty: list at least one outlet")
    for i, raw in enumerate(raw_outlets):
        where = f"outlets[{i}]"
        o = c.mapping(raw, where, _OUTLET_KEYS, required=("name", "feeds"))
        if not o and not isinstance(raw, dict):
            continue
        name = o.get("name", f"outlet-{i}")
        oid = o.get("id") or slugify(name)
        if not re.fullmatch(r"[a-z0-9][a-z0-9-]*", oid):
            c.fail(f"{where}.id", f"must be a lower-case slug (a-z, 0-9, -), got {oid!r}")
        if oid in seen_ids:
            c.fail(f"{where}.id", f"duplicate outlet id {oid!r} (also {seen_ids[oid]})")
        seen_ids[oid] = where
        if "homepage" in o:
            c.url(o["homepage"], f"{where}.homepage")
        scope = o.get("scope", "national")
        c.choice(scope, f"{where}.scope", SCOPES)
        language = o.get("language", defaults.get("language", "es"))
        feeds: list[Feed] = []
        raw_feeds = o.get("feeds", [])
        if "feeds" in o and not raw_feeds:
            c.fail(f"{where}.feeds", "is empty: list at least one feed")
        for j, rf in enumerate(raw_feeds):
            fw = f"{where}.feeds[{j}]"
            f = c.mapping(rf, fw, _FEED_KEYS, required=("url", "section"))
            if "url" in f:
                c.url(f["url"], f"{fw}.url")
                if f["url"] in seen_urls:
                    c.fail(f"{fw}.url", f"duplicate feed url (also {seen_urls[f['url']]})")
                seen_urls[f["url"]] = fw
            if "section" in f:
                c.choice(f["section"], f"{fw}.section", SECTIONS)
            kind = f.get("kind", "feed")
            c.choice(kind, f"{fw}.kind", FEED_KINDS)
            _check_link_pattern(c, f, kind, fw)
            feeds.append(Feed(
                id=feed_id(oid, f.get("section", "news"), f.get("url", "")), outlet_id=oid, url=f.get("url", ""), section=f.get("section", "news"),
                kind=kind, language=f.get("language", language), columnist=f.get("columnist", ""),
                tags=c.str_list(f.get("tags"), f"{fw}.tags"), enabled=f.get("enabled", True),
                verified=f.get("verified", False), note=f.get("note", ""),
                link_pattern=f.get("link_pattern", ""),
            ))
        outlets.append(Outlet(
            id=oid, name=name, feeds=tuple(feeds), homepage=o.get("homepage", ""), scope=scope,
            state=o.get("state", ""), country=o.get("country", defaults.get("country", "MX")),
            language=language, tags=c.str_list(o.get("tags"), f"{where}.tags"),
            columnists=c.str_list(o.get("columnists"), f"{where}.columnists"),
            enabled=o.get("enabled", True), note=o.get("note", ""),
        ))
    if c.problems:
        raise ConfigError(source, c.problems)
    return Config(source=source, outlets=tuple(outlets), fetch=fetch, evidence=evidence)


def _check_link_pattern(c: _Checker, feed: dict[str, Any], kind: str, where: str) -> None:
    """``link_pattern`` is required for kind html, must compile, and is meaningless for other kinds."""
    pattern = feed.get("link_pattern")
    if kind != "html":
        if pattern is not None:
            c.fail(f"{where}.link_pattern", f"is only used with kind html (this feed is kind {kind})")
        return
    if not pattern:
        c.fail(f"{where}.link_pattern", "is required for kind html")
        return
    try:
        re.compile(pattern)
    except re.error as e:
        c.fail(f"{where}.link_pattern", f"is not a valid regular expression: {e}")


def _fetch_settings(defaults: dict[str, Any], c: _Checker) -> FetchSettings:
    base = FetchSettings()
    timeout = defaults.get("timeout_s")
    return FetchSettings(
        connect_timeout_s=float(defaults.get("connect_timeout_s", min(base.connect_timeout_s, timeout or 1e9))),
        read_timeout_s=float(defaults.get("read_timeout_s", timeout if timeout is not None else base.read_timeout_s)),
        max_bytes=defaults.get("max_bytes", base.max_bytes),
        user_agent=defaults.get("user_agent", base.user_agent),
        retries=defaults.get("retries", base.retries),
        concurrency=defaults.get("concurrency", base.concurrency),
        per_host_delay_s=float(defaults.get("per_host_delay_s", base.per_host_delay_s)),
        max_entries_per_feed=defaults.get("max_entries_per_feed", base.max_entries_per_feed),
        per_host_concurrency=defaults.get("per_host_concurrency", base.per_host_concurrency),
        respect_robots=defaults.get("respect_robots", base.respect_robots),
        extract_workers=defaults.get("extract_workers", base.extract_workers),
        failure_backoff_s=float(defaults.get("failure_backoff_s", base.failure_backoff_s)),
        max_backoff_s=float(defaults.get("max_backoff_s", base.max_backoff_s)),
        max_request_s=float(defaults.get("max_request_s", base.max_request_s)),
        allow_private=_allow_private(defaults.get("allow_private", []), c),
    )


def _allow_private(entries: list[Any], c: _Checker) -> tuple[str, ...]:
    """``defaults.allow_private``: each entry an ``IP:PORT``, ``[IPv6]:PORT``, ``IP`` or CIDR string."""
    from .netguard import parse_allow_entry

    out = []
    for i, entry in enumerate(entries):
        where = f"defaults.allow_private[{i}]"
        if not isinstance(entry, str):
            c.fail(where, f"must be a string like \"127.0.0.1:8765\" or \"10.20.0.0/16\", got {type(entry).__name__} {entry!r}")
            continue
        try:
            out.append(parse_allow_entry(entry).text)
        except ValueError as e:
            c.fail(where, str(e))
    return tuple(out)


def _evidence_settings(defaults: dict[str, Any], c: _Checker) -> EvidenceSettings:
    if "warc_max_mb" in defaults and defaults["warc_max_mb"] < 1:
        c.fail("defaults.warc_max_mb", "must be at least 1")
    if defaults.get("tsa_url"):
        c.url(defaults["tsa_url"], "defaults.tsa_url")
    if defaults.get("tsa_ca_file") and not Path(defaults["tsa_ca_file"]).is_file():
        c.fail("defaults.tsa_ca_file", f"file not found: {defaults['tsa_ca_file']!r}")
    return EvidenceSettings(**{k: defaults[k] for k in _EVIDENCE_KEYS if k in defaults})


def feed_id(outlet_id: str, section: str, url: str) -> str:
    """Stable, readable feed id: outlet, section and a short hash of the URL."""
    import hashlib

    return f"{outlet_id}/{section}-{hashlib.sha256(url.encode()).hexdigest()[:6]}"


def load_config(path: str | Path) -> Config:
    """Read and validate a feeds.yaml file.

    Raises:
        ConfigError: the file is missing, not YAML, or invalid (every problem listed).
    """
    return parse_config(read_yaml(path), str(path))


def read_yaml(path: str | Path) -> Any:
    """The parsed YAML of a configuration file.

    Raises:
        ConfigError: the file is missing, unreadable or not YAML (with the line and column).
    """
    name = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(name, ["file not found"]) from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(name, [f"cannot read: {e}"]) from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "(parse)"
        raise ConfigError(name, [f"{where}: not valid YAML: {getattr(e, 'problem', e)}"]) from None
