"""Delivery of signed, encrypted callbacks to the bot, as WeCom's servers do it."""

from __future__ import annotations

import logging
import secrets
import struct
from dataclasses import dataclass
from urllib.parse import quote

import aiohttp
from wechatpy.enterprise.crypto import WeChatCrypto
from wechatpy.exceptions import WeChatException
from yarl import URL

from .callback_xml import fields, request_envelope
from .clock import SimClock
from .config import SimulatorConfig

_LOGGER = logging.getLogger(__name__)

_VERIFY_TIMEOUT = 1.0


@dataclass
class CallbackResult:
    """Outcome of one callback: last HTTP status, attempts made, decrypted passive reply."""

    status: int | None
    attempts: int
    reply: str | None = None
    reply_error: str | None = None

    def as_dict(self) -> dict:
        """Return the result as a JSON-ready dict."""
        return {
            "status": self.status,
            "attempts": self.attempts,
            "reply": self.reply,
            "reply_error": self.reply_error,
        }


class CallbackClient:
    """Signs, encrypts and POSTs callbacks with WeCom's timeout and retries; opens replies."""

    def __init__(self, config: SimulatorConfig, clock: SimClock) -> None:
        self._config = config
        self._clock = clock
        self._crypto = WeChatCrypto(config.token, config.encoding_aes_key, config.corp_id)

    async def deliver(self, session: aiohttp.ClientSession, plaintext: str) -> CallbackResult:
        """POST `plaintext` encrypted to the callback URL; retry non-200 and timeouts."""
        timestamp, nonce = self._stamp()
        encrypt, signature = self._seal(plaintext, timestamp, nonce)
        target = _with_query(self._url(), {"msg_signature": signature, "timestamp": timestamp, "nonce": nonce})
        body = request_envelope(corp_id=self._config.corp_id, encrypt=encrypt, agent_id=self._config.agent_id)
        timeout = aiohttp.ClientTimeout(total=self._config.callback_timeout)
        status: int | None = None
        attempts = 0
        # The same signed payload is resent on every retry, as WeCom does.
        for attempts in range(1, self._config.callback_retries + 2):
            try:
                async with session.post(
                    target, data=body.encode(), headers={"Content-Type": "text/xml"}, timeout=timeout
                ) as resp:
                    status = resp.status
                    if status == 200:
                        return self._open_reply(status, attempts, await resp.read())
            except (TimeoutError, aiohttp.ClientError) as err:
                status = None
                _LOGGER.info("callback attempt %d failed: %r", attempts, err)
                continue
            _LOGGER.info("callback attempt %d answered HTTP %d", attempts, status)
        return CallbackResult(status, attempts)

    async def verify_url(self, session: aiohttp.ClientSession) -> dict:
        """Run WeCom's URL verification GET and report whether the bot echoed the plaintext."""
        expected = str(secrets.randbits(63))
        timestamp, nonce = self._stamp()
        echostr, signature = self._seal(expected, timestamp, nonce)
        target = _with_query(
            self._url(),
            {"msg_signature": signature, "timestamp": timestamp, "nonce": nonce, "echostr": echostr},
        )
        try:
            async with session.get(target, timeout=aiohttp.ClientTimeout(total=_VERIFY_TIMEOUT)) as resp:
                raw = await resp.read()
        except (TimeoutError, aiohttp.ClientError) as err:
            return {"ok": False, "status": None, "body": None, "expected": expected, "error": repr(err)}
        return {
            "ok": resp.status == 200 and raw == expected.encode(),
            "status": resp.status,
            "body": raw.decode(errors="replace"),
            "expected": expected,
            "error": None,
        }

    def _open_reply(self, status: int, attempts: int, raw: bytes) -> CallbackResult:
        text = raw.decode(errors="replace")
        if not text.strip():
            return CallbackResult(status, attempts)
        try:
            envelope = fields(text)
            reply = self._crypto.decrypt_message(
                {"Encrypt": envelope["Encrypt"]},
                envelope.get("MsgSignature", ""),
                envelope.get("TimeStamp", ""),
                envelope.get("Nonce", ""),
            )
        # A bad reply is reported, not raised: WeCom just ignores what it cannot open.
        except (KeyError, WeChatException, ValueError, IndexError, struct.error) as err:
            _LOGGER.info("passive reply could not be opened: %r", err)
            return CallbackResult(status, attempts, None, f"unreadable passive reply: {err!r}")
        return CallbackResult(status, attempts, reply)

    def _seal(self, plaintext: str, timestamp: str, nonce: str) -> tuple[str, str]:
        # wechatpy only offers the reply-style envelope; its Encrypt and signature are what we need.
        envelope = fields(self._crypto.encrypt_message(plaintext, nonce, timestamp))
        return envelope["Encrypt"], envelope["MsgSignature"]

    def _stamp(self) -> tuple[str, str]:
        return str(int(self._clock.now())), str(secrets.randbelow(10**10))

    def _url(self) -> str:
        if not self._config.callback_url:
            raise RuntimeError("SimulatorConfig.callback_url is not set")
        return self._config.callback_url


def _with_query(url: str, params: dict[str, str]) -> URL:
    # WeCom percent-encodes + / = in these values; yarl would leave "/" bare, so encode by hand.
    query = "&".join(f"{key}={quote(value, safe='')}" for key, value in params.items())
    return URL(f"{url}{'&' if '?' in url else '?'}{query}", encoded=True)
