"""Dashboard sessions: HMAC-signed cookies, the signing key, and the local admin's password hash.

A session cookie carries a random session id and the page's CSRF token, signed and with an expiry;
the database keeps the id's SHA-256 (migration 009), so logout and revocation end a session at once,
whoever holds a copy of the cookie, and an expired session is refused by the server as well as by
the signature. Each kind of cookie has a key of its own, derived from the secret: an OAuth state
cookie never passes as a session. The secret comes from the config or a file, never the database.
Cookies are HttpOnly, SameSite=Lax, Path=/dashboard, and Secure when the bot's public URL is https.
Nothing personal goes into them.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import os
import secrets
import stat
from pathlib import Path
from typing import Any

SESSION_COOKIE = "qz_session"
OAUTH_COOKIE = "qz_oauth"
LOGIN_CSRF_COOKIE = "qz_login_csrf"
_SCRYPT = {"n": 2**14, "r": 8, "p": 1}
_MAX_COOKIE = 4096  # characters; browsers keep no more, and we never write that much
_LOGGER = logging.getLogger(__name__)


class Signer:
    """Signs and checks small JSON payloads with an expiry, for one purpose ("session", "oauth")."""

    def __init__(self, secret: str, purpose: str) -> None:
        self._key = hmac.new(secret.encode(), f"quanzu-dashboard:{purpose}".encode(), hashlib.sha256).digest()

    def dumps(self, payload: dict[str, Any], expires_at: float) -> str:
        data = _b64(json.dumps({**payload, "exp": int(expires_at)}, separators=(",", ":")).encode())
        return f"{data}.{self._sign(data)}"

    def loads(self, value: str | None, now: float) -> dict[str, Any] | None:
        """The payload, or None if the value is missing, forged, malformed or expired."""
        if not value or len(value) > _MAX_COOKIE or not value.isascii() or value.count(".") != 1:
            return None
        data, signature = value.split(".")
        if not hmac.compare_digest(signature.encode(), self._sign(data).encode()):
            return None
        try:
            payload = json.loads(_unb64(data))
        except ValueError:
            return None
        if not isinstance(payload, dict) or type(payload.get("exp")) is not int or payload["exp"] < now:
            return None
        return payload

    def _sign(self, data: str) -> str:
        return _b64(hmac.new(self._key, data.encode(), hashlib.sha256).digest())


def new_token() -> str:
    return secrets.token_urlsafe(24)


def token_hash(session_id: str) -> str:
    """What the database keeps of a session id: a leaked table names no usable session."""
    return hashlib.sha256(session_id.encode()).hexdigest()


def load_or_create_secret(path: Path) -> str:
    """The signing key kept in `path`; a missing file is created with a random key, mode 0600."""
    try:
        secret = path.read_text(encoding="ascii").strip()
    except FileNotFoundError:
        path.parent.mkdir(parents=True, exist_ok=True)
        secret = secrets.token_urlsafe(48)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:  # another instance on the same folder made it first: use theirs
            return load_or_create_secret(path)
        with os.fdopen(fd, "w", encoding="ascii") as file:
            file.write(secret + "\n")
        _LOGGER.warning("generated a new dashboard session key", extra={"path": str(path)})
        return secret
    if len(secret) < 32:
        raise ValueError(f"{path}: the dashboard session key must be at least 32 characters")
    if path.stat().st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        _LOGGER.warning("the dashboard session key file is readable by others; chmod 600 it",
                        extra={"path": str(path)})
    return secret


def hash_password(password: str, n: int = _SCRYPT["n"], r: int = _SCRYPT["r"], p: int = _SCRYPT["p"]) -> str:
    """scrypt$n$r$p$salt$hash, for [dashboard] admin_password_hash. CPU-heavy: never on the event loop."""
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=n, r=r, p=p, dklen=32)
    return f"scrypt${n}${r}${p}${_b64(salt)}${_b64(digest)}"


def verify_password(password: str, stored: str) -> bool:
    """Whether `password` matches the scrypt hash. CPU-heavy: never on the event loop."""
    try:
        _, n, r, p, salt, digest = stored.split("$")
        actual = hashlib.scrypt(password.encode("utf-8", "surrogatepass"), salt=_unb64(salt), n=int(n), r=int(r),
                                p=int(p), dklen=32)
        return hmac.compare_digest(actual, _unb64(digest))
    except ValueError:
        return False


def scrypt_parameters(stored: str) -> tuple[int, int, int]:
    """(n, r, p) of a stored hash, or the defaults: a dummy hash made with them costs the same to check."""
    try:
        _, n, r, p, *_ = stored.split("$")
        return int(n), int(r), int(p)
    except ValueError:
        return _SCRYPT["n"], _SCRYPT["r"], _SCRYPT["p"]


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
