"""gettoken: the only API called with the corp secret instead of a token."""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from typing import TYPE_CHECKING

from ..errors import ApiError

if TYPE_CHECKING:
    from ..simulator import Simulator


def gettoken(sim: Simulator, query: Mapping[str, str], body: dict) -> dict:
    """Issue a fresh access token for a correct corpid and secret."""
    corpid = query.get("corpid")
    secret = query.get("corpsecret")
    if not corpid:
        raise ApiError(41002)
    if not secret:
        raise ApiError(41004)
    if corpid != sim.config.corp_id:
        raise ApiError(40013)
    if not secrets.compare_digest(secret.encode(), sim.config.corp_secret.encode()):
        raise ApiError(40001)
    return {"access_token": sim.tokens.issue(), "expires_in": sim.config.token_ttl}
