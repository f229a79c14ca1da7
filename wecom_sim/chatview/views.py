"""Routes of the chat view: pages, live updates, and the member's actions (typing, clicking cards)."""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping
from typing import Any, NoReturn
from urllib.parse import quote

from aiohttp import web
from multidict import MultiDictProxy

from ..card_rules import INTERACTIVE_TYPES
from ..directory import User
from ..keys import SIMULATOR_KEY
from ..simulator import Simulator
from .model import APP_CONVERSATION, Conversation, conversations
from .render import CSP, HERE, render_chat, render_conversation_list, render_error, render_index, render_items

_CARD_EVENTS = ("template_card_event", "template_card_menu_event")
_ASSETS = {"chat.css": "text/css", "chat.js": "text/javascript"}
_dumps = functools.partial(json.dumps, ensure_ascii=False)

routes = web.RouteTableDef()


def add_routes(app: web.Application) -> None:
    """Register the chat view's routes on the simulator app."""
    app.router.add_routes(routes)


@routes.get("/_sim/assets/{name}")
async def asset(request: web.Request) -> web.Response:
    """The view's stylesheet and script (served locally: the page fetches nothing from the internet)."""
    name = request.match_info["name"]
    if name not in _ASSETS:
        raise web.HTTPNotFound()
    body = (HERE / "static" / name).read_bytes()
    return web.Response(body=body, content_type=_ASSETS[name], charset="utf-8", headers={"Cache-Control": "no-cache"})


@routes.get("/_sim/chat")
async def index(request: web.Request) -> web.Response:
    """The corp's members and groups as links into each member's WeCom."""
    return _page(render_index(_sim(request)))


@routes.get("/_sim/chat/{userid}")
async def chat(request: web.Request) -> web.Response:
    """A member's WeCom: their conversations and the selected one (?c=app|<chatid>|robot-<key>)."""
    sim = _sim(request)
    user = _user(sim, request)
    convs = conversations(sim, user)
    selected = _selected(convs, request.query.get("c"), user)
    return _page(render_chat(sim, user, convs, selected))


@routes.get("/_sim/chat/{userid}/updates")
async def updates(request: web.Request) -> web.Response:
    """What changed since revision `since`: the conversation list and the selected conversation's items."""
    sim = _sim(request)
    user = _user(sim, request, html=False)
    since = request.query.get("since", "")
    revision = sim.revision
    if since.isdigit() and int(since) == revision:
        return _json({"revision": revision, "changed": False})
    convs = conversations(sim, user)
    selected = _selected(convs, request.query.get("c"), user, html=False)
    return _json(
        {
            "revision": revision,
            "changed": True,
            "conversations_html": render_conversation_list(user, convs, selected),
            "items": render_items(sim, user, selected) if selected else [],
        }
    )


@routes.post("/_sim/chat/{userid}/text")
async def send_text(request: web.Request) -> web.Response:
    """The member types a text in their chat with the app: a real text message callback to the bot."""
    sim = _sim(request)
    user = _user(sim, request, html=False)
    form = await request.post()
    content = form.get("content")
    if not isinstance(content, str) or not content.strip():
        _fail(request, 400, "消息内容不能为空")
    _require_callback_url(request, sim)
    result = await sim.send_text(user.userid, content)
    return _answer(request, user, APP_CONVERSATION, result)


@routes.post("/_sim/chat/{userid}/card")
async def click_card(request: web.Request) -> web.Response:
    """The member clicks a card button, submits a card or picks a ⋯ menu entry: a template_card_event."""
    sim = _sim(request)
    user = _user(sim, request, html=False)
    form = await request.post()
    task_id = _field(request, form, "task_id")
    event_key = _field(request, form, "event_key")
    event = form.get("event") or "template_card_event"
    if event not in _CARD_EVENTS:
        _fail(request, 400, f"event 只能是 {' / '.join(_CARD_EVENTS)}")
    view = sim.cards.view(task_id, user.userid)
    task = sim.cards.task(task_id)
    if view is None or task is None:
        _fail(request, 404, "该成员没有收到这张卡片")
    card = view.card
    card_type = card.get("card_type") or task.card_type
    if event == "template_card_menu_event":
        keys = _menu_keys(card)
        selected: list[dict[str, Any]] = []
    else:
        if card_type not in INTERACTIVE_TYPES:
            _fail(request, 409, "这张卡片没有可点击的按钮")
        if card.get("replace_text"):
            _fail(request, 409, f"卡片已变为「{card['replace_text']}」，不能再点击")
        keys = _button_keys(card, card_type)
        selected = selected_items(card, card_type, form, view.selections)
    if event_key not in keys:
        _fail(request, 400, f"卡片上没有 key 为 {event_key!r} 的按钮")
    _require_callback_url(request, sim)
    result = await sim.click_card(
        user.userid, task_id, event_key, card_type=card_type, selected_items=selected, event=event
    )
    return _answer(request, user, str(form.get("c") or APP_CONVERSATION), result)


def selected_items(
    card: Mapping[str, Any],
    card_type: str,
    form: Mapping[str, Any],
    remembered: Mapping[str, list[str]] | None = None,
) -> list[dict[str, Any]]:
    """SelectedItems as the card's controls stand: what the member picks now, else what they picked
    before (`remembered`), else the card's own selected_id / is_checked (a `disable`d control takes no pick)."""
    remembered = remembered or {}
    if card_type == "button_interaction":
        selection = card.get("button_selection")
        return _select_items([selection] if isinstance(selection, dict) else [], form, remembered)
    if card_type == "multiple_interaction":
        return _select_items([s for s in card.get("select_list") or [] if isinstance(s, dict)], form, remembered)
    if card_type == "vote_interaction":
        box = card.get("checkbox")
        if not isinstance(box, dict):
            return []
        options = _option_ids(box)
        if box.get("disable"):
            key = str(box.get("question_key"))
            chosen = remembered.get(key) or [
                str(o.get("id")) for o in box.get("option_list") or [] if isinstance(o, dict) and o.get("is_checked")
            ]
        else:
            chosen = [value for value in _getall(form, f"q.{box.get('question_key')}") if value in options]
        if box.get("mode") != 1:
            chosen = chosen[:1]
        return [{"question_key": str(box.get("question_key")), "option_ids": chosen}] if chosen else []
    return []


def _select_items(
    selects: list[dict[str, Any]], form: Mapping[str, Any], remembered: Mapping[str, list[str]]
) -> list[dict[str, Any]]:
    items = []
    for select in selects:
        key = str(select.get("question_key"))
        options = _option_ids(select)
        chosen = None if select.get("disable") else form.get(f"q.{key}")
        if chosen not in options:
            chosen = (remembered.get(key) or [select.get("selected_id")])[0]
        if chosen in options:
            items.append({"question_key": key, "option_ids": [chosen]})
    return items


def _option_ids(question: Mapping[str, Any]) -> list[str]:
    return [str(o.get("id")) for o in question.get("option_list") or [] if isinstance(o, dict)]


def _button_keys(card: Mapping[str, Any], card_type: str) -> set[str]:
    if card_type == "button_interaction":
        return {
            str(b.get("key"))
            for b in card.get("button_list") or []
            if isinstance(b, dict) and b.get("type", 0) in (0, "0", None) and b.get("key")
        }
    submit = card.get("submit_button")
    return {str(submit["key"])} if isinstance(submit, dict) and submit.get("key") else set()


def _menu_keys(card: Mapping[str, Any]) -> set[str]:
    menu = card.get("action_menu")
    entries = menu.get("action_list") if isinstance(menu, dict) else None
    return {str(e.get("key")) for e in entries or [] if isinstance(e, dict) and e.get("key")}


def _getall(form: Mapping[str, Any], key: str) -> list[str]:
    if isinstance(form, MultiDictProxy):
        return [value for value in form.getall(key, []) if isinstance(value, str)]
    value = form.get(key)
    return [value] if isinstance(value, str) else []


def _answer(request: web.Request, user: User, conv: str, result: dict[str, Any]) -> web.Response:
    """JSON for the page's script; a redirect back to the conversation for a plain form post."""
    status = result.get("status")
    notice = None
    if status != 200:
        shown = f"HTTP {status}" if status is not None else "无法连接或超时"
        notice = f"应用的回调没有成功（{shown}，共尝试 {result.get('attempts')} 次）"
    elif result.get("reply_error"):
        notice = "应用的被动回复无法解密，已忽略"
    if _wants_json(request):
        return _json(
            {
                "ok": status == 200,
                "status": status,
                "attempts": result.get("attempts"),
                "card_updated": result.get("card_updated", False),
                "replied": bool(result.get("reply")),
                "notice": notice,
            }
        )
    raise web.HTTPSeeOther(f"/_sim/chat/{quote(user.userid, safe='')}?c={quote(conv, safe='')}")


def _selected(convs: list[Conversation], key: str | None, user: User, *, html: bool = True) -> Conversation | None:
    if not key:
        return None
    for conv in convs:
        if conv.key == key:
            return conv
    detail = f"{user.name}（{user.userid}）没有会话 {key!r}"
    if html:
        raise web.HTTPNotFound(text=render_error("会话不存在", detail), content_type="text/html", headers=_headers())
    raise web.HTTPNotFound(text=_dumps({"error": detail}), content_type="application/json")


def _user(sim: Simulator, request: web.Request, *, html: bool = True) -> User:
    userid = request.match_info["userid"]
    user = sim.directory.resolve(userid)
    if user is not None:
        return user
    detail = f"通讯录里没有成员 {userid!r}"
    if html:
        raise web.HTTPNotFound(text=render_error("成员不存在", detail), content_type="text/html", headers=_headers())
    raise web.HTTPNotFound(text=_dumps({"error": detail}), content_type="application/json")


def _field(request: web.Request, form: Mapping[str, Any], key: str) -> str:
    value = form.get(key)
    if not isinstance(value, str) or not value:
        _fail(request, 400, f"缺少 {key}")
    return value


def _require_callback_url(request: web.Request, sim: Simulator) -> None:
    if not sim.config.callback_url:
        _fail(request, 409, "模拟器没有配置应用的回调地址（callback_url）")


_ERRORS: dict[int, type[web.HTTPError]] = {400: web.HTTPBadRequest, 404: web.HTTPNotFound, 409: web.HTTPConflict}


def _fail(request: web.Request, status: int, message: str) -> NoReturn:
    error = _ERRORS[status]
    if _wants_json(request):
        raise error(text=_dumps({"error": message}), content_type="application/json")
    raise error(text=render_error("操作没有完成", message), content_type="text/html", headers=_headers())


def _wants_json(request: web.Request) -> bool:
    return "application/json" in request.headers.get("Accept", "")


def _page(html: str) -> web.Response:
    return web.Response(text=html, content_type="text/html", headers=_headers())


def _headers() -> dict[str, str]:
    return {"Content-Security-Policy": CSP, "Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"}


def _json(data: Any) -> web.Response:
    return web.json_response(data, dumps=_dumps, headers={"Cache-Control": "no-store"})


def _sim(request: web.Request) -> Simulator:
    return request.app[SIMULATOR_KEY]
