"""agent/get: the app's details, above all its visible range (可见范围)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from ..errors import ApiError

if TYPE_CHECKING:
    from ..simulator import Simulator

_ROOT_DEPARTMENT = 1


def get(sim: Simulator, query: Mapping[str, str], body: dict) -> dict:
    """The simulated app sees the whole corp (the root department), as app group chats require.

    A token may only read its own app (developer.work.weixin.qq.com/document/path/90227, 权限说明).
    """
    agentid = query.get("agentid", "")
    if not agentid:
        raise ApiError(41011)
    if not agentid.isdigit():
        raise ApiError(40056)
    if int(agentid) != sim.config.agent_id:
        raise ApiError(301002)
    return {
        "agentid": sim.config.agent_id,
        "name": sim.config.app_name,
        "description": "",
        "allow_userinfos": {"user": []},
        "allow_partys": {"partyid": [_ROOT_DEPARTMENT]},
        "allow_tags": {"tagid": []},
        "close": 0,
        "redirect_domain": "",
        "report_location_flag": 0,
        "isreportenter": 0,
        "home_url": "",
    }
