"""WeCom's callback URL: GET for URL verification, POST for messages and card events.

Refused callbacks get 403 (signature, corp id, stale timestamp) or 400 (undecryptable or malformed)
and are logged; WeCom reads any 200 as received, so 200 is only answered once the callback is stored.
"""

from __future__ import annotations

import logging
import secrets
import time

from aiohttp import web

from bot.app import SERVICES
from bot.wecom.callbacks import CallbackRejected, text_reply, update_button_reply

_LOGGER = logging.getLogger(__name__)
_MAX_CALLBACK_BYTES = 64 * 1024  # WeCom's callbacks are a few KB

routes = web.RouteTableDef()


@routes.get("/wecom/callback")
async def verify(request: web.Request) -> web.Response:
    crypto = request.app[SERVICES].callback_crypto
    q = request.query
    try:
        plain = crypto.verify_url(q.get("msg_signature", ""), q.get("timestamp", ""), q.get("nonce", ""),
                                  q.get("echostr", ""))
    except CallbackRejected as err:
        _LOGGER.warning("callback URL verification refused", extra={"reason": err.reason, "remote": request.remote})
        return web.Response(status=err.status, text=err.reason)
    return web.Response(text=plain)


@routes.post("/wecom/callback")
async def receive(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    if request.content_length is not None and request.content_length > _MAX_CALLBACK_BYTES:
        return web.Response(status=413, text="callback too large")
    body = await request.content.read(_MAX_CALLBACK_BYTES + 1)
    if len(body) > _MAX_CALLBACK_BYTES:
        return web.Response(status=413, text="callback too large")
    q = request.query
    crypto = services.callback_crypto
    try:
        plaintext = crypto.decrypt(body, q.get("msg_signature", ""), q.get("timestamp", ""), q.get("nonce", ""))
        reply = await services.inbox.receive(plaintext)
    except CallbackRejected as err:
        _LOGGER.warning("callback refused", extra={"reason": err.reason, "status": err.status,
                                                   "remote": request.remote})
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
