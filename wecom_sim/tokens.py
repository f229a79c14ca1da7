"""Access tokens: issued by gettoken, checked by every token API."""

from __future__ import annotations

import secrets

from .clock import SimClock
from .errors import ApiError


class TokenStore:
    """Opaque tokens with an expiry on the simulator clock; several may be valid at once."""

    def __init__(self, ttl: int, clock: SimClock) -> None:
        self._ttl = ttl
        self._clock = clock
        self._expiry: dict[str, float] = {}

    def issue(self) -> str:
        """Create a new token valid for the configured TTL."""
        now = self._clock.now()
        self._forget_stale(now)
        token = secrets.token_urlsafe(96)
        self._expiry[token] = now + self._ttl
        return token

    def check(self, token: str | None) -> None:
        """Raise the errcode WeCom gives for a missing, unknown or expired token."""
        if not token:
            raise ApiError(41001)
        expiry = self._expiry.get(token)
        if expiry is None:
            raise ApiError(40014)
        if self._clock.now() >= expiry:
            raise ApiError(42001)

    def revoke_all(self) -> None:
        """Invalidate every token early, as WeCom sometimes does."""
        self._expiry.clear()

    def _forget_stale(self, now: float) -> None:
        # Expired tokens are kept a while so they answer 42001 rather than 40014.
        if len(self._expiry) > 1000:
            horizon = now - 86400
            self._expiry = {tok: exp for tok, exp in self._expiry.items() if exp > horizon}
