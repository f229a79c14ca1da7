"""Checks shared by the app APIs."""

from __future__ import annotations

import secrets
from collections.abc import Callable
from typing import TYPE_CHECKING

from ..errors import ApiError

if TYPE_CHECKING:
    from ..simulator import Simulator


def check_agent(sim: Simulator, body: dict) -> None:
    """Reject a body whose agentid is missing, malformed or another app's (301002)."""
    agentid = body.get("agentid")
    if agentid is None or agentid == "":
        raise ApiError(41011)
    try:
        agent = int(agentid)
    except (TypeError, ValueError) as err:
        raise ApiError(40056, "invalid agentid") from err
    if agent != sim.config.agent_id:
        raise ApiError(301002)


def new_msgid() -> str:
    """Return an opaque message id like WeCom's."""
    return secrets.token_urlsafe(32)


def deliver(quota_acquire: Callable[[str, float], bool], userids: list[str], now: float) -> tuple[list[str], list[str]]:
    """Split members into those the quota lets through and those silently dropped."""
    delivered: list[str] = []
    dropped: list[str] = []
    for userid in userids:
        (delivered if quota_acquire(userid.lower(), now) else dropped).append(userid)
    return delivered, dropped
