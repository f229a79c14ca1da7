"""JSON endpoints under /_sim/ to inspect and steer the simulator (tests, demo, benchmarks)."""

from __future__ import annotations

import functools
import json
from typing import Any, NoReturn

from aiohttp import web

from .card_rules import CARD_TYPES
from .errors import ApiError
from .keys import SIMULATOR_KEY
from .simulator import Simulator

_CARD_EVENTS = ("template_card_event", "template_card_menu_event")

routes = web.RouteTableDef()
# Readable Chinese in curl output for the demo console.
_dumps = functools.partial(json.dumps, ensure_ascii=False)


def add_routes(app: web.Application) -> None:
    """Register the /_sim/ endpoints on `app`."""
    app.router.add_routes(routes)


@routes.get("/_sim/messages")
async def list_messages(request: web.Request) -> web.Response:
    """Recorded messages, filtered by api, user, chatid, robot and since=<seq>."""
    query = request.query
    since = query.get("since")
    if since is not None and not since.lstrip("-").isdigit():
        _bad_request("since must be an integer sequence number")
    messages = _sim(request).log.query(
        api=query.get("api"),
        user=query.get("user"),
        chatid=query.get("chatid"),
        robot=query.get("robot"),
        since=int(since) if since is not None else None,
    )
    return _json({"messages": messages})


@routes.get("/_sim/texts")
async def list_texts(request: web.Request) -> web.Response:
    """The 1:1 app chat's texts typed by members and the app's passive text replies; filters user= and since=."""
    since = request.query.get("since")
    if since is not None and not since.lstrip("-").isdigit():
        _bad_request("since must be an integer sequence number")
    texts = _sim(request).texts.query(user=request.query.get("user"), since=int(since) if since is not None else None)
    return _json({"texts": texts})


@routes.delete("/_sim/messages")
async def clear_messages(request: web.Request) -> web.Response:
    """Forget recorded messages and 1:1 texts; answers how many messages were dropped."""
    sim = _sim(request)
    count = len(sim.messages)
    sim.clear_messages()
    return _json({"cleared": count})


@routes.get("/_sim/stats")
async def stats(request: web.Request) -> web.Response:
    """Calls per API and errors per errcode."""
    return _json(_sim(request).stats.snapshot())


@routes.get("/_sim/faults")
async def list_faults(request: web.Request) -> web.Response:
    """Faults still waiting to hit."""
    return _json({"faults": _sim(request).faults})


@routes.post("/_sim/faults")
async def add_fault(request: web.Request) -> web.Response:
    """Inject a fault: {"api", "errcode" | "http_status", "times"}."""
    body = await _body(request)
    sim = _sim(request)
    try:
        sim.add_fault(
            str(body.get("api", "")),
            errcode=_int_or_none(body.get("errcode"), "errcode"),
            http_status=_int_or_none(body.get("http_status"), "http_status"),
            times=_int_or_none(body.get("times", 1), "times") or 0,
        )
    except ValueError as err:
        _bad_request(str(err))
    return _json({"faults": sim.faults})


@routes.delete("/_sim/faults")
async def clear_faults(request: web.Request) -> web.Response:
    """Drop every injected fault."""
    _sim(request).clear_faults()
    return _json({"faults": []})


@routes.post("/_sim/tokens/revoke")
async def revoke_tokens(request: web.Request) -> web.Response:
    """Invalidate all access tokens early."""
    _sim(request).revoke_tokens()
    return _json({"revoked": True})


@routes.get("/_sim/clock")
async def get_clock(request: web.Request) -> web.Response:
    """The simulator's current time."""
    return _json({"now": _sim(request).clock.now()})


@routes.post("/_sim/clock")
async def advance_clock(request: web.Request) -> web.Response:
    """Move the simulator clock forward: {"advance": seconds}."""
    body = await _body(request)
    seconds = body.get("advance")
    if not isinstance(seconds, int | float) or isinstance(seconds, bool) or seconds < 0:
        _bad_request("advance must be a non-negative number of seconds")
    sim = _sim(request)
    sim.clock.advance(seconds)
    return _json({"now": sim.clock.now()})


@routes.get("/_sim/app")
async def get_app_settings(request: web.Request) -> web.Response:
    """The app's admin-console settings the simulator enforces (客户联系 permission, trusted domain)."""
    return _json(_app_settings(_sim(request)))


@routes.post("/_sim/app")
async def set_app_settings(request: web.Request) -> web.Response:
    """Change them as an admin would: {"customer_contact": bool, "trusted_domain": "host[:port]" | null}."""
    body = await _body(request)
    unknown = body.keys() - {"customer_contact", "trusted_domain"}
    if unknown:
        _bad_request(f"unknown settings {sorted(unknown)}; expected customer_contact, trusted_domain")
    config = _sim(request).config
    if "customer_contact" in body:
        if not isinstance(body["customer_contact"], bool):
            _bad_request("customer_contact must be true or false")
        config.customer_contact = body["customer_contact"]
    if "trusted_domain" in body:
        domain = body["trusted_domain"]
        if domain is not None and (not isinstance(domain, str) or not domain or "/" in domain):
            _bad_request('trusted_domain must be "host" or "host:port", or null for the callback URL\'s host')
        config.trusted_domain = domain
    return _json(_app_settings(_sim(request)))


def _app_settings(sim: Simulator) -> dict[str, Any]:
    return {"customer_contact": sim.config.customer_contact, "trusted_domain": sim.config.trusted_domain,
            "oauth_domain": sim.config.oauth_domain()}


@routes.get("/_sim/directory")
async def directory(request: web.Request) -> web.Response:
    """Members, app chats (with members) and robots."""
    return _json(_sim(request).directory.snapshot())


@routes.post("/_sim/appchats")
async def add_foreign_chat(request: web.Request) -> web.Response:
    """A group someone made by hand in the WeCom client: {"chatid", "name", "userlist", "owner"?}.

    It exists, but this app did not create it, so the app's appchat calls on it answer 86008."""
    body = await _body(request)
    sim = _sim(request)
    try:
        chat = sim.directory.create_chat(body.get("name"), body.get("userlist"), body.get("owner"),
                                         body.get("chatid"), by_app=False)
    except ApiError as err:
        _bad_request(str(err))
    return _json({"chatid": chat.chatid})


@routes.delete("/_sim/robots/{key}")
async def remove_robot(request: web.Request) -> web.Response:
    """The group robot is removed from its group: its webhook key answers 93000 from now on."""
    if not _sim(request).directory.remove_robot(request.match_info["key"]):
        raise web.HTTPNotFound(text=_dumps({"error": "no such robot"}), content_type="application/json")
    return _json({"removed": True})


@routes.get("/_sim/groupmsg")
async def groupmsg_tasks(request: web.Request) -> web.Response:
    """客户群群发 tasks; filters sender= and pending=1 (not confirmed yet)."""
    sim = _sim(request)
    sender = request.query.get("sender")
    tasks = [
        t.as_dict() for t in sim.groupmsg.tasks.values()
        if (sender is None or t.sender == sender) and (request.query.get("pending") != "1" or t.confirmed_at is None)
    ]
    return _json({"tasks": tasks})


@routes.post("/_sim/groupmsg/confirm")
async def confirm_groupmsg(request: web.Request) -> web.Response:
    """The staff member taps send in WeCom: {"msgid"} for one task, {"sender"} for theirs, {} for all."""
    body = await _body(request)
    msgid, sender = body.get("msgid"), body.get("sender")
    if (msgid is not None and not isinstance(msgid, str)) or (sender is not None and not isinstance(sender, str)):
        _bad_request("msgid and sender must be strings")
    sim = _sim(request)
    if msgid is not None and msgid not in sim.groupmsg.tasks:
        _bad_request(f"no task {msgid}")
    return _json({"confirmed": sim.confirm_groupmsg(msgid=msgid, sender=sender)})


@routes.get("/_sim/cards")
async def cards(request: web.Request) -> web.Response:
    """Cards as each member currently sees them; filters user= and task_id=."""
    views = _sim(request).cards.views(user=request.query.get("user"), task_id=request.query.get("task_id"))
    return _json({"cards": views})


@routes.post("/_sim/callback")
async def send_callback(request: web.Request) -> web.Response:
    """Send a signed, encrypted text message or card event to the bot's callback URL."""
    body = await _body(request)
    sim = _sim(request)
    _require_callback_url(sim)
    kind = body.get("type")
    sender = _text(body, "from")
    if kind == "text":
        result = await sim.send_text(sender, _text(body, "content"))
    elif kind in _CARD_EVENTS:
        card_type = body.get("card_type")
        if card_type is None and sim.cards.task(_text(body, "task_id")) is None:
            _bad_request("card_type is required for a task the simulator did not send")
        if card_type is not None and card_type not in CARD_TYPES:
            _bad_request(f"card_type must be one of {sorted(CARD_TYPES)}")
        result = await sim.click_card(
            sender,
            _text(body, "task_id"),
            _text(body, "event_key"),
            card_type=card_type,
            selected_items=_selected_items(body.get("selected_items", [])),
            event=kind,
        )
    else:
        _bad_request(f"type must be 'text' or one of {_CARD_EVENTS}")
    return _json(result)


@routes.post("/_sim/verify-callback")
async def verify_callback(request: web.Request) -> web.Response:
    """Run WeCom's URL verification GET against the callback URL."""
    sim = _sim(request)
    _require_callback_url(sim)
    return _json(await sim.verify_callback())


def _json(data: Any) -> web.Response:
    return web.json_response(data, dumps=_dumps)


def _sim(request: web.Request) -> Simulator:
    return request.app[SIMULATOR_KEY]


async def _body(request: web.Request) -> dict[str, Any]:
    try:
        body = await request.json() if request.can_read_body else {}
    except json.JSONDecodeError:
        _bad_request("body must be JSON")
    if not isinstance(body, dict):
        _bad_request("body must be a JSON object")
    return body


def _text(body: dict[str, Any], key: str) -> str:
    value = body.get(key)
    if not isinstance(value, str) or not value:
        _bad_request(f"{key} must be a non-empty string")
    return value


def _int_or_none(value: object, name: str) -> int | None:
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool):
        _bad_request(f"{name} must be an integer")
    return value


def _selected_items(items: object) -> list[dict[str, Any]]:
    valid = isinstance(items, list) and all(
        isinstance(item, dict)
        and isinstance(item.get("question_key"), str)
        and isinstance(item.get("option_ids"), list)
        and all(isinstance(option, str) for option in item["option_ids"])
        for item in items
    )
    if not valid:
        _bad_request('selected_items must be [{"question_key": str, "option_ids": [str, ...]}, ...]')
    return items


def _require_callback_url(sim: Simulator) -> None:
    if not sim.config.callback_url:
        raise web.HTTPConflict(
            text=_dumps({"error": "callback_url is not configured"}), content_type="application/json"
        )


def _bad_request(message: str) -> NoReturn:
    raise web.HTTPBadRequest(text=_dumps({"error": message}), content_type="application/json")
