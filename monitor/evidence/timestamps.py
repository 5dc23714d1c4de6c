"""RFC 3161 trusted timestamps for capture hashes: request them from a TSA, check them with ``openssl ts``.

A time-stamping authority signs "this SHA-256 existed at this time"; anyone can later check
the token with standard tools (``openssl ts -verify``) against the TSA's CA certificate,
without trusting this program or its database. Queries and checks use the ``openssl`` command
(present on every Linux, macOS and Git-for-Windows install); the query is sent with httpx.
What is stored per capture is the whole TimeStampResp (``.tsr``).
"""

from __future__ import annotations

import logging
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import httpx
import sqlite_utils

from .. import store
from ..config import EvidenceSettings
from ..errors import MonitorError
from ..fetch import utc_now

LOGGER = logging.getLogger(__name__)


class TimestampError(MonitorError):
    """A TSA could not be reached, refused the request, or returned a token that does not check out."""


@dataclass(frozen=True, slots=True)
class Stamp:
    """One TSA answer for one hash."""

    reply: bytes              # DER TimeStampResp
    gen_time: str | None      # the TSA's time, ISO 8601 UTC
    requested_at: str


def _openssl(*args: str) -> subprocess.CompletedProcess[str]:
    exe = shutil.which("openssl")
    if exe is None:
        raise TimestampError("the openssl command is needed for RFC 3161 timestamps and was not found")
    return subprocess.run([exe, "ts", *args], capture_output=True, text=True, timeout=60, check=False)


def reply_info(reply: bytes) -> dict[str, str | None]:
    """Status, message imprint (hex SHA-256) and time of a TimeStampResp, as ``openssl ts -reply -text`` shows."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "reply.tsr"
        path.write_bytes(reply)
        out = _openssl("-reply", "-in", str(path), "-text")
    if out.returncode != 0:
        raise TimestampError(f"not a timestamp reply: {out.stderr.strip()[-300:]}")
    status = re.search(r"^Status: (.+?)\.?$", out.stdout, re.M)
    hexes = re.findall(r"^\s+[0-9a-f]{4} - ((?:[0-9a-f]{2}[ -]){1,16})", out.stdout, re.M)
    when = re.search(r"^Time stamp: (\w{3})\s+(\d+) (\d\d:\d\d:\d\d)(?:\.\d+)? (\d{4}) GMT", out.stdout, re.M)
    gen_time = None
    if when:
        parsed = datetime.strptime(f"{when.group(1)} {when.group(2)} {when.group(3)} {when.group(4)}", "%b %d %H:%M:%S %Y")
        gen_time = parsed.replace(tzinfo=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {"status": status.group(1) if status else None,
            "imprint": "".join(re.sub(r"[ -]", "", h) for h in hexes) or None, "gen_time": gen_time}


def verify(reply: bytes, sha256_hex: str, ca_file: str | Path | None = None, ca_pem: str | None = None) -> str | None:
    """Check a TimeStampResp against a SHA-256 and the TSA's CA; None when it verifies, else the reason."""
    with tempfile.TemporaryDirectory() as tmp:
        reply_path = Path(tmp) / "reply.tsr"
        reply_path.write_bytes(reply)
        if ca_file is None:
            if not ca_pem:
                return "no CA certificate to verify the token against"
            ca_file = Path(tmp) / "ca.pem"
            ca_file.write_text(ca_pem, encoding="ascii")
        out = _openssl("-verify", "-digest", sha256_hex, "-in", str(reply_path), "-CAfile", str(ca_file))
    if out.returncode == 0 and "Verification: OK" in out.stdout:
        return None
    reason = [line for line in (out.stdout + out.stderr).splitlines() if "error" in line or "FAILED" in line]
    return "; ".join(reason)[-300:] or "verification failed"


def request(tsa_url: str, sha256_hex: str, ca_file: str | Path | None = None, timeout_s: float = 30.0) -> Stamp:
    """Ask a TSA to stamp one SHA-256; with ``ca_file`` the answer is verified (signature, chain, nonce)."""
    requested_at = utc_now()
    with tempfile.TemporaryDirectory() as tmp:
        query = Path(tmp) / "query.tsq"
        made = _openssl("-query", "-digest", sha256_hex, "-sha256", "-cert", "-out", str(query))
        if made.returncode != 0:
            raise TimestampError(f"openssl ts -query failed: {made.stderr.strip()[-300:]}")
        try:
            with httpx.Client(timeout=timeout_s, trust_env=False) as client:
                response = client.post(tsa_url, content=query.read_bytes(),
                                       headers={"Content-Type": "application/timestamp-query"})
        except httpx.HTTPError as e:
            raise TimestampError(f"{tsa_url}: {type(e).__name__}: {e}") from None
        if response.status_code != 200:
            raise TimestampError(f"{tsa_url}: HTTP {response.status_code}")
        reply = response.content
        info = reply_info(reply)
        if info["status"] not in ("Granted", "Granted with modifications"):
            raise TimestampError(f"{tsa_url}: request not granted ({info['status']})")
        if info["imprint"] != sha256_hex:
            raise TimestampError(f"{tsa_url}: the token stamps another hash ({info['imprint']})")
        if ca_file:
            reply_path = Path(tmp) / "reply.tsr"
            reply_path.write_bytes(reply)
            checked = _openssl("-verify", "-queryfile", str(query), "-in", str(reply_path), "-CAfile", str(ca_file))
            if checked.returncode != 0:
                raise TimestampError(f"{tsa_url}: token does not verify against {ca_file}: {checked.stderr.strip()[-300:]}")
    return Stamp(reply=reply, gen_time=info["gen_time"], requested_at=requested_at)


def stamp_pending(db: sqlite_utils.Database, settings: EvidenceSettings, run_id: int | None = None,
                  limit: int = 500) -> int:
    """Timestamp captures that have no token yet (oldest first); returns how many were stamped.

    The first failure (TSA down, bad answer) is recorded in ``failures`` and ends the batch:
    the remaining captures are stamped by a later run.
    """
    if not settings.tsa_url:
        return 0
    ca_pem = Path(settings.tsa_ca_file).read_text(encoding="ascii") if settings.tsa_ca_file else None
    done = 0
    for capture in store.captures_to_timestamp(db, limit):
        try:
            stamp = request(settings.tsa_url, capture["sha256"], settings.tsa_ca_file or None)
        except TimestampError as e:
            LOGGER.warning("timestamping stopped: %s", e)
            store.record_failure(db, run_id, "timestamp", "tsa", str(e), url=settings.tsa_url)
            break
        store.record_timestamp(db, capture, settings.tsa_url, stamp.requested_at, stamp.gen_time, stamp.reply, ca_pem)
        done += 1
    return done
