"""客户联系 (externalcontact/*): customer groups, and mass messages to customers and customer groups.

Every call here needs the 客户联系 permission (SimulatorConfig.customer_contact): Simulator.call answers
48002 before these handlers run, as WeCom does for an app not on 客户联系 → "可调用应用".
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from ..errors import ApiError
from .common import new_msgid

if TYPE_CHECKING:
    from ..simulator import Simulator

# 创建企业群发 (https://developer.work.weixin.qq.com/document/path/92135).
_MAX_CHATS = 2000
_MAX_CUSTOMERS = 10_000
_TEXT_LIMIT = 4000
# 获取群发记录列表 (…/path/93338), get_groupmsg_send_result: "最大值1000，默认值500，超过最大值时取默认值".
_RESULT_PAGE_MAX = 1000
_RESULT_PAGE_DEFAULT = 500
# 获取客户群列表 (…/path/92120): limit "取值范围 1 ~ 1000", at most 100 owners, 81017 without owner_filter
# when the app sees more than 1000 members.
_GROUPCHAT_PAGE_MAX = 1000
_MAX_OWNERS = 100
_UNFILTERED_MEMBERS_MAX = 1000


def add_msg_template(sim: Simulator, query: Mapping[str, str], body: dict) -> dict:
    """Create a task for the sender to confirm; nothing reaches a customer or group until they do."""
    chat_type = body.get("chat_type", "single")
    if chat_type not in ("single", "group"):
        raise ApiError(40058, "chat_type must be single or group")
    content = _content(body)
    if chat_type == "single":
        return _single(sim, body, content)
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
    owned = sim.directory.customer_groups
    valid = [c for c in dict.fromkeys(chats) if c in owned and owned[c].owner == member.userid]
    failed = [c for c in dict.fromkeys(chats) if c not in valid]
    return _create(sim, member.userid, valid, content, body, failed)


def get_groupmsg_send_result(sim: Simulator, query: Mapping[str, str], body: dict) -> dict:
    """Per customer group of a task: 0 not sent yet, 1 sent, 3 over the group's monthly quota."""
    task = sim.groupmsg.tasks.get(body.get("msgid") or "")
    if task is None:
        raise ApiError(40058, "invalid msgid")
    limit = _page_size(body.get("limit", _RESULT_PAGE_DEFAULT))
    if not 1 <= limit <= _RESULT_PAGE_MAX:
        limit = _RESULT_PAGE_DEFAULT  # WeCom takes the default for a limit out of range, no error
    start = _cursor(body)
    userid = body.get("userid")
    rows = [] if userid and sim.directory.resolve(userid) is not sim.directory.resolve(task.sender) else [
        {"chat_id": chat_id, "userid": task.sender, "status": status, **({"send_time": int(at)} if at else {})}
        for chat_id, (status, at) in task.results.items()
    ]
    page = rows[start:start + limit]
    more = start + limit < len(rows)
    return {"send_list": page, "next_cursor": str(start + limit) if more else ""}


def groupchat_list(sim: Simulator, query: Mapping[str, str], body: dict) -> dict:
    """The customer groups whose owners the app sees, optionally of some owners; every one is status 0."""
    limit = _page_size(body.get("limit"))
    if not 1 <= limit <= _GROUPCHAT_PAGE_MAX:
        raise ApiError(40058, f"limit must be 1..{_GROUPCHAT_PAGE_MAX}")
    status = body.get("status_filter", 0)
    if status not in (0, 1, 2, 3):
        raise ApiError(40058, "status_filter must be 0..3")
    owners = _owner_filter(sim, body.get("owner_filter"))
    if owners is None and len(sim.directory.users) > _UNFILTERED_MEMBERS_MAX:
        raise ApiError(81017)
    groups = [] if status else [  # no owner has left in the simulator: only status 0 (跟进人正常) exists
        {"chat_id": g.chat_id, "status": 0}
        for g in sim.directory.customer_groups.values() if owners is None or g.owner in owners
    ]
    start = _cursor(body)
    more = start + limit < len(groups)
    return {"group_chat_list": groups[start:start + limit], "next_cursor": str(start + limit) if more else ""}


def _single(sim: Simulator, body: dict, content: str) -> dict:
    """chat_type single (the default): customers by external_userid. The simulated corp has no customers
    (客户), so every external_userid is reported in fail_list, as WeCom reports unknown ones."""
    customers = body.get("external_userid", [])
    if not isinstance(customers, list) or not all(isinstance(c, str) and c for c in customers):
        raise ApiError(40058, "external_userid must be an array of external userids")
    if len(customers) > _MAX_CUSTOMERS:
        raise ApiError(40058, f"external_userid holds more than {_MAX_CUSTOMERS} customers")
    sender = body.get("sender")
    member = None
    if sender is not None:
        member = sim.directory.resolve(sender) if isinstance(sender, str) and sender else None
        if member is None:
            raise ApiError(40003, f"invalid userid {str(sender).lower()}")
    return _create(sim, member.userid if member else "", [], content, body, list(dict.fromkeys(customers)))


def _create(sim: Simulator, sender: str, chat_ids: list[str], content: str, body: dict, failed: list[str]) -> dict:
    msgid = "msg" + new_msgid()[:24]
    now = sim.clock.now()
    sim.groupmsg.create(msgid, sender, chat_ids, content, now)
    sim.log.append(at=now, api="externalcontact/add_msg_template", msgtype="text",
                   to_users=[sender] if sender else [], body=body, msgid=msgid)
    return {"fail_list": failed, "msgid": msgid}


def _content(body: dict) -> str:
    text = body.get("text", {})
    content = text.get("content") if isinstance(text, dict) else None
    if not isinstance(content, str) or not content:
        if not body.get("attachments"):
            raise ApiError(44004)
        return ""
    if len(content.encode()) > _TEXT_LIMIT:
        raise ApiError(45002)
    return content


def _owner_filter(sim: Simulator, owner_filter: object) -> set[str] | None:
    if owner_filter is None:
        return None
    userids = owner_filter.get("userid_list") if isinstance(owner_filter, dict) else None
    if not isinstance(userids, list) or not all(isinstance(u, str) for u in userids) or len(userids) > _MAX_OWNERS:
        raise ApiError(40058, f"owner_filter.userid_list must be an array of at most {_MAX_OWNERS} userids")
    members = (sim.directory.resolve(u) for u in userids)
    return {m.userid for m in members if m is not None}


def _page_size(limit: object) -> int:
    if not isinstance(limit, int) or isinstance(limit, bool):
        raise ApiError(40058, "limit must be an integer")
    return limit


def _cursor(body: dict) -> int:
    cursor = body.get("cursor") or "0"
    if not isinstance(cursor, str) or not cursor.isdigit():
        raise ApiError(40058, "invalid cursor")
    return int(cursor)
