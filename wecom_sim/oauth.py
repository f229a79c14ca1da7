"""WeCom's web OAuth for members: the authorize page issues a code, auth/getuserinfo redeems it once."""

from __future__ import annotations

import secrets

from .errors import ApiError

CODE_TTL = 300  # WeCom: a code is valid five minutes and can be used once


class OAuthCodes:
    def __init__(self) -> None:
        self._codes: dict[str, tuple[str, float]] = {}

    def issue(self, userid: str, now: float) -> str:
        code = secrets.token_urlsafe(24)
        self._codes[code] = (userid, now)
        return code

    def redeem(self, code: str | None, now: float) -> str:
        """The userid the code was issued for; 41008 without a code, 40029 for an unknown, used or stale one."""
        if not code:
            raise ApiError(41008)
        issued = self._codes.pop(code, None)
        if issued is None or now - issued[1] > CODE_TTL:
            raise ApiError(40029)
        return issued[0]
