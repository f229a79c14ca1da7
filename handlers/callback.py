"""WeCom's callback URL: GET for URL verification, POST for messages and card events.

Refused callbacks get 403 (signature, corp id, stale timestamp) or 400 (undecryptable or malformed, not
UTF-8) and are logged as rate-limited warnings (anyone can send them); WeCom reads any 200 as received,
so 200 is only answered once the callback is stored. The body cap is handlers.limits' (64 KiB).
"""

from __future__ import annotations

import logging
import secrets
import time

from aiohttp import web

from bot.logs import client_warning
from bot.services import SERVICES
from bot.wecom.callbacks import CallbackRejected, text_reply, update_button_reply
from handlers.responses import read_body

_LOGGER = logging.getLogger(__name__)

routes = web.RouteTableDef()


@routes.get("/wecom/callback")
async def verify(request: web.Request) -> web.Response:
    crypto = request.app[SERVICES].callback_crypto
    q = request.query
    try:
        plain = crypto.verify_url(q.get("msg_signature", ""), q.get("timestamp", ""), q.get("nonce", ""),
                                  q.get("echostr", ""))
    except CallbackRejected as err:
        client_warning(_LOGGER, f"callback_{err.status}", "callback URL verification refused",
                       reason=err.reason, remote=request.remote)
        return web.Response(status=err.status, text=err.reason)
    return web.Response(text=plain)


@routes.post("/wecom/callback")
async def receive(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    body = await read_body(request)  # the whole body, however WeCom's (or a proxy's) framing split it
    if isinstance(body, web.Response):
        return body
    q = request.query
    crypto = services.callback_crypto
    try:
        plaintext = crypto.decrypt(body, q.get("msg_signature", ""), q.get("timestamp", ""), q.get("nonce", ""))
        reply = await services.inbox.receive(plaintext)
    except CallbackRejected as err:
        client_warning(_LOGGER, f"callback_{err.status}", "callback refused",
                       reason=err.reason, status=err.status, remote=request.remote)
        return web.Response(status=err.status, text=err.reason)
    if reply is None:
        return web.Response(text="")
    to_user = reply.to_user
    now = int(time.time())
    if reply.card_label:
        plain_reply = update_button_reply(to_user, crypto.corp_id, reply.card_label, now)
    else:
        plain_reply = text_reply(to_user, crypto.corp_id, reply.text or "", now)
    return web.Response(text=crypto.encrypt_reply(plain_reply, secrets.token_hex(8), now),
                        content_type="application/xml")
