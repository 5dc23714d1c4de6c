"""Push channels: a signed JSON POST (webhook) and e-mail over SMTP; each raises DeliveryError on failure."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import smtplib
import ssl
import time
from email.message import EmailMessage
from email.utils import formatdate
from typing import Any

import httpx

from .. import __version__
from ..errors import MonitorError
from .config import Channel

USER_AGENT = f"smear-monitor/{__version__} (alerts)"
SIGNATURE_HEADER = "X-Monitor-Signature"
TIMESTAMP_HEADER = "X-Monitor-Timestamp"
ALERT_HEADER = "X-Monitor-Alert"


class DeliveryError(MonitorError):
    """A channel did not accept an alert (refused, timed out, non-2xx answer, SMTP error)."""


def alert_document(row: dict[str, Any]) -> dict[str, Any]:
    """The JSON sent for an alert (``row``: an ``alerts`` row; ``payload`` as stored JSON text or a dict)."""
    payload = row["payload"]
    return {"id": row["key"], "rule": row["rule"], "kind": row["kind"], "created_at": row["created_at"],
            "title": row["title"], "summary": row["summary"], "url": row["url"],
            "payload": json.loads(payload) if isinstance(payload, str) else payload}


def sign(secret: bytes, timestamp: str, body: bytes) -> str:
    """``sha256=`` + hex HMAC-SHA256 of ``timestamp + "." + body`` with ``secret`` (docs/campaigns.md)."""
    return "sha256=" + hmac.new(secret, timestamp.encode("ascii") + b"." + body, hashlib.sha256).hexdigest()


def verify_signature(secret: bytes, timestamp: str, body: bytes, signature: str, max_age_s: float = 300.0,
                     now: float | None = None) -> bool:
    """What a receiver does: recompute the signature (constant-time compare) and reject stale timestamps."""
    try:
        age = abs((now if now is not None else time.time()) - int(timestamp))
    except ValueError:
        return False
    return age <= max_age_s and hmac.compare_digest(sign(secret, timestamp, body), signature)


def send_webhook(channel: Channel, doc: dict[str, Any]) -> int:
    """POST the alert as JSON, signed; returns the HTTP status.

    Raises:
        DeliveryError: no secret, connection refused, timeout, or a status outside 2xx.
    """
    secret = channel.secret()
    if not secret:
        raise DeliveryError(f"webhook {channel.id}: environment variable {channel.secret_env} is not set")
    body = json.dumps(doc, ensure_ascii=False, sort_keys=True).encode("utf-8")
    timestamp = str(int(time.time()))
    headers = {"Content-Type": "application/json; charset=utf-8", "User-Agent": USER_AGENT, ALERT_HEADER: doc["id"],
               TIMESTAMP_HEADER: timestamp, SIGNATURE_HEADER: sign(secret, timestamp, body)}
    try:
        with httpx.Client(timeout=channel.timeout_s, follow_redirects=False, trust_env=False) as client:
            response = client.post(channel.url, content=body, headers=headers)
    except httpx.HTTPError as e:
        raise DeliveryError(f"webhook {channel.id}: {type(e).__name__}: {e}") from e
    if not 200 <= response.status_code < 300:
        raise DeliveryError(f"webhook {channel.id}: HTTP {response.status_code} from {channel.url}")
    return response.status_code


def email_message(channel: Channel, doc: dict[str, Any]) -> EmailMessage:
    """The e-mail of an alert: plain text (and the digest's HTML), a stable Message-ID per alert."""
    msg = EmailMessage()
    msg["Subject"] = f"[monitor] {doc['title']}"
    msg["From"] = channel.sender
    msg["To"] = ", ".join(channel.to)
    msg["Date"] = formatdate(usegmt=True)
    msg["Message-ID"] = f"<{hashlib.sha256(doc['id'].encode()).hexdigest()[:32]}@smear-monitor>"
    msg[ALERT_HEADER] = doc["id"]
    payload = doc.get("payload") or {}
    text = payload.get("text") or "\n\n".join(filter(None, [doc["title"], doc["summary"], doc.get("url") or "", _lines(payload)]))
    msg.set_content(text)
    if payload.get("html"):
        msg.add_alternative(payload["html"], subtype="html")
    return msg


def _lines(payload: dict[str, Any]) -> str:
    members = payload.get("members") or []
    return "\n".join(f"- {m['at'][:16]} {m['outlet']}: {m['title']}\n  {m['url']}" for m in members)


def send_email(channel: Channel, doc: dict[str, Any]) -> None:
    """Send the alert by SMTP (STARTTLS, implicit TLS or plain as configured; login when credentials are set).

    Raises:
        DeliveryError: connection refused, timeout, TLS or SMTP error, or a credential variable unset.
    """
    user = os.environ.get(channel.username_env, "") if channel.username_env else ""
    password = os.environ.get(channel.password_env, "") if channel.password_env else ""
    if channel.username_env and not (user and password):
        raise DeliveryError(f"email {channel.id}: {channel.username_env} / {channel.password_env} are not both set")
    msg = email_message(channel, doc)
    try:
        if channel.tls == "ssl":
            smtp: smtplib.SMTP = smtplib.SMTP_SSL(channel.host, channel.port, timeout=channel.timeout_s,
                                                  context=ssl.create_default_context())
        else:
            smtp = smtplib.SMTP(channel.host, channel.port, timeout=channel.timeout_s)
        with smtp:
            smtp.ehlo()
            if channel.tls == "starttls":
                smtp.starttls(context=ssl.create_default_context())
                smtp.ehlo()
            if user:
                smtp.login(user, password)
            smtp.send_message(msg)
    except (OSError, smtplib.SMTPException) as e:
        raise DeliveryError(f"email {channel.id}: {type(e).__name__}: {e}") from e


def send(channel: Channel, doc: dict[str, Any]) -> None:
    """Deliver ``doc`` through ``channel`` (webhook or email)."""
    if channel.type == "webhook":
        send_webhook(channel, doc)
    elif channel.type == "email":
        send_email(channel, doc)
    else:
        raise DeliveryError(f"channel {channel.id}: unknown type {channel.type!r}")
