"""appchat/create, appchat/get, appchat/update and appchat/send."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from ..content import APPCHAT_MSGTYPES, KNOWN_MSGTYPES, validate_body
from ..errors import ApiError
from .common import deliver

if TYPE_CHECKING:
    from ..simulator import Simulator


def create(sim: Simulator, query: Mapping[str, str], body: dict) -> dict:
    """Create a group chat owned by the app."""
    chat = sim.directory.create_chat(body.get("name"), body.get("userlist"), body.get("owner"), body.get("chatid"))
    return {"chatid": chat.chatid}


def get(sim: Simulator, query: Mapping[str, str], body: dict) -> dict:
    """Describe one of the app's group chats."""
    chat = sim.directory.app_chat(query.get("chatid"))
    return {
        "chat_info": {
            "chatid": chat.chatid,
            "name": chat.name,
            "owner": chat.owner,
            "userlist": list(chat.members),
            "chat_type": 0,
        }
    }


def update(sim: Simulator, query: Mapping[str, str], body: dict) -> dict:
    """Rename a chat, change its owner, add and remove members (only a chat this app created)."""
    sim.directory.update_chat(body.get("chatid"), body.get("name"), body.get("owner"), body.get("add_user_list"),
                              body.get("del_user_list"))
    return {}


def send(sim: Simulator, query: Mapping[str, str], body: dict) -> dict:
    """Post to a group chat; members over 200/min or 10,000/day silently miss it."""
    chat = sim.directory.app_chat(body.get("chatid"))
    msgtype = body.get("msgtype")
    if msgtype not in APPCHAT_MSGTYPES:
        raise ApiError(86220 if msgtype in KNOWN_MSGTYPES else 40008)
    truncated = validate_body(msgtype, body, "appchat")
    now = sim.clock.now()
    if msgtype in ("image", "voice", "video", "file"):
        sim.media.check(body[msgtype].get("media_id"), msgtype, now)
    delivered, dropped = deliver(sim.chat_quota.acquire, chat.members, now)
    sim.log.append(
        at=now,
        api="appchat/send",
        msgtype=msgtype,
        to_users=list(chat.members),
        chatid=chat.chatid,
        body=body,
        delivered_to=delivered,
        dropped_for=dropped,
        truncated=truncated,
    )
    return {}
