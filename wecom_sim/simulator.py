"""The simulated WeCom service: all state, the API dispatcher and the callback sender."""

from __future__ import annotations

import json
import logging
import secrets
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import aiohttp

from .apis import ENDPOINTS
from .callback_xml import card_event, fields, passive_text, passive_update, text_message
from .callbacks import CallbackClient
from .cards import CardBook
from .clock import SimClock
from .config import SimulatorConfig
from .directory import Directory
from .duplicates import DuplicateFilter
from .errors import ApiError
from .faults import ANY_API, FaultPlan
from .groupmsg import GroupMsgBook
from .limits import DailyLimit, Quota, WindowLimit
from .media import MediaStore
from .oauth import OAuthCodes
from .records import MessageLog, Stats, TextLog
from .tokens import TokenStore

_LOGGER = logging.getLogger(__name__)

_T = TypeVar("_T")


@dataclass(frozen=True)
class ApiResponse:
    """What one API call answers: normally HTTP 200 with a JSON payload."""

    status: int
    payload: dict[str, Any] | None = None
    text: str | None = None


class Simulator:
    """In-memory WeCom: directory, tokens, messages, cards, limits, faults and callbacks."""

    def __init__(self, config: SimulatorConfig | None = None, *, clock: SimClock | None = None) -> None:
        self.config = config or SimulatorConfig()
        self.clock = clock or SimClock()
        self.directory = Directory()
        self.tokens = TokenStore(self.config.token_ttl, self.clock)
        self.cards = CardBook()
        self.duplicates = DuplicateFilter()
        self.log = MessageLog()
        # The 1:1 app chat items that are no API call: texts members typed and passive text replies.
        self.texts = TextLog()
        self.stats = Stats()
        # Per member and app: 30/min and 1000/h for app messages; 200/min and 10,000/day in app chats.
        self.app_quota = Quota(WindowLimit(30, 60), WindowLimit(1000, 3600))
        self.chat_quota = Quota(WindowLimit(200, 60), DailyLimit(10_000))
        self.robot_limit = WindowLimit(20, 60)
        self.groupmsg = GroupMsgBook()
        self.media = MediaStore()
        self.oauth = OAuthCodes()
        self._faults = FaultPlan()
        self._callbacks = CallbackClient(self.config, self.clock)
        self._session: aiohttp.ClientSession | None = None

    @property
    def messages(self) -> list[dict[str, Any]]:
        """Every successful message call so far, oldest first."""
        return self.log.records

    @property
    def revision(self) -> int:
        """A number that grows whenever anything a member could see changes (messages, texts, cards, directory)."""
        return self.log.revision + self.texts.revision + self.cards.revision + self.directory.revision

    @property
    def gettoken_calls(self) -> int:
        """How many times gettoken was called."""
        return self.stats.calls["gettoken"]

    @property
    def faults(self) -> list[dict[str, Any]]:
        """Injected faults still waiting."""
        return self._faults.pending()

    def add_user(self, userid: str, name: str) -> None:
        """Add a corp member."""
        self.directory.add_user(userid, name)

    def add_appchat(self, chatid: str, name: str, userlist: list[str], owner: str | None = None) -> None:
        """Create an app group chat as appchat/create would; raise ValueError if WeCom would refuse."""
        try:
            self.directory.create_chat(name, list(userlist), owner, chatid)
        except ApiError as err:
            raise ValueError(str(err)) from err

    def add_robot(self, key: str, name: str, members: Iterable[str] = ()) -> None:
        """Add a group robot reachable at webhook/send?key=`key`."""
        self.directory.add_robot(key, name, members)

    def add_customer_group(self, chat_id: str, name: str, owner: str) -> None:
        """Add a customer group (residents' WeChat group) owned by member `owner`."""
        self.directory.add_customer_group(chat_id, name, owner)

    def confirm_groupmsg(self, *, msgid: str | None = None, sender: str | None = None) -> list[dict[str, Any]]:
        """The staff member confirms pending 群发 tasks (one by msgid, or all of a sender, or all)."""
        now = self.clock.now()
        tasks = [self.groupmsg.tasks[msgid]] if msgid in self.groupmsg.tasks else []
        if msgid is None:
            tasks = self.groupmsg.pending(sender)
        confirmed = []
        for task in tasks:
            if task.confirmed_at is not None:
                continue
            for chat_id in self.groupmsg.confirm(task, now):
                self.log.append(at=now, api="externalcontact/groupmsg", msgtype="text", chatid=chat_id,
                                to_users=[task.sender], body={"msgtype": "text", "text": {"content": task.text}},
                                msgid=task.msgid)
            confirmed.append(task.as_dict())
        return confirmed

    def clear_messages(self) -> None:
        """Forget recorded messages and 1:1 texts (users, chats, cards and limits stay)."""
        self.log.clear()
        self.texts.clear()

    def revoke_tokens(self) -> None:
        """Invalidate every access token before it expires."""
        self.tokens.revoke_all()

    def add_fault(
        self, api: str, *, errcode: int | None = None, http_status: int | None = None, times: int = 1
    ) -> None:
        """Make the next `times` calls of `api` ("*" for any) answer `errcode` or `http_status`."""
        if api != ANY_API and api not in ENDPOINTS:
            raise ValueError(f"unknown api {api!r}; expected one of {sorted(ENDPOINTS)} or '*'")
        self._faults.add(api, errcode=errcode, http_status=http_status, times=times)

    def clear_faults(self) -> None:
        """Drop every injected fault."""
        self._faults.clear()

    def card(self, userid: str, task_id: str) -> dict[str, Any] | None:
        """Return the card `userid` currently sees for `task_id`, if they received it."""
        views = self.cards.views(user=userid, task_id=task_id)
        return views[0]["card"] if views else None

    def call(
        self, api: str, query: Mapping[str, str], raw_body: bytes | None = None, *, remote: str | None = None,
        files: dict[str, tuple[str, str, bytes]] | None = None,
    ) -> ApiResponse:
        """Answer one API call: count it, apply faults, check the token, run the handler.

        A multipart API (media/upload) gets `files`: field name → (filename, content type, bytes).
        """
        endpoint = ENDPOINTS[api]
        self.stats.count_call(api)
        fault = self._faults.take(api)
        try:
            if fault is not None and fault.http_status is not None:
                self.stats.count_http_error(fault.http_status)
                return ApiResponse(fault.http_status, text=f"simulated fault: HTTP {fault.http_status}")
            if fault is not None and fault.errcode is not None:
                raise ApiError(fault.errcode)
            if endpoint.needs_token:
                self.tokens.check(query.get("access_token"))
            if endpoint.customer_contact and not self.config.customer_contact:
                # 全局错误码 48002 (https://developer.work.weixin.qq.com/document/path/90313), item 4: 客户联系
                # APIs only for the 客户联系 app or an app on its "可调用应用" list.
                raise ApiError(48002, "api forbidden: add the app to 客户联系 → 可调用应用")
            if endpoint.multipart:
                body = dict(files or {})
            else:
                body = _parse_body(raw_body) if endpoint.method == "POST" else {}
            payload = endpoint.handler(self, query, body)
        except ApiError as err:
            self.stats.count_error(api, err.errcode)
            _LOGGER.debug("%s answered %d: %s", api, err.errcode, err.detail)
            return ApiResponse(200, err.payload(remote))
        return ApiResponse(200, {"errcode": 0, "errmsg": "ok", **payload})

    def attach_session(self, session: aiohttp.ClientSession | None) -> None:
        """Use `session` for callbacks (the app does this); without one, each call opens its own."""
        self._session = session

    async def send_callback(self, plaintext_xml: str) -> dict[str, Any]:
        """Sign, encrypt and POST a plaintext callback, apply a passive card update; needs callback_url."""
        result = await self._with_session(lambda s: self._callbacks.deliver(s, plaintext_xml))
        card_updated = bool(result.reply) and self._apply_passive_reply(plaintext_xml, result.reply)
        return {**result.as_dict(), "card_updated": card_updated}

    async def send_text(self, from_user: str, content: str) -> dict[str, Any]:
        """Deliver a text message from `from_user` to the bot, as typed in the app's chat.

        Both the text and the bot's passive text reply, if any, are kept in `texts` (the 1:1 chat).
        """
        msg_id = secrets.randbits(63) or 1
        now = self.clock.now()
        xml = text_message(
            corp_id=self.config.corp_id,
            from_user=from_user,
            create_time=int(now),
            content=content,
            msg_id=msg_id,
            agent_id=self.config.agent_id,
        )
        typed = self.texts.append(
            at=now,
            api="callback/text",
            userid=from_user,
            content=content,
            msg_id=msg_id,
            after_message_seq=self.log.last_seq,
        )
        try:
            result = await self.send_callback(xml)
        except BaseException:
            self.texts.settle(typed, status=None)
            raise
        self.texts.settle(typed, status=result["status"])
        reply = self._reply_text(result["reply"])
        if reply is not None:
            self.texts.append(
                at=self.clock.now(),
                api="reply/text",
                userid=from_user,
                content=reply,
                msg_id=msg_id,
                after_message_seq=self.log.last_seq,
            )
        return {**result, "msg_id": msg_id}

    async def click_card(
        self,
        from_user: str,
        task_id: str,
        event_key: str,
        *,
        card_type: str | None = None,
        selected_items: Iterable[Mapping[str, Any]] = (),
        event: str = "template_card_event",
    ) -> dict[str, Any]:
        """Deliver a card click or submit from `from_user`, with a fresh response_code."""
        task = self.cards.task(task_id)
        card_type = card_type or (task.card_type if task else None)
        if not card_type:
            raise ValueError(f"card_type is needed for unknown task {task_id!r}")
        now = self.clock.now()
        selected_items = list(selected_items)
        if event == "template_card_event":
            self.cards.remember_choices(task_id, from_user, selected_items)
        response_code = self.cards.issue_code(task_id, now)
        xml = card_event(
            corp_id=self.config.corp_id,
            from_user=from_user,
            create_time=int(now),
            event=event,
            event_key=event_key,
            task_id=task_id,
            card_type=card_type,
            response_code=response_code,
            agent_id=self.config.agent_id,
            selected_items=selected_items,
        )
        return {**await self.send_callback(xml), "response_code": response_code}

    async def verify_callback(self) -> dict[str, Any]:
        """Run WeCom's URL verification against the callback URL."""
        return await self._with_session(self._callbacks.verify_url)

    async def _with_session(self, op: Callable[[aiohttp.ClientSession], Awaitable[_T]]) -> _T:
        if self._session is not None and not self._session.closed:
            return await op(self._session)
        async with aiohttp.ClientSession() as session:
            return await op(session)

    @staticmethod
    def _reply_text(reply_xml: str | None) -> str | None:
        if not reply_xml:
            return None
        try:
            return passive_text(reply_xml)
        except ValueError as err:
            _LOGGER.info("passive reply not shown: %s", err)
            return None

    def _apply_passive_reply(self, plaintext_xml: str, reply_xml: str) -> bool:
        try:
            update = passive_update(reply_xml)
            sent = fields(plaintext_xml) if update else {}
        except ValueError as err:
            _LOGGER.info("passive reply not applied: %s", err)
            return False
        if update is None:
            return False
        task = self.cards.task(sent.get("TaskId", ""))
        user = sent.get("FromUserName", "")
        if task is None or not user:
            _LOGGER.info("passive card update for an unknown task or user is ignored")
            return False
        now = self.clock.now()
        if update.card is not None:
            return bool(self.cards.apply(task, [user], update.card, now, "passive_reply"))
        return bool(self.cards.replace_button(task, [user], update.replace_name or "", now, "passive_reply"))


def _parse_body(raw: bytes | None) -> dict[str, Any]:
    try:
        body = json.loads(raw or b"")
    except ValueError as err:  # includes UnicodeDecodeError
        raise ApiError(40058, "request body is not valid JSON") from err
    if not isinstance(body, dict):
        raise ApiError(40058, "request body must be a JSON object")
    return body
