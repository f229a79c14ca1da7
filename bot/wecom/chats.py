"""App group chats (应用群聊) as the directory describes them: create them through the app, keep members in line.

WeCom lets an app send only to group chats it created itself (appchat/create; any other chat answers
86008), so a station's group is created by `bot.py wecom create-chat`, never by hand in the client.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import aiohttp

from bot.config import WeComSettings
from bot.wecom.client import WeComClient
from bot.wecom.errors import WeComError
from domain.directory import ChatGroup, Directory

_CHATID = re.compile(r"[0-9A-Za-z]{1,32}")  # what appchat/create accepts as a chosen chatid
_MIN_MEMBERS = 2  # WeCom refuses a group chat of fewer (86006)
_CHAT_MISSING = {86001, 86003}  # invalid / unknown chatid


class ChatSetupError(ValueError):
    """The directory cannot describe this chat (unknown code, a robot group, too few people); Chinese message."""


@dataclass(frozen=True)
class ChatPlan:
    """A chat as the directory says it should be."""

    group: ChatGroup
    owner: str
    members: tuple[str, ...]

    @property
    def label(self) -> str:
        return f"「{self.group.name}」({self.group.code})"


def chat_plan(directory: Directory, code: str) -> ChatPlan:
    """The app chat of a station (by station code) or of a group (by group code).

    Members: the group's `members` in the directory, else the station's people. Owner: the station's
    leader, else its duty officer, else the first member.
    """
    station = directory.stations.get(code)
    group = directory.group(station.group_code if station else code)
    if group is None:
        raise ChatSetupError(f"通讯录中没有派出所或群 {code}，或该派出所未配置 group")
    if group.kind != "appchat":
        raise ChatSetupError(f"群 {group.code} 是群机器人（webhook），不是应用群聊，无需创建")
    if station is None:
        station = next((s for s in directory.stations.values() if s.group_code == group.code), None)
    members = group.members or tuple(p.userid for p in directory.people.values()
                                     if station is not None and p.station_code == station.code)
    members = tuple(dict.fromkeys(members))
    if len(members) < _MIN_MEMBERS:
        raise ChatSetupError(f"群 {group.code} 至少需要 2 名成员（企业微信的要求），请在通讯录中补充 members")
    candidates = (station.leader, station.duty_officer) if station else ()
    owner = next((u for u in candidates if u and u in members), members[0])
    return ChatPlan(group, owner, members)


def app_chat_plans(directory: Directory) -> list[ChatPlan]:
    """Every app chat the directory names, in file order."""
    return [chat_plan(directory, g.code) for g in directory.groups.values() if g.kind == "appchat"]


async def create_chat(client: WeComClient, plan: ChatPlan) -> str:
    """Create the chat through the app; returns its chatid (the directory's own, when it is one WeCom accepts)."""
    wanted = plan.group.address if _CHATID.fullmatch(plan.group.address) else ""
    return await client.create_appchat(plan.group.name, plan.owner, list(plan.members), wanted)


@dataclass(frozen=True)
class MemberDiff:
    missing: tuple[str, ...]  # in the directory, not in the chat
    extra: tuple[str, ...]  # in the chat, not in the directory

    def __bool__(self) -> bool:
        return bool(self.missing or self.extra)


def member_diff(plan: ChatPlan, chat_info: dict) -> MemberDiff:
    """How the chat's members differ from the directory (userids compare case-insensitively, as WeCom's do)."""
    present = {str(u).lower(): str(u) for u in chat_info.get("userlist") or ()}
    wanted = {u.lower(): u for u in plan.members}
    return MemberDiff(tuple(u for k, u in wanted.items() if k not in present),
                      tuple(u for k, u in present.items() if k not in wanted))


async def sync_chat(client: WeComClient, plan: ChatPlan) -> MemberDiff:
    """Bring the chat's members in line with the directory (appchat/update); returns what it changed."""
    diff = member_diff(plan, await client.get_appchat(plan.group.address))
    if diff:
        await client.update_appchat(plan.group.address, list(diff.missing), list(diff.extra))
    return diff



async def create_missing_chats(client: WeComClient, directory: Directory) -> list[tuple[ChatPlan, str]]:
    """Create every app chat of the directory that does not exist yet (first set-up; the demo; tests).

    A chat that exists is left alone (`sync_chat` fixes its members); one that exists but was not created
    by this app (86008) raises: its chatid is taken, so the directory must name a new one.
    """
    created = []
    for plan in app_chat_plans(directory):
        try:
            await client.get_appchat(plan.group.address)
            continue
        except WeComError as err:
            if err.errcode not in _CHAT_MISSING:
                raise
        created.append((plan, await create_chat(client, plan)))
    return created


async def set_up_chats(settings: WeComSettings, directory: Directory) -> list[tuple[ChatPlan, str]]:
    """`create_missing_chats` as an operator runs it: its own session and token (the demo; test fixtures)."""
    async with aiohttp.ClientSession() as session:
        return await create_missing_chats(WeComClient(session, settings), directory)
