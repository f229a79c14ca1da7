"""What one member sees in WeCom: their conversations and the items in each, cards as currently shown."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from ..card_rules import INTERACTIVE_TYPES
from ..content import TEXT_LIMIT, truncate_utf8
from ..directory import User
from ..simulator import Simulator
from .markup import plain_markdown, plain_text

APP_CONVERSATION = "app"
ROBOT_PREFIX = "robot-"
_PREVIEW_CHARS = 40

Kind = Literal["app", "appchat", "robot"]


@dataclass
class Item:
    """One bubble: a delivered message, a text the member typed, or a passive text reply."""

    key: str
    order: tuple[int, int, int]
    at: float
    msgtype: str
    sender: str
    mine: bool
    body: dict[str, Any]
    card: dict[str, Any] | None = None
    task_id: str | None = None
    # The card still takes clicks (buttons, selects, submit) / has a ⋯ menu that calls back.
    interactive: bool = False
    menu: bool = False
    state: str | None = None
    # The member's own last choices on the card, which it shows instead of its defaults.
    selections: dict[str, list[str]] = field(default_factory=dict)


@dataclass
class Conversation:
    """An app chat, a group with a robot, or the member's 1:1 chat with the app."""

    key: str
    kind: Kind
    name: str
    members: list[str]
    items: list[Item] = field(default_factory=list)

    @property
    def last(self) -> Item | None:
        return self.items[-1] if self.items else None


def conversations(sim: Simulator, user: User) -> list[Conversation]:
    """Every conversation of `user`, most recently active first; the app chat is always there."""
    me = user.userid.lower()
    app_name = sim.config.app_name
    convs: dict[str, Conversation] = {
        APP_CONVERSATION: Conversation(APP_CONVERSATION, "app", app_name, [user.userid]),
    }
    for chat in sim.directory.chats.values():
        if any(member.lower() == me for member in chat.members):
            convs[chat.chatid] = Conversation(chat.chatid, "appchat", chat.name, list(chat.members))
    for robot in sim.directory.robots.values():
        if any(member.lower() == me for member in robot.members):
            key = ROBOT_PREFIX + robot.key
            convs[key] = Conversation(key, "robot", robot.name, list(robot.members))
    for record in sim.log.records:
        if not any(userid.lower() == me for userid in record["delivered_to"]):
            continue
        api = record["api"]
        if api == "message/send":
            convs[APP_CONVERSATION].items.append(_app_item(sim, record, me, app_name))
        elif api == "appchat/send" and record["chatid"] in convs:
            convs[record["chatid"]].items.append(_message_item(record, app_name))
        elif api == "webhook/send" and ROBOT_PREFIX + record["robot_key"] in convs:
            conv = convs[ROBOT_PREFIX + record["robot_key"]]
            conv.items.append(_message_item(record, conv.name))
    app_items = convs[APP_CONVERSATION].items
    for text in sim.texts.query(user=me):
        mine = text["api"] == "callback/text"
        app_items.append(
            Item(
                key=f"t{text['seq']}",
                order=(text["after_message_seq"], 1, text["seq"]),
                at=text["at"],
                msgtype="text",
                sender=user.name if mine else app_name,
                mine=mine,
                body={"msgtype": "text", "text": {"content": text["content"]}},
                state=text["state"],
            )
        )
    app_items.sort(key=lambda item: item.order)
    listed = list(convs.values())
    # Most recent activity first, like WeCom; conversations without messages keep directory order at the end.
    listed.sort(key=lambda conv: -conv.last.order[0] - 0.5 * conv.last.order[1] if conv.last else 1)
    return listed


def preview(item: Item) -> str:
    """One-line summary of an item for the conversation list."""
    body = item.body
    msgtype = item.msgtype
    if msgtype == "text":
        text = plain_text(str(_part(body, "text").get("content", "")))
    elif msgtype in ("markdown", "markdown_v2"):
        text = plain_markdown(str(_part(body, msgtype).get("content", "")))
    elif msgtype == "template_card":
        card = item.card or {}
        title = _part(card, "main_title").get("title") or card.get("sub_title_text") or ""
        text = f"[卡片] {title}"
    elif msgtype == "textcard":
        text = f"[卡片] {_part(body, 'textcard').get('title', '')}"
    elif msgtype in ("news", "mpnews"):
        articles = _part(body, msgtype).get("articles") or [{}]
        first = articles[0] if isinstance(articles[0], dict) else {}
        text = f"[图文] {first.get('title', '')}"
    else:
        text = MEDIA_LABELS.get(msgtype, f"[{msgtype}]")
    text = " ".join(text.split())
    return text if len(text) <= _PREVIEW_CHARS else text[: _PREVIEW_CHARS - 1] + "…"


MEDIA_LABELS = {"image": "[图片]", "voice": "[语音]", "video": "[视频]", "file": "[文件]"}


def _message_item(record: dict[str, Any], sender: str) -> Item:
    body = record["body"]
    msgtype = record["msgtype"]
    if record["truncated"] and isinstance(body.get(msgtype), dict):
        # What members get of an over-long text or markdown: its first 2048 bytes.
        part = body[msgtype]
        body = {**body, msgtype: {**part, "content": truncate_utf8(str(part.get("content", "")), TEXT_LIMIT)}}
    return Item(
        key=f"m{record['seq']}",
        order=(record["seq"], 0, 0),
        at=record["at"],
        msgtype=msgtype,
        sender=sender,
        mine=False,
        body=body,
        card=_part(body, "template_card") if msgtype == "template_card" else None,
    )


def _app_item(sim: Simulator, record: dict[str, Any], me: str, app_name: str) -> Item:
    item = _message_item(record, app_name)
    task_id = record["task_id"]
    view = sim.cards.view(task_id, me) if task_id else None
    if view is not None:
        # The card as this member sees it now, after any update for them.
        item.card = view.card
        item.task_id = task_id
        item.selections = view.selections
        card_type = view.card.get("card_type") or sim.cards.task(task_id).card_type
        item.interactive = card_type in INTERACTIVE_TYPES
        item.menu = isinstance(view.card.get("action_menu"), dict)
    return item


def _part(parent: dict[str, Any], key: str) -> dict[str, Any]:
    value = parent.get(key)
    return value if isinstance(value, dict) else {}
