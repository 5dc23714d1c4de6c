"""The alerts as an Atom 1.0 feed (RFC 4287): stable entry ids, so feed readers show each alert once."""

from __future__ import annotations

import uuid
import xml.etree.ElementTree as ET
from typing import Any

from .. import __version__

ATOM = "http://www.w3.org/2005/Atom"
_NS = uuid.UUID("5b0c8a43-8f0e-4c5e-9a55-1f1c3d0a7e21")


def entry_id(key: str) -> str:
    """A stable URN for an alert key."""
    return f"urn:uuid:{uuid.uuid5(_NS, key)}"


def _rfc3339(value: str) -> str:
    """Stored UTC times ("...T10:00:00.123456Z") as RFC 3339 with second precision."""
    return value[:19] + "Z" if len(value) >= 19 else value


def render_atom(alerts: list[dict[str, Any]], feed_url: str, site_url: str, title: str = "Smear-campaign monitor: alerts",
                updated: str | None = None) -> bytes:
    """Render alerts (``alerts`` rows, newest first) as an Atom document (UTF-8 bytes).

    Args:
        feed_url: this feed's own URL (``rel="self"``), without any token.
        site_url: the desk's URL (``rel="alternate"``).
        updated: the feed's time when it has no entries (default: the newest alert's).
    """
    ET.register_namespace("", ATOM)
    feed = ET.Element(f"{{{ATOM}}}feed")

    def sub(parent: ET.Element, tag: str, text: str | None = None, **attrs: str) -> ET.Element:
        el = ET.SubElement(parent, f"{{{ATOM}}}{tag}", attrs)
        if text is not None:
            el.text = text
        return el

    sub(feed, "id", entry_id("feed:" + site_url))
    sub(feed, "title", title)
    sub(feed, "updated", _rfc3339(alerts[0]["created_at"] if alerts else (updated or "1970-01-01T00:00:00Z")))
    sub(feed, "link", rel="self", href=feed_url, type="application/atom+xml")
    sub(feed, "link", rel="alternate", href=site_url, type="text/html")
    sub(feed, "generator", "smear-monitor", version=__version__)
    author = sub(feed, "author")
    sub(author, "name", "smear-monitor")
    for a in alerts:
        entry = sub(feed, "entry")
        sub(entry, "id", entry_id(a["key"]))
        sub(entry, "title", a["title"])
        sub(entry, "updated", _rfc3339(a["created_at"]))
        sub(entry, "published", _rfc3339(a["created_at"]))
        if a.get("url"):
            sub(entry, "link", rel="alternate", href=a["url"], type="text/html")
        sub(entry, "category", term=a["kind"], label=a["rule"])
        sub(entry, "summary", a["summary"], type="text")
    return ET.tostring(feed, encoding="utf-8", xml_declaration=True)
