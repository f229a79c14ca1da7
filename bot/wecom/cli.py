"""`bot.py wecom check | create-chat | sync-chat`: set up and verify a real WeCom corp from the command line.

Each prints Chinese lines for the operator and exits non-zero when something needs fixing.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import aiohttp

from bot.config import Settings, load_settings
from bot.directory import load_directory_file
from bot.wecom.chats import ChatPlan, ChatSetupError, app_chat_plans, chat_plan, create_chat, sync_chat
from bot.wecom.check import run_check
from bot.wecom.client import WeComClient
from bot.wecom.errors import WeComError, operator_advice
from domain.directory import Directory

_CHAT_EXISTS = 86215
_CHAT_NOT_OURS = 86008


async def _with_client(config_path: str, job: Callable[[WeComClient, Directory, Settings], Awaitable[int]]) -> int:
    settings = load_settings(config_path)
    directory = load_directory_file(settings.directory.path)
    async with aiohttp.ClientSession() as session:
        return await job(WeComClient(session, settings.wecom), directory, settings)


async def check(config_path: str) -> int:
    async def job(client: WeComClient, directory: Directory, settings: Settings) -> int:
        w = settings.wecom
        print(f"企业微信自检：{w.api_base}（企业ID {w.corp_id}，应用 {w.agent_id}）")
        report = await run_check(client, directory)
        for line in report.verified:
            print(f"  ✓ {line}")
        for line in report.problems:
            print(f"  ✗ {line}")
        print("结果：全部通过" if report.ok else f"结果：{len(report.problems)} 项需要处理")
        return 0 if report.ok else 1

    return await _with_client(config_path, job)


async def create(config_path: str, code: str | None) -> int:
    """Create one chat (station or group code), or with no code every app chat of the directory not yet there."""
    return await _each_chat(config_path, code, _create_one)


async def _each_chat(config_path: str, code: str | None,
                     act: Callable[[WeComClient, ChatPlan], Awaitable[bool]]) -> int:
    """`act` on the chat a code names, or on every app chat of the directory; 1 if any failed, 2 for a bad code."""
    async def job(client: WeComClient, directory: Directory, settings: Settings) -> int:
        try:
            plans = [chat_plan(directory, code)] if code else app_chat_plans(directory)
        except ChatSetupError as err:
            print(f"错误：{err}")
            return 2
        results = [await act(client, plan) for plan in plans]
        return 0 if all(results) else 1

    return await _with_client(config_path, job)


async def _create_one(client: WeComClient, plan: ChatPlan) -> bool:
    try:
        chatid = await create_chat(client, plan)
    except WeComError as err:
        if err.errcode == _CHAT_EXISTS:
            return await _already_there(client, plan)
        print(f"✗ 未能创建应用群聊{plan.label}：{operator_advice(err, 'appchat')}")
        return False
    print(f"✓ 已创建应用群聊{plan.label}，群主 {plan.owner}，{len(plan.members)} 名成员")
    print(f"  chatid = \"{chatid}\"")
    if chatid != plan.group.address:
        print(f"  请把通讯录中 code = \"{plan.group.code}\" 的群的 chatid 改为 \"{chatid}\" 并重启服务")
    return True


async def _already_there(client: WeComClient, plan: ChatPlan) -> bool:
    """The chatid is taken: by a chat of this app (fine), or by one it did not create (the directory needs
    a new chatid)."""
    try:
        await client.get_appchat(plan.group.address)
    except WeComError as err:
        if err.errcode == _CHAT_NOT_OURS:
            print(f"✗ chatid \"{plan.group.address}\" 已被一个不是本应用创建的群占用（86008）：请在通讯录中为"
                  f"{plan.label}换一个新的 chatid（1–32 位字母或数字）后重新运行")
        else:
            print(f"✗ 应用群聊{plan.label}：{operator_advice(err, 'appchat')}")
        return False
    print(f"✓ 应用群聊{plan.label}已存在，由本应用创建（chatid = \"{plan.group.address}\"）；成员请用 sync-chat 核对")
    return True


async def sync(config_path: str, code: str | None) -> int:
    """Bring one chat's members (or every app chat's) in line with the directory."""
    return await _each_chat(config_path, code, _sync_one)


async def _sync_one(client: WeComClient, plan: ChatPlan) -> bool:
    try:
        diff = await sync_chat(client, plan)
    except WeComError as err:
        print(f"✗ 应用群聊{plan.label}：{operator_advice(err, 'appchat')}"
              + (f"；如群不存在，先运行 bot.py wecom create-chat {plan.group.code}" if err.errcode else ""))
        return False
    if not diff:
        print(f"✓ 应用群聊{plan.label}的成员已与通讯录一致")
        return True
    print(f"✓ 应用群聊{plan.label}：加入 {len(diff.missing)} 人"
          + (f"（{', '.join(diff.missing)}）" if diff.missing else "")
          + f"，移出 {len(diff.extra)} 人" + (f"（{', '.join(diff.extra)}）" if diff.extra else ""))
    return True
