"""externalcontact/add_msg_template and get_groupmsg_send_result: mass messages to customer groups."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from ..errors import ApiError
from .common import new_msgid

if TYPE_CHECKING:
    from ..simulator import Simulator

_MAX_CHATS = 2000
_TEXT_LIMIT = 4000
_PAGE_MAX = 1000


def add_msg_template(sim: Simulator, query: Mapping[str, str], body: dict) -> dict:
    """Create a task for the sender to confirm; nothing reaches a group until they do."""
    if body.get("chat_type", "single") != "group":
        raise ApiError(40058, "the simulator implements chat_type group only")
    sender = body.get("sender")
    if not isinstance(sender, str) or not sender:
        raise ApiError(40058, "sender is required for chat_type group")
    member = sim.directory.resolve(sender)
    if member is None:
        raise ApiError(40003, f"invalid userid {sender.lower()}")
    chats = body.get("chat_id_list")
    if not isinstance(chats, list) or not chats or not all(isinstance(c, str) and c for c in chats):
        raise ApiError(40058, "chat_id_list must be a non-empty array of chat ids")
    if len(chats) > _MAX_CHATS:
        raise ApiError(40058, f"chat_id_list holds more than {_MAX_CHATS} chats")
    text = body.get("text", {})
    content = text.get("content") if isinstance(text, dict) else None
    if not isinstance(content, str) or not content:
        if not body.get("attachments"):
            raise ApiError(44004)
        content = ""
    if len(content.encode()) > _TEXT_LIMIT:
        raise ApiError(45002)
    owned = sim.directory.customer_groups
    valid = [c for c in dict.fromkeys(chats) if c in owned and owned[c].owner == member.userid]
    failed = [c for c in dict.fromkeys(chats) if c not in valid]
    msgid = "msg" + new_msgid()[:24]
    now = sim.clock.now()
    sim.groupmsg.create(msgid, member.userid, valid, content, now)
    sim.log.append(at=now, api="externalcontact/add_msg_template", msgtype="text", to_users=[member.userid],
                   body=body, msgid=msgid)
    return {"fail_list": failed, "msgid": msgid}


def get_groupmsg_send_result(sim: Simulator, query: Mapping[str, str], body: dict) -> dict:
    """Per customer group of a task: 0 not sent yet, 1 sent, 3 over the group's monthly quota."""
    task = sim.groupmsg.tasks.get(body.get("msgid") or "")
    if task is None:
        raise ApiError(40058, "invalid msgid")
    limit = body.get("limit", 500)
    if not isinstance(limit, int) or not 1 <= limit <= _PAGE_MAX:
        raise ApiError(40058, f"limit must be 1..{_PAGE_MAX}")
    cursor = body.get("cursor") or "0"
    if not cursor.isdigit():
        raise ApiError(40058, "invalid cursor")
    userid = body.get("userid")
    rows = [] if userid and sim.directory.resolve(userid) is not sim.directory.resolve(task.sender) else [
        {"chat_id": chat_id, "userid": task.sender, "status": status, **({"send_time": int(at)} if at else {})}
        for chat_id, (status, at) in task.results.items()
    ]
    start = int(cursor)
    page = rows[start:start + limit]
    more = start + limit < len(rows)
    return {"send_list": page, "next_cursor": str(start + limit) if more else ""}
