"""Is WeCom set up right for this deployment? One Chinese line per problem, naming the setting to fix and where.

Run by `bot.py wecom check`, at every start (logged, and /healthz says "degraded" with the lines) and
again every few minutes while something is wrong. It only reads: no message is shown to anyone
(group robots are probed with a message type WeCom refuses before posting, see WeComClient.probe_webhook).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
import re
import time
from dataclasses import dataclass, field

from aiohttp import web

from bot.config import WeComSettings
from bot.wecom.chats import ChatSetupError, app_chat_plans, member_diff
from bot.wecom.client import WeComClient
from bot.wecom.errors import WeComError, WeComRateLimited, WeComRetryable, operator_advice
from domain.directory import Directory

_LOGGER = logging.getLogger(__name__)
_TOKEN = re.compile(r"[A-Za-z0-9]{1,32}")
_AES_KEY = re.compile(r"[A-Za-z0-9]{43}")
_ROOT_DEPARTMENT = 1
_CHAT_MISSING = {86001, 86003}
_CHAT_NOT_OURS = 86008
_ROBOT_GONE = {93000, 93004, 93008}


@dataclass
class CheckReport:
    """The outcome of one check: what is wrong (Chinese lines) and what was verified."""

    problems: list[str] = field(default_factory=list)
    verified: list[str] = field(default_factory=list)
    unreachable: bool = False  # WeCom could not be asked; the remote checks did not run

    @property
    def ok(self) -> bool:
        return not self.problems


def callback_settings_problems(settings: WeComSettings) -> list[str]:
    """The callback Token and EncodingAESKey as WeCom generates them (接收消息 → 设置API接收)."""
    problems = []
    if not _TOKEN.fullmatch(settings.token):
        problems.append("回调 Token（[wecom] token）应为 1–32 位英文字母或数字：在管理后台「应用管理 → 自建 → 本应用 → "
                        "接收消息 → 设置API接收」点「随机获取」并填入配置")
    key_ok = bool(_AES_KEY.fullmatch(settings.encoding_aes_key))
    if key_ok:
        try:
            key_ok = len(base64.b64decode(settings.encoding_aes_key + "=", validate=True)) == 32
        except binascii.Error:
            key_ok = False
    if not key_ok:
        problems.append("回调 EncodingAESKey（[wecom] encoding_aes_key）应为 43 位英文字母或数字：在管理后台"
                        "「应用管理 → 自建 → 本应用 → 接收消息 → 设置API接收」点「随机获取」并填入配置")
    return problems


async def run_check(client: WeComClient, directory: Directory) -> CheckReport:
    """Check the credentials, the app, every app chat, every robot and the customer-contact permission."""
    report = CheckReport(problems=callback_settings_problems(client.settings))
    if not report.problems:
        report.verified.append("回调 Token 与 EncodingAESKey 格式正确")
    try:
        await client.access_token()
    except WeComRetryable as err:
        report.unreachable = True
        report.problems.append(f"无法连接企业微信 API（[wecom] api_base = {client.settings.api_base}）：{err}；"
                               "请检查网络、代理与 api_base")
        return report
    except WeComError as err:
        report.problems.append(operator_advice(err))
        return report  # every other call needs the token
    report.verified.append("企业ID与应用 Secret 正确（已获取 access_token）")
    await _check_app(client, directory, report)
    await _check_app_chats(client, directory, report)
    await _check_robots(client, directory, report)
    await _check_customer_contact(client, directory, report)
    return report


async def _check_app(client: WeComClient, directory: Directory, report: CheckReport) -> None:
    try:
        agent = await client.agent_info()
    except WeComError as err:
        report.problems.append(operator_advice(err) if err.errcode else f"无法读取应用信息（agent/get）：{err}")
        return
    if agent.get("close"):
        report.problems.append("应用已被停用：在管理后台「应用管理 → 自建 → 本应用」启用")
        return
    parties = set((agent.get("allow_partys") or {}).get("partyid") or ())
    tags = (agent.get("allow_tags") or {}).get("tagid") or ()
    users = {str(u.get("userid", "")).lower() for u in (agent.get("allow_userinfos") or {}).get("user") or ()}
    if _ROOT_DEPARTMENT in parties:
        report.verified.append("应用可见范围为根部门（全员可见）")
        return
    if any(g.kind == "appchat" for g in directory.groups.values()):
        report.problems.append("应用群聊要求应用可见范围为根部门：在管理后台「应用管理 → 自建 → 本应用 → 可见范围」"
                               "选择企业根部门")
    if not parties and not tags:  # the range is a list of people: each must be on it
        outside = [p for p in directory.people.values() if p.userid.lower() not in users]
        if outside:
            report.problems.append(f"通讯录中有 {len(outside)} 人不在应用可见范围内，收不到卡片：在管理后台"
                                   "「应用管理 → 自建 → 本应用 → 可见范围」中加入")


async def _check_app_chats(client: WeComClient, directory: Directory, report: CheckReport) -> None:
    try:
        plans = app_chat_plans(directory)
    except ChatSetupError as err:
        report.problems.append(str(err))
        return
    for plan in plans:
        fix = f"运行 bot.py wecom create-chat {plan.group.code} 由本应用创建该群，并把打印的 chatid 填入通讯录"
        try:
            info = await client.get_appchat(plan.group.address)
        except WeComError as err:
            if err.errcode in _CHAT_MISSING:
                report.problems.append(f"应用群聊{plan.label}（chatid {plan.group.address}）不存在：{fix}")
            elif err.errcode == _CHAT_NOT_OURS:
                report.problems.append(f"应用群聊{plan.label}（chatid {plan.group.address}）不是本应用创建的（86008），"
                                       "企业微信只允许应用向自己创建的群发消息：在通讯录中为该群换一个新的 chatid"
                                       f"（1–32 位字母或数字），再运行 bot.py wecom create-chat {plan.group.code}")
            else:
                report.problems.append(f"应用群聊{plan.label}：{operator_advice(err, 'appchat')}")
            continue
        diff = member_diff(plan, info)
        if diff:
            report.problems.append(f"应用群聊{plan.label}的成员与通讯录不一致（缺 {len(diff.missing)} 人，多 "
                                   f"{len(diff.extra)} 人）：运行 bot.py wecom sync-chat {plan.group.code}")
        else:
            report.verified.append(f"应用群聊{plan.label}由本应用创建，成员与通讯录一致")


async def _check_robots(client: WeComClient, directory: Directory, report: CheckReport) -> None:
    robots = [(g.name, g.code, g.address) for g in directory.groups.values() if g.kind == "webhook"]
    robots += [(g.name, g.code, g.address) for g in directory.resident_groups.values() if g.channel == "webhook"]
    for name, code, key in robots:
        try:
            await client.probe_webhook(key)
        except WeComRateLimited:
            pass  # over its 20/min: the key answers, so it is alive
        except WeComError as err:
            if err.errcode in _ROBOT_GONE:
                report.problems.append(f"群机器人「{name}」({code}) 的 webhook key 已失效（{err.errcode}，"
                                       "机器人被移出群或停用）：在该群「群设置 → 群机器人」重新添加机器人，"
                                       "把新的 webhook_key 填入通讯录")
            else:
                report.problems.append(f"群机器人「{name}」({code}) 无法确认：{err}")
            continue
        report.verified.append(f"群机器人「{name}」({code}) 的 webhook key 有效")


async def _check_customer_contact(client: WeComClient, directory: Directory, report: CheckReport) -> None:
    if not any(g.channel == "customer_group" for g in directory.resident_groups.values()):
        return
    try:
        await client.customer_groups_visible()
    except WeComError as err:
        if err.errcode is not None:
            report.problems.append(operator_advice(err, "customer_group"))
        else:  # this WeCom (or simulator) does not answer the call: nothing to conclude
            _LOGGER.warning("could not check the customer-contact permission: %s", err)
        return
    report.verified.append("本应用可调用客户联系接口（客户群群发）")


class SelfCheck:
    """The running bot's view of its WeCom set-up: checked at start and again while something is wrong."""

    RECHECK = 300.0  # seconds between checks while a problem is reported

    def __init__(self, client: WeComClient, directory: Directory) -> None:
        self._client = client
        self._directory = directory
        self.report: CheckReport | None = None
        self._ran_at = -float("inf")

    @property
    def problems(self) -> list[str]:
        return list(self.report.problems) if self.report and not self.report.unreachable else []

    async def run(self, bound: float | None = None) -> CheckReport:
        """Check once (within `bound` seconds if given) and log each problem; never raises: a check that
        breaks is a reason in /healthz, not a bot that does not start."""
        try:
            async with asyncio.timeout(bound):
                report = await run_check(self._client, self._directory)
        except TimeoutError:
            report = CheckReport(problems=["企业微信自检超时"], unreachable=True)
        except Exception:
            _LOGGER.exception("wecom self-check failed")
            report = CheckReport(problems=["企业微信自检出错，详见日志"], unreachable=True)
        self.report = report
        self._ran_at = time.monotonic()
        if report.unreachable:
            _LOGGER.warning("wecom self-check could not reach WeCom", extra={"problems": report.problems})
        for line in report.problems if not report.unreachable else ():
            _LOGGER.error("wecom self-check: %s", line)
        if report.ok:
            _LOGGER.info("wecom self-check passed", extra={"verified": len(report.verified)})
        return report

    async def recheck(self) -> None:
        """For the scheduler: check again only while something was wrong (the set-up may have been fixed)."""
        # The scheduler's first call comes right after the start-up check: not again so soon.
        if self.report is not None and not self.report.ok and time.monotonic() - self._ran_at >= self.RECHECK / 2:
            await self.run()


SELF_CHECK = web.AppKey("wecom_self_check", SelfCheck)
