"""Passwords and API tokens: scrypt hashes (stdlib), tokens stored as SHA-256 only."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

ROLES = ("reviewer", "analyst", "admin")
_N, _R, _P = 2**14, 8, 1  # scrypt cost: ~50 ms per check on this class of machine


def hash_password(password: str) -> str:
    """``scrypt$N$r$p$salt$hash`` (base64) of ``password`` with a random salt."""
    if len(password) < 8:
        raise ValueError("the password must have at least 8 characters")
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode("utf-8"), salt=salt, n=_N, r=_R, p=_P, dklen=32)
    return "$".join(["scrypt", str(_N), str(_R), str(_P), base64.b64encode(salt).decode(), base64.b64encode(digest).decode()])


def verify_password(password: str, stored: str) -> bool:
    """Whether ``password`` matches a hash from :func:`hash_password` (constant-time compare)."""
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return False
        got = hashlib.scrypt(password.encode("utf-8"), salt=base64.b64decode(salt), n=int(n), r=int(r), p=int(p),
                             dklen=len(base64.b64decode(digest)))
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(got, base64.b64decode(digest))


def new_token() -> tuple[str, str]:
    """A new API token and the SHA-256 to store (the token itself is shown once, never stored)."""
    token = "smt_" + secrets.token_urlsafe(32)
    return token, token_hash(token)


def token_hash(token: str) -> str:
    """SHA-256 hex of an API token."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()
