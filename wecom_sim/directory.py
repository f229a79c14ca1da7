"""Who exists in the simulated corp: members, the app's group chats and group robots."""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterable
from dataclasses import dataclass, field

from .errors import ApiError

_CHATID_RE = re.compile(r"[0-9A-Za-z]{1,32}")


@dataclass
class User:
    """A corp member; userids are case-insensitive in WeCom."""

    userid: str
    name: str


@dataclass
class AppChat:
    """A group chat created by the app."""

    chatid: str
    name: str
    owner: str
    members: list[str]
    # False for a group made by hand in the WeCom client (or by another app): this app may not use it (86008).
    by_app: bool = True


@dataclass
class Robot:
    """A group robot reached by its webhook key."""

    key: str
    name: str
    members: list[str] = field(default_factory=list)


@dataclass
class CustomerGroup:
    """A customer group (客户群): a WeChat group of residents owned by a corp member, reached by 群发."""

    chat_id: str
    name: str
    owner: str


class Directory:
    """Members, app chats and robots, with WeCom's rules for creating chats."""

    def __init__(self) -> None:
        self.users: dict[str, User] = {}
        self.chats: dict[str, AppChat] = {}
        self.robots: dict[str, Robot] = {}
        self.customer_groups: dict[str, CustomerGroup] = {}
        # Grows with every member, chat or robot added, so viewers can tell.
        self.revision = 0

    def add_user(self, userid: str, name: str) -> None:
        """Add or rename a member."""
        if not userid:
            raise ValueError("userid must not be empty")
        self.users[userid.lower()] = User(userid, name)
        self.revision += 1

    def resolve(self, userid: str) -> User | None:
        """Find a member by userid, ignoring case."""
        return self.users.get(userid.lower())

    def all_userids(self) -> list[str]:
        """Return every member's userid."""
        return [user.userid for user in self.users.values()]

    def create_chat(self, name: object, userlist: object, owner: object = None, chatid: object = None,
                    by_app: bool = True) -> AppChat:
        """Validate and create an app chat as appchat/create does (by_app=False: a chat this app did not create)."""
        if not isinstance(name, str) or not name or len(name) > 50:
            raise ApiError(86004, "name must be 1..50 characters")
        if not isinstance(userlist, list) or not all(isinstance(u, str) for u in userlist):
            raise ApiError(40058, "userlist must be an array of userids")
        members = _unique(self._member(userid) for userid in userlist)
        if not 2 <= len(members) <= 2000:
            raise ApiError(86006, "userlist must hold 2..2000 members")
        if owner is None or owner == "":
            owner_id = members[0]
        elif isinstance(owner, str):
            owner_id = self._member(owner)
            if owner_id not in members:
                raise ApiError(86207)
        else:
            raise ApiError(40058, "owner must be a userid")
        if chatid is None or chatid == "":
            chatid = secrets.token_hex(16)
        elif not isinstance(chatid, str) or not _CHATID_RE.fullmatch(chatid):
            raise ApiError(86001, "chatid must be 1..32 characters from [0-9a-zA-Z]")
        if chatid in self.chats:
            raise ApiError(86215)
        chat = AppChat(chatid, name, owner_id, members, by_app)
        self.chats[chatid] = chat
        self.revision += 1
        return chat

    def chat(self, chatid: object) -> AppChat:
        """Return an existing chat or raise WeCom's chatid error."""
        if not isinstance(chatid, str) or not chatid:
            raise ApiError(86201)
        chat = self.chats.get(chatid)
        if chat is None:
            raise ApiError(86003)
        return chat

    def app_chat(self, chatid: object) -> AppChat:
        """A chat this app created; WeCom answers 86008 for one it did not create (appchat/get, send, update)."""
        chat = self.chat(chatid)
        if not chat.by_app:
            raise ApiError(86008)
        return chat

    def update_chat(self, chatid: object, name: object = None, owner: object = None, add: object = None,
                    remove: object = None) -> AppChat:
        """Change a chat's name, owner and members as appchat/update does."""
        chat = self.app_chat(chatid)
        for users in (add, remove):
            if users is not None and (not isinstance(users, list) or not all(isinstance(u, str) for u in users)):
                raise ApiError(40058, "add_user_list and del_user_list must be arrays of userids")
        if name is not None and (not isinstance(name, str) or not name or len(name) > 50):
            raise ApiError(86004, "name must be 1..50 characters")
        removed = {u.lower() for u in (remove or [])}
        members = _unique([m for m in chat.members if m.lower() not in removed]
                          + [self._member(u) for u in (add or [])])
        if not 2 <= len(members) <= 2000:
            raise ApiError(86006, "the chat would hold fewer than 2 or more than 2000 members")
        new_owner = chat.owner
        if owner not in (None, ""):
            if not isinstance(owner, str):
                raise ApiError(40058, "owner must be a userid")
            new_owner = self._member(owner)
        if new_owner not in members:
            raise ApiError(86207)
        chat.members, chat.owner = members, new_owner
        chat.name = name if isinstance(name, str) else chat.name
        self.revision += 1
        return chat

    def remove_robot(self, key: str) -> bool:
        """The robot is removed from its group: its key answers 93000 from now on."""
        removed = self.robots.pop(key, None) is not None
        self.revision += int(removed)
        return removed

    def add_robot(self, key: str, name: str, members: Iterable[str] = ()) -> None:
        """Add a group robot with the members of its group."""
        if not key:
            raise ValueError("robot key must not be empty")
        self.robots[key] = Robot(key, name, list(members))
        self.revision += 1

    def add_customer_group(self, chat_id: str, name: str, owner: str) -> None:
        """Add a customer group owned by member `owner`."""
        if not chat_id:
            raise ValueError("chat_id must not be empty")
        member = self.resolve(owner)
        if member is None:
            raise ValueError(f"owner {owner!r} is not a member")
        self.customer_groups[chat_id] = CustomerGroup(chat_id, name, member.userid)
        self.revision += 1

    def snapshot(self) -> dict:
        """Return users, chats and robots as JSON-ready data."""
        return {
            "users": [{"userid": u.userid, "name": u.name} for u in self.users.values()],
            "appchats": [
                {"chatid": c.chatid, "name": c.name, "owner": c.owner, "userlist": list(c.members), "by_app": c.by_app}
                for c in self.chats.values()
            ],
            "robots": [{"key": r.key, "name": r.name, "members": list(r.members)} for r in self.robots.values()],
            "customer_groups": [
                {"chat_id": g.chat_id, "name": g.name, "owner": g.owner} for g in self.customer_groups.values()
            ],
        }

    def _member(self, userid: str) -> str:
        user = self.resolve(userid)
        if user is None:
            raise ApiError(86007, f"invalid chat member {userid.lower()}")
        return user.userid


def _unique(items: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(items))
