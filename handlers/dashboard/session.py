"""Dashboard sessions: an HMAC-signed cookie, CSRF tokens, and the local admin's password hash.

Why our own signed cookie rather than aiohttp-session: a session here is four small fields (who, role,
expiry, CSRF token) that are not secret, only unforgeable; HMAC-SHA256 over them is a dozen lines of
the standard library, adds no dependency and keeps sessions valid across restarts (the key lives in
the config or the database). Cookies are HttpOnly, SameSite=Lax, Path=/dashboard, and Secure when the
bot's public URL is https. Nothing personal goes into them.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
from typing import Any

SESSION_COOKIE = "qz_session"
OAUTH_COOKIE = "qz_oauth"
LOGIN_CSRF_COOKIE = "qz_login_csrf"
_SCRYPT = {"n": 2**14, "r": 8, "p": 1}


class Signer:
    """Signs and checks small JSON payloads with an expiry."""

    def __init__(self, secret: str) -> None:
        self._key = hashlib.sha256(("quanzu-dashboard:" + secret).encode()).digest()

    def dumps(self, payload: dict[str, Any], expires_at: float) -> str:
        data = _b64(json.dumps({**payload, "exp": int(expires_at)}, separators=(",", ":")).encode())
        return f"{data}.{_b64(hmac.new(self._key, data.encode(), hashlib.sha256).digest())}"

    def loads(self, value: str | None, now: float) -> dict[str, Any] | None:
        """The payload, or None if the value is missing, forged, malformed or expired."""
        if not value or value.count(".") != 1:
            return None
        data, signature = value.split(".")
        expected = _b64(hmac.new(self._key, data.encode(), hashlib.sha256).digest())
        if not hmac.compare_digest(signature, expected):
            return None
        try:
            payload = json.loads(base64.urlsafe_b64decode(data + "=" * (-len(data) % 4)))
        except ValueError:
            return None
        if not isinstance(payload, dict) or not isinstance(payload.get("exp"), int) or payload["exp"] < now:
            return None
        return payload


def new_token() -> str:
    return secrets.token_urlsafe(24)


def hash_password(password: str) -> str:
    """scrypt$n$r$p$salt$hash, for [dashboard] admin_password_hash."""
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, dklen=32, **_SCRYPT)
    return f"scrypt${_SCRYPT['n']}${_SCRYPT['r']}${_SCRYPT['p']}${_b64(salt)}${_b64(digest)}"


def verify_password(password: str, stored: str) -> bool:
    try:
        _, n, r, p, salt, digest = stored.split("$")
        actual = hashlib.scrypt(password.encode(), salt=_unb64(salt), n=int(n), r=int(r), p=int(p), dklen=32)
        return hmac.compare_digest(actual, _unb64(digest))
    except ValueError:
        return False


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
