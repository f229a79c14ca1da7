"""Server-side HTML of the chat view (Jinja2, autoescaped); message content goes through markup.py."""

from __future__ import annotations

import hashlib
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote
from zoneinfo import ZoneInfo

import jinja2

from ..directory import User
from ..simulator import Simulator
from .markup import render_markdown, render_text, render_textcard_description, safe_url
from .model import MEDIA_LABELS, Conversation, preview

HERE = Path(__file__).resolve().parent
SHANGHAI = ZoneInfo("Asia/Shanghai")
# Script and styles come from /_sim/assets/ only: nothing inline runs, even if escaping ever failed.
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)
_AVATAR_COLOURS = 8


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(HERE / "templates"),
        autoescape=True,
        undefined=jinja2.ChainableUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(
        path=lambda value: quote(str(value), safe=""),
        clock=_clock,
        full_time=_full_time,
        markdown=lambda value: render_markdown(str(value or "")),
        text=lambda value: render_text(str(value or "")),
        textcard=lambda value: render_textcard_description(str(value or "")),
        url=safe_url,
        avatar=_avatar_class,
        initial=_initials,
        preview=preview,
        dicts=lambda items: [item for item in items if isinstance(item, dict)] if isinstance(items, list) else [],
    )
    env.globals["media_labels"] = MEDIA_LABELS
    return env


def render_index(sim: Simulator) -> str:
    """The corp's members and groups, each linking to the member's WeCom."""
    directory = sim.directory
    names = {user.userid.lower(): user.name for user in directory.users.values()}
    return _ENV.get_template("index.html").render(
        users=list(directory.users.values()),
        chats=list(directory.chats.values()),
        robots=list(directory.robots.values()),
        names=names,
        app_name=sim.config.app_name,
    )


def render_chat(sim: Simulator, user: User, convs: list[Conversation], selected: Conversation | None) -> str:
    """One member's WeCom: the conversation list and, if one is selected, its messages and composer."""
    return _ENV.get_template("chat.html").render(
        user=user,
        convs=convs,
        selected=selected,
        items=render_items(sim, user, selected) if selected else [],
        revision=sim.revision,
        can_type=selected is not None and selected.kind == "app",
    )


def render_conversation_list(user: User, convs: list[Conversation], selected: Conversation | None) -> str:
    """The conversation list alone, for live updates."""
    return _ENV.get_template("_conversations.html").render(user=user, convs=convs, selected=selected)


def render_items(sim: Simulator, user: User, conv: Conversation) -> list[dict[str, Any]]:
    """Each item's key, content hash and HTML; unchanged items keep their hash (and their form state)."""
    item_template = _ENV.get_template("_item.html")
    names = _names(sim)
    rendered = []
    for item in conv.items:
        inner = item_template.render(item=item, user=user, conv=conv, names=names)
        rendered.append({"key": item.key, "hash": hashlib.sha1(inner.encode()).hexdigest()[:16], "html": inner})
    return rendered


def render_error(title: str, detail: str) -> str:
    """A small page for an unknown member or conversation."""
    return _ENV.get_template("error.html").render(title=title, detail=detail)


def _names(sim: Simulator) -> dict[str, str]:
    return {user.userid.lower(): user.name for user in sim.directory.users.values()}


def _clock(at: float | None) -> str:
    if at is None:
        return ""
    return datetime.fromtimestamp(at, SHANGHAI).strftime("%m-%d %H:%M:%S")


def _full_time(at: float | None) -> str:
    if at is None:
        return ""
    return datetime.fromtimestamp(at, SHANGHAI).isoformat(timespec="seconds")


def _avatar_class(name: object) -> str:
    digest = hashlib.sha1(str(name).encode()).digest()
    return f"av{digest[0] % _AVATAR_COLOURS}"


def _initials(name: object) -> str:
    # Like WeCom without a photo: the last two characters of a Chinese name, else the first letter.
    text = str(name or "").strip() or "?"
    if any("\u4e00" <= char <= "\u9fff" for char in text):
        return text[-2:]
    return text[:1].upper()


_ENV = _environment()
