"""Read and validate alerts.yaml (campaign detection, alert rules, channels, digest), every problem at once."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config import _Checker, read_yaml
from ..errors import ConfigError

RULE_KINDS = ("new_campaign", "official_statement", "score_above", "confirmed_item", "smear_added_by_edit",
              "smear_removed")
CHANNEL_TYPES = ("webhook", "email")
TLS_MODES = ("starttls", "ssl", "none")
SECTIONS = ("news", "opinion")
DEFAULT_FILE = "alerts.yaml"
DEFAULT_BASE_URL = "http://127.0.0.1:8001"   # where `monitor serve` listens by default: links in alerts


@dataclass(frozen=True, slots=True)
class CampaignSettings:
    """When flagged passages form a campaign (docs/campaigns.md explains every default)."""

    min_outlets: int = 3              # K: distinct outlets ...
    window_hours: float = 48.0        # ... within W hours
    max_span_days: float = 14.0       # a campaign takes no new passage this long after it began (next episode)
    baseline_days: int = 28           # trailing period of the target's own rate (burst score)
    copy_jaccard: float = 0.5         # MinHash Jaccard of passage word 3-shingles: a copy
    paraphrase_cosine: float = 0.9    # cosine of e5 passage embeddings: a paraphrase
    category_min: float = 0.4         # a passage's categories scoring at least this count
    shingle_k: int = 3                # word shingle length for passage MinHash (passages are short)


@dataclass(frozen=True, slots=True)
class Rule:
    """One alert rule: what fires it, optional filters, and which channels it goes to."""

    id: str
    when: str
    score: float = 0.0                # score_above: the threshold
    section: str = ""                 # score_above / official_statement: news or opinion only
    targets: str | tuple[str, ...] = "any"   # "any", "watchlist" (named, not generic) or a list of names
    min_outlets: int = 0              # new_campaign: at least this many outlets
    min_burst: float = 0.0            # new_campaign: burst score at least this
    channels: tuple[str, ...] | None = None  # None: every enabled channel


DEFAULT_RULES = (
    Rule(id="new-campaign", when="new_campaign", min_burst=2.0),
    Rule(id="official-statement", when="official_statement"),
    Rule(id="watchlist-confirmed", when="confirmed_item", targets="watchlist"),
    Rule(id="smear-added-by-edit", when="smear_added_by_edit"),
    Rule(id="smear-removed", when="smear_removed"),
)


@dataclass(frozen=True, slots=True)
class Channel:
    """A push channel: a webhook (signed JSON POST) or e-mail over SMTP."""

    id: str
    type: str
    enabled: bool = True
    timeout_s: float = 10.0
    # webhook
    url: str = ""
    secret_env: str = ""
    # email
    host: str = ""
    port: int = 587
    tls: str = "starttls"
    username_env: str = ""
    password_env: str = ""
    sender: str = ""
    to: tuple[str, ...] = ()

    def secret(self) -> bytes:
        """The webhook's HMAC key, read from its environment variable at send time."""
        return os.environ.get(self.secret_env, "").encode("utf-8")


@dataclass(frozen=True, slots=True)
class DeliverySettings:
    """Retries: the n-th failure waits ``backoff_s * 2**(n-1)``; after ``max_attempts`` the delivery is failed."""

    max_attempts: int = 5
    backoff_s: float = 60.0
    max_backoff_s: float = 3600.0
    pass_budget_s: float = 60.0       # one delivery pass stops starting sends after this long


@dataclass(frozen=True, slots=True)
class DigestSettings:
    """The daily digest of the last 24 hours, sent once a day after ``at`` (local time)."""

    enabled: bool = False
    at: str = "07:00"
    timezone: str = "America/Mexico_City"
    channels: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class AlertingSettings:
    """The whole validated alerts.yaml (defaults when the file is absent)."""

    source: str = "(defaults)"
    campaigns: CampaignSettings = field(default_factory=CampaignSettings)
    rules: tuple[Rule, ...] = DEFAULT_RULES
    channels: tuple[Channel, ...] = ()
    delivery: DeliverySettings = field(default_factory=DeliverySettings)
    digest: DigestSettings = field(default_factory=DigestSettings)
    base_url: str = DEFAULT_BASE_URL
    database: str = ""                # Datasette database name for links ("" = the db file's stem)

    def channel(self, channel_id: str) -> Channel | None:
        """The channel with this id."""
        return next((c for c in self.channels if c.id == channel_id), None)

    def channels_for(self, rule: Rule) -> list[str]:
        """Enabled channels an alert of ``rule`` goes to."""
        ids = rule.channels if rule.channels is not None else tuple(c.id for c in self.channels)
        return [i for i in ids if (c := self.channel(i)) is not None and c.enabled]


_CAMPAIGN_KEYS: dict[str, type | tuple[type, ...]] = {
    "min_outlets": int, "window_hours": (int, float), "max_span_days": (int, float), "baseline_days": int, "copy_jaccard": (int, float),
    "paraphrase_cosine": (int, float), "category_min": (int, float), "shingle_k": int,
}
_RULE_KEYS: dict[str, type | tuple[type, ...]] = {
    "id": str, "when": str, "score": (int, float), "section": str, "targets": (str, list), "min_outlets": int,
    "min_burst": (int, float), "channels": list,
}
_CHANNEL_KEYS: dict[str, type | tuple[type, ...]] = {
    "id": str, "type": str, "enabled": bool, "timeout_s": (int, float), "url": str, "secret_env": str, "host": str,
    "port": int, "tls": str, "username_env": str, "password_env": str, "from": str, "to": list,
}
_DELIVERY_KEYS: dict[str, type | tuple[type, ...]] = {
    "max_attempts": int, "backoff_s": (int, float), "max_backoff_s": (int, float), "pass_budget_s": (int, float),
}
_DIGEST_KEYS: dict[str, type | tuple[type, ...]] = {"enabled": bool, "at": str, "timezone": str, "channels": list}
_ALERTS_KEYS: dict[str, type | tuple[type, ...]] = {
    "base_url": str, "database": str, "rules": list, "channels": list, "delivery": dict, "digest": dict,
}
_ID = re.compile(r"[a-z0-9][a-z0-9_-]*")
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+")


def parse_alerting(data: Any, source: str = DEFAULT_FILE, check_env: bool = True) -> AlertingSettings:
    """Validate parsed YAML ``data`` and build :class:`AlertingSettings`.

    Args:
        check_env: report enabled channels whose secret/credential environment variables are unset.

    Raises:
        ConfigError: listing every problem, each with its location.
    """
    c = _Checker()
    top = c.mapping(data if data is not None else {}, "(top level)",
                    {"version": int, "campaigns": dict, "alerts": dict})
    if isinstance(data, dict) and data.get("version", 1) != 1:
        c.fail("version", f"unsupported version {data.get('version')!r} (this monitor reads version 1)")
    campaigns = _campaign_settings(c, c.mapping(top.get("campaigns", {}), "campaigns", _CAMPAIGN_KEYS))
    alerts = c.mapping(top.get("alerts", {}), "alerts", _ALERTS_KEYS)
    base_url = alerts.get("base_url", DEFAULT_BASE_URL).rstrip("/")
    c.url(base_url, "alerts.base_url")
    channels = _channels(c, alerts.get("channels", []), check_env)
    channel_ids = {ch.id for ch in channels}
    rules = _rules(c, alerts["rules"], channel_ids) if "rules" in alerts else DEFAULT_RULES
    delivery = _delivery(c, c.mapping(alerts.get("delivery", {}), "alerts.delivery", _DELIVERY_KEYS))
    digest = _digest(c, c.mapping(alerts.get("digest", {}), "alerts.digest", _DIGEST_KEYS), channel_ids)
    if c.problems:
        raise ConfigError(source, c.problems)
    return AlertingSettings(source=source, campaigns=campaigns, rules=rules, channels=channels, delivery=delivery,
                            digest=digest, base_url=base_url, database=alerts.get("database", ""))


def _campaign_settings(c: _Checker, raw: dict[str, Any]) -> CampaignSettings:
    for key, low in (("min_outlets", 2), ("baseline_days", 1), ("shingle_k", 1)):
        if key in raw and raw[key] < low:
            c.fail(f"campaigns.{key}", f"must be at least {low}, got {raw[key]}")
    if "window_hours" in raw and not 0 < raw["window_hours"] <= 24 * 90:
        c.fail("campaigns.window_hours", f"must be more than 0 and at most 2160 (90 days), got {raw['window_hours']}")
    if "max_span_days" in raw and raw["max_span_days"] * 24 < raw.get("window_hours", 48):
        c.fail("campaigns.max_span_days", f"must be at least the window ({raw.get('window_hours', 48)} hours), "
                                          f"got {raw['max_span_days']} days")
    for key in ("copy_jaccard", "paraphrase_cosine", "category_min"):
        if key in raw and not 0 < raw[key] <= 1:
            c.fail(f"campaigns.{key}", f"must be in (0, 1], got {raw[key]}")
    return CampaignSettings(**{k: (float(v) if isinstance(getattr(CampaignSettings(), k), float) else v)
                               for k, v in raw.items()})


def _unique_id(c: _Checker, raw: dict[str, Any], default: str, where: str, seen: set[str], what: str) -> str:
    """The item's ``id``: a slug, not used before (``seen`` is updated)."""
    value = raw.get("id", default)
    if "id" in raw and not _ID.fullmatch(value):
        c.fail(f"{where}.id", f"must be a lower-case slug (a-z, 0-9, -, _), got {value!r}")
    if value in seen:
        c.fail(f"{where}.id", f"duplicate {what} id {value!r}")
    seen.add(value)
    return value


def _rules(c: _Checker, raw_rules: list[Any], channel_ids: set[str]) -> tuple[Rule, ...]:
    rules: list[Rule] = []
    seen: set[str] = set()
    for i, raw in enumerate(raw_rules):
        where = f"alerts.rules[{i}]"
        r = c.mapping(raw, where, _RULE_KEYS, required=("id", "when"))
        rid = _unique_id(c, r, f"rule-{i}", where, seen, "rule")
        when = r.get("when", "")
        if "when" in r:
            c.choice(when, f"{where}.when", RULE_KINDS)
        if when == "score_above" and "score" not in r:
            c.fail(f"{where}.score", "is required for when: score_above")
        if "score" in r and not 0 <= r["score"] <= 1:
            c.fail(f"{where}.score", f"must be between 0 and 1, got {r['score']}")
        if "section" in r:
            c.choice(r["section"], f"{where}.section", SECTIONS)
        for key, kinds in (("score", ("score_above",)), ("section", ("score_above", "official_statement")),
                           ("min_outlets", ("new_campaign",)), ("min_burst", ("new_campaign",))):
            if key in r and when in RULE_KINDS and when not in kinds:
                c.fail(f"{where}.{key}", f"is not used with when: {when} (only with {', '.join(kinds)})")
        targets: str | tuple[str, ...] = "any"
        if isinstance(r.get("targets"), str):
            if r["targets"] not in ("any", "watchlist"):
                c.fail(f"{where}.targets", f"must be any, watchlist or a list of target names, got {r['targets']!r}")
            targets = r["targets"]
        elif "targets" in r:
            targets = c.str_list(r["targets"], f"{where}.targets")
        channels = None
        if "channels" in r:
            channels = c.str_list(r["channels"], f"{where}.channels")
            for ch in channels:
                if ch not in channel_ids:
                    c.fail(f"{where}.channels", f"unknown channel {ch!r} (defined: {', '.join(sorted(channel_ids)) or 'none'})")
        rules.append(Rule(id=rid, when=when, score=float(r.get("score", 0.0)), section=r.get("section", ""),
                          targets=targets, min_outlets=r.get("min_outlets", 0),
                          min_burst=float(r.get("min_burst", 0.0)), channels=channels))
    return tuple(rules)


def _channels(c: _Checker, raw_channels: list[Any], check_env: bool) -> tuple[Channel, ...]:
    channels: list[Channel] = []
    seen: set[str] = set()
    for i, raw in enumerate(raw_channels):
        where = f"alerts.channels[{i}]"
        ch = c.mapping(raw, where, _CHANNEL_KEYS, required=("id", "type"))
        cid = _unique_id(c, ch, f"channel-{i}", where, seen, "channel")
        kind = ch.get("type", "")
        if "type" in ch:
            c.choice(kind, f"{where}.type", CHANNEL_TYPES)
        enabled = ch.get("enabled", True)
        allowed = {"webhook": {"url", "secret_env"},
                   "email": {"host", "port", "tls", "username_env", "password_env", "from", "to"}}.get(kind, set())
        for key in ch:
            if key not in {"id", "type", "enabled", "timeout_s"} | allowed and kind in CHANNEL_TYPES:
                c.fail(f"{where}.{key}", f"is not used by a {kind} channel")
        if "timeout_s" in ch and not 0 < ch["timeout_s"] <= 120:
            c.fail(f"{where}.timeout_s", f"must be more than 0 and at most 120, got {ch['timeout_s']}")
        envs = []
        if kind == "webhook":
            for key in ("url", "secret_env"):
                if key not in ch:
                    c.fail(f"{where}.{key}", "is required for a webhook channel")
            if "url" in ch:
                c.url(ch["url"], f"{where}.url")
            envs = [("secret_env", ch.get("secret_env"))]
        elif kind == "email":
            for key in ("host", "from", "to"):
                if key not in ch:
                    c.fail(f"{where}.{key}", "is required for an email channel")
            if "tls" in ch:
                c.choice(ch["tls"], f"{where}.tls", TLS_MODES)
            if "port" in ch and not 0 < ch["port"] < 65536:
                c.fail(f"{where}.port", f"must be a TCP port, got {ch['port']}")
            for addr in [ch.get("from", "")] + list(c.str_list(ch.get("to"), f"{where}.to")):
                if addr and not _EMAIL.fullmatch(addr):
                    c.fail(f"{where}", f"not an e-mail address: {addr!r}")
            if bool(ch.get("username_env")) != bool(ch.get("password_env")):
                c.fail(f"{where}", "set both username_env and password_env, or neither")
            envs = [("username_env", ch.get("username_env")), ("password_env", ch.get("password_env"))]
        for key, name in envs:
            if name and not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
                c.fail(f"{where}.{key}", f"must name an environment variable, got {name!r}")
            elif name and check_env and enabled and not os.environ.get(name):
                c.fail(f"{where}.{key}", f"environment variable {name} is not set (or set enabled: false)")
        channels.append(Channel(
            id=cid, type=kind, enabled=enabled, timeout_s=float(ch.get("timeout_s", 10.0)), url=ch.get("url", ""),
            secret_env=ch.get("secret_env", ""), host=ch.get("host", ""), port=ch.get("port", 587),
            tls=ch.get("tls", "starttls"), username_env=ch.get("username_env", ""),
            password_env=ch.get("password_env", ""), sender=ch.get("from", ""),
            to=tuple(c.str_list(ch.get("to"), f"{where}.to")) if isinstance(ch.get("to"), list) else ()))
    return tuple(channels)


def _delivery(c: _Checker, raw: dict[str, Any]) -> DeliverySettings:
    if "max_attempts" in raw and not 1 <= raw["max_attempts"] <= 50:
        c.fail("alerts.delivery.max_attempts", f"must be between 1 and 50, got {raw['max_attempts']}")
    for key in ("backoff_s", "max_backoff_s", "pass_budget_s"):
        if key in raw and raw[key] < 0:
            c.fail(f"alerts.delivery.{key}", "must not be negative")
    return DeliverySettings(**{k: (float(v) if k != "max_attempts" else v) for k, v in raw.items()})


def _digest(c: _Checker, raw: dict[str, Any], channel_ids: set[str]) -> DigestSettings:
    if "at" in raw and not re.fullmatch(r"([01]\d|2[0-3]):[0-5]\d", raw["at"]):
        c.fail("alerts.digest.at", f"must be HH:MM (24 h), got {raw['at']!r}")
    if "timezone" in raw:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(raw["timezone"])
        except (ZoneInfoNotFoundError, ValueError):
            c.fail("alerts.digest.timezone", f"unknown time zone {raw['timezone']!r} (e.g. America/Mexico_City)")
    channels = c.str_list(raw.get("channels"), "alerts.digest.channels")
    for ch in channels:
        if ch not in channel_ids:
            c.fail("alerts.digest.channels", f"unknown channel {ch!r} (defined: {', '.join(sorted(channel_ids)) or 'none'})")
    if raw.get("enabled") and not channels:
        c.fail("alerts.digest.channels", "list at least one channel when the digest is enabled")
    return DigestSettings(enabled=raw.get("enabled", False), at=raw.get("at", "07:00"),
                          timezone=raw.get("timezone", "America/Mexico_City"), channels=channels)


def default_path(feeds_path: str | Path | None = None) -> Path:
    """``$MONITOR_ALERTS``, else ``alerts.yaml`` in the folder of the feeds file (the current folder)."""
    env = os.environ.get("MONITOR_ALERTS")
    if env:
        return Path(env)
    return (Path(feeds_path).parent if feeds_path else Path(".")) / DEFAULT_FILE


def load_alerting(path: str | Path, required: bool = False, check_env: bool = True) -> AlertingSettings:
    """Read and validate an alerts.yaml; the defaults (no channels) when it is absent and not ``required``.

    Raises:
        ConfigError: the file is invalid (every problem listed), or missing while ``required``.
    """
    if not required and not Path(path).exists():
        return AlertingSettings()
    return parse_alerting(read_yaml(path), str(path), check_env=check_env)
