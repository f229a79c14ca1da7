"""WeCom callbacks after decryption: store first, act once, answer within WeCom's 5-second window.

A callback is written to the database (deduplicated: WeCom retries) before anything acts on it. If
acting takes longer than the reply window, the HTTP answer is empty and the result reaches the person
as an app message instead; callbacks stored but never finished (a crash) are finished at start.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from bot.actions import Actions, Outcome, Report
from bot.commands import Commands
from bot.dispatch import DispatchPlanner
from bot.render import fit_bytes
from bot.wecom.callbacks import Callback, CardEvent, OtherCallback, TextMessage, parse_callback
from domain.cards import ClickCode
from domain.lifecycle import METHOD_OPTIONS, OUTCOME_OPTIONS
from domain.models import OutboxMessage
from storage import Storage

_LOGGER = logging.getLogger(__name__)
_CARD_KEY = re.compile(r"^(ack|report|refresh):(\d{1,12})$")
REPLY_WINDOW = 3.0  # seconds; WeCom gives up at 5
_MAX_CODE = 512  # WeCom's response_codes are some 100 characters; anything longer is not kept
_MESSAGE_KINDS = frozenset({"image", "voice", "video", "shortvideo", "location", "link", "file"})


@dataclass(frozen=True)
class Reply:
    """A passive reply to to_user: text, or a new label for the clicked card's buttons."""

    to_user: str
    text: str | None = None
    card_label: str | None = None


class Inbox:
    def __init__(self, storage: Storage, actions: Actions, commands: Commands,
                 planner: Callable[[], DispatchPlanner], clock: Callable[[], float],
                 wake: Callable[[], None]) -> None:
        self._storage = storage
        self._actions = actions
        self._commands = commands
        self._planner = planner
        self._clock = clock
        self._wake = wake
        self._background: set[asyncio.Task[None]] = set()

    async def receive(self, plaintext: str) -> Reply | None:
        """Store and act on one decrypted callback; the reply to answer WeCom with, if any."""
        callback = parse_callback(plaintext)
        kind = type(callback).__name__
        callback_id = await self._storage.record_callback(callback.dedupe_key, callback.from_user, kind, plaintext,
                                                          self._clock(), click=_click_code(callback))
        if callback_id is None:
            _LOGGER.info("duplicate callback ignored", extra={"key": callback.dedupe_key})
            return None
        task = asyncio.create_task(self._process(callback_id, callback))
        try:
            return await asyncio.wait_for(asyncio.shield(task), REPLY_WINDOW)
        except TimeoutError:
            # Too slow for a passive reply: let it finish and answer by app message; a clicked card, whose
            # buttons the reply would have greyed, is brought up to date with the click's own code.
            self._background.add(task)
            task.add_done_callback(self._late_reply)
            if isinstance(callback, CardEvent):
                task.add_done_callback(lambda _: self._in_background(self._refresh_clicked(callback)))
            return None
        except Exception:
            # Stored but not finished: WeCom's retry is a duplicate now, so the next start finishes it.
            _LOGGER.exception("acting on callback %d failed; it will be retried at the next start", callback_id)
            return None

    async def resume(self) -> int:
        """Finish callbacks a previous process stored but did not act on; answers go out as app messages."""
        pending = await self._storage.unprocessed_callbacks()
        for callback_id, plaintext in pending:
            callback = parse_callback(plaintext)
            await self._send_as_message(await self._process(callback_id, callback))
        return len(pending)

    async def stop(self) -> None:
        if self._background:
            await asyncio.wait(self._background, timeout=5.0)

    async def _process(self, callback_id: int, callback: Callback) -> Reply | None:
        outcome = await self._act(callback)
        # The reply does not wait for this record: what it answers is committed already. Lost to a crash,
        # the callback is acted on again at the next start, where the action finds it done.
        self._in_background(self._storage.finish_callback(
            callback_id, "ok" if outcome and outcome.ok else "refused", self._clock()))
        if outcome is None:
            return None
        if isinstance(callback, CardEvent) and outcome.ok and outcome.card_label:
            return Reply(callback.from_user, card_label=outcome.card_label)
        if isinstance(callback, CardEvent) and outcome.ok:
            return None  # 刷新: the card itself is the answer (bot/cards.py)
        if isinstance(callback, CardEvent):
            # A card click cannot be answered with text: the refusal goes as an app message.
            await self._send_as_message(Reply(callback.from_user, text=outcome.reply))
            return None
        return Reply(callback.from_user, text=fit_bytes(outcome.reply, 2048))

    async def _act(self, callback: Callback) -> Outcome | None:
        if isinstance(callback, TextMessage):
            return await self._commands.handle(callback.from_user, callback.content)
        if isinstance(callback, CardEvent):
            return await self._card_click(callback)
        assert isinstance(callback, OtherCallback)
        if callback.kind in _MESSAGE_KINDS:  # a photo or voice note to the app: answer, never silence
            return Outcome(False, "目前只能识别文字指令。\n" + self._commands.help_text())
        return None

    async def _card_click(self, event: CardEvent) -> Outcome | None:
        """Act on a card's button; a click that is refused (a stale card), or on 刷新, brings the card up to date
        with the click's own response_code."""
        match = _CARD_KEY.match(event.event_key)
        if match is None:
            _LOGGER.warning("card event with an unknown key", extra={"event_key": event.event_key})
            return None
        action, instruction_id = match.group(1), int(match.group(2))
        clicked = _click_code(event)
        if action == "ack":
            outcome = await self._actions.ack(event.from_user, instruction_id, "card", clicked)
        elif action == "report":
            report = _card_report(event)
            if report is None:
                outcome = Outcome(False, f"请在反馈卡片中选择劝阻结果后再提交（指令 #{instruction_id}）。")
            else:
                outcome = await self._actions.report(event.from_user, instruction_id, report, "card", clicked)
        else:
            outcome = Outcome(True, "")
        if action == "refresh" or not outcome.ok:
            await self._actions.refresh_card(event.from_user, instruction_id, event.task_id, event.response_code)
        return outcome

    async def _refresh_clicked(self, event: CardEvent) -> None:
        match = _CARD_KEY.match(event.event_key)
        if match is not None:
            await self._actions.refresh_card(event.from_user, int(match.group(2)), event.task_id, event.response_code)

    def _late_reply(self, task: asyncio.Task[Reply | None]) -> None:
        self._background.discard(task)
        if task.cancelled() or task.exception() is not None:
            _LOGGER.error("late callback processing failed", exc_info=task.exception())
            return
        self._in_background(self._send_as_message(task.result()))

    def _in_background(self, work: Coroutine[Any, Any, None]) -> None:
        """Run `work` beside the caller; stop() waits for it."""
        task = asyncio.create_task(work)
        self._background.add(task)
        task.add_done_callback(self._finished_in_background)

    def _finished_in_background(self, task: asyncio.Task[None]) -> None:
        self._background.discard(task)
        if not task.cancelled() and task.exception() is not None:
            _LOGGER.error("background work of a callback failed", exc_info=task.exception())

    async def _send_as_message(self, reply: Reply | None) -> None:
        """A text reply that cannot be passive any more, sent as an app message instead."""
        if reply is None or reply.text is None:
            return
        await self._storage.enqueue(None, [self._text_message(reply.to_user, reply.text)], self._clock())
        self._wake()

    def _text_message(self, userid: str, text: str) -> OutboxMessage:
        planner = self._planner()
        body = {"touser": userid, "msgtype": "text", "agentid": planner.agent_id,
                "text": {"content": fit_bytes(text, 2048)}}
        return OutboxMessage("reply", "app", userid, userid, body, (f"app:{userid}",), 0)


def _click_code(callback: Callback) -> ClickCode | None:
    """The response_code of a click on one of the bot's cards (its key names the instruction)."""
    if not isinstance(callback, CardEvent) or not 0 < len(callback.response_code) <= _MAX_CODE or not callback.task_id:
        return None
    match = _CARD_KEY.match(callback.event_key)
    if match is None:
        return None
    return ClickCode(callback.response_code, callback.task_id, int(match.group(2)), callback.from_user)


def _card_report(event: CardEvent) -> Report | None:
    """The outcome card's selections; None when no result was chosen (never guess an outcome)."""
    method = METHOD_OPTIONS.get((event.selected.get("method") or [""])[0])
    outcome = OUTCOME_OPTIONS.get((event.selected.get("outcome") or [""])[0])
    return Report(outcome, method) if outcome else None
