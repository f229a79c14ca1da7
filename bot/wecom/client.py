"""Async WeCom API client on a shared aiohttp session.

Tokens are cached and refreshed behind one in-flight request (gettoken is itself rate-limited);
a rejected token (40014/42001/41001) is dropped and the call retried once with a fresh one.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable
from typing import Any

import aiohttp

from bot.config import WeComSettings
from bot.wecom.errors import (
    WeComConfigError,
    WeComError,
    WeComRejected,
    WeComTokenError,
    WeComUnavailable,
    error_for,
)

_LOGGER = logging.getLogger(__name__)
_REFRESH_MARGIN = 300.0  # refresh five minutes before WeCom says the token expires
_INVALID_MSGTYPE = 40008


class WeComClient:
    """The calls Quanzu makes to WeCom. Bodies may be passed pre-serialised to send exact bytes."""

    def __init__(self, session: aiohttp.ClientSession, settings: WeComSettings,
                 clock: Callable[[], float] = time.time) -> None:
        self._session = session
        self._settings = settings
        self._base = settings.api_base
        self._clock = clock
        self._timeout = aiohttp.ClientTimeout(total=settings.request_timeout)
        self._token: str | None = None
        self._token_expires_at = 0.0
        self._refreshing: asyncio.Task[str] | None = None
        self.token_refreshes = 0

    @property
    def agent_id(self) -> int:
        return self._settings.agent_id

    async def access_token(self) -> str:
        """A valid access token, fetching one if the cache is empty or near expiry."""
        if self._token and self._clock() < self._token_expires_at:
            return self._token
        if self._refreshing is None or self._refreshing.done():
            self._refreshing = asyncio.create_task(self._fetch_token())
        # Shielded so one caller's cancellation does not cancel the refresh others wait on.
        return await asyncio.shield(self._refreshing)

    async def _fetch_token(self) -> str:
        data = await self._request(
            "GET", "gettoken",
            params={"corpid": self._settings.corp_id, "corpsecret": self._settings.corp_secret},
        )
        token = data.get("access_token")
        if not token:
            raise WeComConfigError(None, "gettoken answered without access_token")
        self._token = token
        self._token_expires_at = self._clock() + max(float(data.get("expires_in", 7200)) - _REFRESH_MARGIN, 60.0)
        self.token_refreshes += 1
        _LOGGER.info("wecom access token refreshed", extra={"expires_in": data.get("expires_in")})
        return token

    def _drop_token(self, token: str) -> None:
        if self._token == token:
            self._token = None

    async def call(self, method: str, path: str, body: dict[str, Any] | str | None = None,
                   params: dict[str, str] | None = None,
                   form: Callable[[], aiohttp.FormData] | None = None) -> dict[str, Any]:
        """Call an access-token API; one retry with a fresh token if WeCom rejects the token.

        `form` builds a multipart body (media/upload); a FormData is consumed by one request, hence a factory.
        """
        for attempt in (1, 2):
            token = await self.access_token()
            try:
                return await self._request(method, path, params={**(params or {}), "access_token": token},
                                           body=body, form=form() if form else None)
            except WeComTokenError:
                self._drop_token(token)
                if attempt == 2:
                    raise
                _LOGGER.warning("wecom rejected the access token; fetching a new one", extra={"path": path})
        raise AssertionError("unreachable")

    async def _request(self, method: str, path: str, params: dict[str, str] | None = None,
                       body: dict[str, Any] | str | None = None,
                       form: aiohttp.FormData | None = None) -> dict[str, Any]:
        data = None
        if body is not None:
            data = (body if isinstance(body, str) else json.dumps(body, ensure_ascii=False)).encode("utf-8")
        try:
            async with self._session.request(
                method, self._base + path, params=params, data=form if form is not None else data,
                timeout=self._timeout,
                headers={"Content-Type": "application/json; charset=utf-8"} if data is not None else None,
            ) as resp:
                if resp.status != 200:
                    raise WeComUnavailable(None, f"HTTP {resp.status} from {path}")
                payload = await resp.json(content_type=None)
        except (aiohttp.ClientError, TimeoutError) as err:
            raise WeComUnavailable(None, f"{type(err).__name__} calling {path}: {err}") from err
        except ValueError as err:  # a body that is not JSON
            raise WeComUnavailable(None, f"non-JSON answer from {path}") from err
        if not isinstance(payload, dict):
            raise WeComUnavailable(None, f"unexpected answer from {path}")
        errcode = payload.get("errcode", 0)
        if errcode != 0:
            raise error_for(int(errcode), str(payload.get("errmsg", "")))
        return payload

    async def send_message(self, body: dict[str, Any] | str) -> dict[str, Any]:
        """message/send: an app message to people (text, markdown, template_card …)."""
        return await self.call("POST", "message/send", body)

    async def send_appchat(self, body: dict[str, Any] | str) -> dict[str, Any]:
        """appchat/send: a message into a group chat created by this app."""
        return await self.call("POST", "appchat/send", body)

    async def send_webhook(self, key: str, body: dict[str, Any] | str) -> dict[str, Any]:
        """webhook/send: a group robot message; needs no access token."""
        return await self._request("POST", "webhook/send", params={"key": key}, body=body)

    async def add_msg_template(self, body: dict[str, Any] | str) -> dict[str, Any]:
        """externalcontact/add_msg_template: a mass-message task that the sending staff member confirms."""
        return await self.call("POST", "externalcontact/add_msg_template", body)

    async def groupmsg_send_result(self, msgid: str, userid: str, cursor: str = "") -> dict[str, Any]:
        """externalcontact/get_groupmsg_send_result: per customer group, whether a task was sent."""
        body = {"msgid": msgid, "userid": userid, "limit": 1000, "cursor": cursor}
        return await self.call("POST", "externalcontact/get_groupmsg_send_result", body)

    async def update_template_card(self, body: dict[str, Any] | str) -> dict[str, Any]:
        """message/update_template_card: change a sent interaction card (single-use response_code)."""
        return await self.call("POST", "message/update_template_card", body)

    async def upload_media(self, kind: str, filename: str, content: bytes, content_type: str) -> str:
        """media/upload: a temporary file (kept 3 days) for image/file messages; returns its media_id."""

        def form() -> aiohttp.FormData:
            data = aiohttp.FormData()
            data.add_field("media", content, filename=filename, content_type=content_type)
            return data

        payload = await self.call("POST", "media/upload", params={"type": kind}, form=form)
        media_id = payload.get("media_id")
        if not media_id:
            raise WeComUnavailable(None, "media/upload answered without media_id")
        return str(media_id)

    # -- set-up and self-check calls (bot/wecom/check.py, bot/wecom/chats.py) --

    @property
    def settings(self) -> WeComSettings:
        return self._settings

    async def agent_info(self) -> dict[str, Any]:
        """agent/get: this app's details, among them its visible range (allow_userinfos/partys/tags) and close."""
        return await self.call("GET", "agent/get", params={"agentid": str(self._settings.agent_id)})

    async def create_appchat(self, name: str, owner: str, userlist: list[str], chatid: str = "") -> str:
        """appchat/create: a group chat owned by this app (only its creator app may use it); returns the chatid."""
        body: dict[str, Any] = {"name": name, "owner": owner, "userlist": userlist}
        if chatid:
            body["chatid"] = chatid
        payload = await self.call("POST", "appchat/create", body)
        return str(payload.get("chatid") or chatid)

    async def get_appchat(self, chatid: str) -> dict[str, Any]:
        """appchat/get: name, owner and userlist of a chat this app created (86003 unknown, 86008 not ours)."""
        payload = await self.call("GET", "appchat/get", params={"chatid": chatid})
        return dict(payload.get("chat_info") or {})

    async def update_appchat(self, chatid: str, add: list[str], remove: list[str]) -> None:
        """appchat/update: add and remove members."""
        body: dict[str, Any] = {"chatid": chatid}
        if add:
            body["add_user_list"] = add
        if remove:
            body["del_user_list"] = remove
        await self.call("POST", "appchat/update", body)

    async def probe_webhook(self, key: str) -> None:
        """Whether a group robot's key answers, without showing anything in its group.

        WeCom checks the key before the body: a removed robot answers 93000 (disabled 93004) whatever is
        sent, a live one refuses a message type that does not exist (40008) and posts nothing. Raises the
        WeComError of a dead key; returns for a live one.
        """
        try:
            await self._request("POST", "webhook/send", params={"key": key}, body={"msgtype": "quanzu_probe"})
        except WeComRejected as err:
            if err.errcode != _INVALID_MSGTYPE:
                raise

    async def customer_groups_visible(self) -> None:
        """externalcontact/groupchat/list for one group: raises 48002 when this app may not use 客户联系."""
        await self.call("POST", "externalcontact/groupchat/list", {"status_filter": 0, "limit": 1})

    async def user_from_oauth_code(self, code: str) -> str | None:
        """auth/getuserinfo: the userid behind a web OAuth code (None for someone outside the corp)."""
        payload = await self.call("GET", "auth/getuserinfo", params={"code": code})
        return payload.get("userid") or payload.get("UserId") or None


def invalid_users(payload: dict[str, Any]) -> list[str]:
    """The invaliduser field, which WeCom sends as "a|b" but sometimes as a JSON array."""
    value = payload.get("invaliduser") or ""
    if isinstance(value, list):
        return [str(v) for v in value]
    return [v for v in str(value).split("|") if v]


__all__ = ["WeComClient", "WeComError", "invalid_users"]
