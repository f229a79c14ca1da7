"""Chat commands to the app (1:1): parse what people type and hand it to the actions.

签收 123 · 反馈 123 见面 劝阻成功 挽损10万 老人已醒悟 · 我的任务 · 查询 123 · 转派 123 userid ·
结案 123 [结果] [备注] · 帮助. Anything else gets the help text, never silence.
"""

from __future__ import annotations

import re

from bot.actions import Actions, Outcome, Report
from bot.render import Renderer
from domain.amounts import AmountError, parse_amount
from domain.lifecycle import CONTACT_METHODS, OUTCOMES

_ID = re.compile(r"^[#＃]?(\d{1,12})$")
_OUTCOME_ALIASES = {
    "成功": "劝阻成功", "被骗": "已被骗", "联系不上": "无法联系", "拒绝": "拒绝配合", "不配合": "拒绝配合",
}
_LOSS_AVOIDED_PREFIXES = ("挽损", "止付", "挽回")
_LOST_PREFIXES = ("被骗", "损失")
_COMMAND_ALIASES = {"签收": "ack", "反馈": "report", "我的任务": "tasks", "任务": "tasks", "查询": "query",
                    "转派": "reassign", "结案": "close", "帮助": "help", "help": "help", "?": "help", "？": "help"}


class CommandError(ValueError):
    """What the person typed cannot be understood; the message says how to write it."""


class Commands:
    def __init__(self, actions: Actions, renderer: Renderer) -> None:
        self._actions = actions
        self._renderer = renderer

    def help_text(self) -> str:
        return self._renderer.macro("wecom/replies.j2", "help")

    async def handle(self, userid: str, text: str) -> Outcome:
        """Run one typed command; the Outcome's reply goes back to the person."""
        words = text.replace("\u3000", " ").split()
        if not words:
            return Outcome(False, self.help_text())
        name = _COMMAND_ALIASES.get(words[0]) or _COMMAND_ALIASES.get(words[0].lower())
        if name is None or name == "help":
            prefix = "" if name == "help" else f"没有“{words[0][:10]}”这个指令。\n"
            return Outcome(name == "help", prefix + self.help_text())
        if name == "tasks":
            return await self._actions.my_tasks(userid)
        try:
            return await self._run(name, userid, words)
        except CommandError as err:
            return Outcome(False, str(err))

    async def _run(self, name: str, userid: str, words: list[str]) -> Outcome:
        instruction_id = _instruction_id(words)
        rest = words[2:]
        if name == "ack":
            return await self._actions.ack(userid, instruction_id, "command")
        if name == "query":
            return await self._actions.query(userid, instruction_id)
        if name == "report":
            return await self._actions.report(userid, instruction_id, parse_report(rest), "command")
        if name == "reassign":
            if len(rest) != 1:
                raise CommandError(f"请写明转派给谁，例如：转派 {instruction_id} zhangwei（对方的企业微信用户ID）")
            return await self._actions.reassign(userid, instruction_id, rest[0], "command")
        outcome = _outcome(rest[0]) if rest else None
        note = " ".join(rest[1:] if outcome else rest) or None
        return await self._actions.close(userid, instruction_id, outcome, note, "command")


def parse_report(words: list[str]) -> Report:
    """反馈 details: method, outcome (required), amounts and a free note, in any order."""
    method = outcome = None
    loss_avoided = amount_lost = None
    notes = []
    for word in words:
        bare = word.removesuffix("劝阻") if word not in OUTCOMES else word
        if method is None and bare in CONTACT_METHODS:
            method = bare
        elif outcome is None and _outcome(word):
            outcome = _outcome(word)
        elif word.startswith(_LOSS_AVOIDED_PREFIXES):
            loss_avoided = _amount(word)
        elif word.startswith(_LOST_PREFIXES):
            amount_lost = _amount(word)
        else:
            notes.append(word)
    if outcome is None:
        raise CommandError(
            "请写明劝阻结果（劝阻成功/已被骗/无法联系/拒绝配合/误报），例如：反馈 123 见面 劝阻成功 挽损10万 老人已醒悟"
        )
    return Report(outcome, method, loss_avoided, amount_lost, " ".join(notes)[:500] or None)


def _instruction_id(words: list[str]) -> int:
    if len(words) < 2 or not _ID.match(words[1]):
        raise CommandError(f"请写明指令编号，例如：{words[0]} 123")
    return int(_ID.match(words[1]).group(1))


def _outcome(word: str) -> str | None:
    if word in OUTCOMES:
        return word
    return _OUTCOME_ALIASES.get(word)


def _amount(word: str) -> float:
    try:
        return parse_amount(word)
    except AmountError as err:
        raise CommandError(f"{err}。金额可写作：挽损10万、被骗3.5万元、止付100000、挽损十万") from err
