"""`bot.py outbox retry`: make failed WeCom messages due again, also while the bot runs.

For messages that failed for good before their cause was fixed (a chat re-created, a robot re-added, a
permission granted). Each affected instruction gets an audit event (channel "cli"); a running bot sends
them within a few seconds, in queue order.
"""

from __future__ import annotations

import time
from datetime import datetime

from bot.config import load_settings
from bot.render import SHANGHAI
from storage import open_storage


class RetryArgumentError(ValueError):
    """An option of `outbox retry` is wrong; the message is for the operator."""


def parse_since(value: str) -> float:
    """An ISO 8601 time ("2026-11-22T14:00", "2026-11-22 14:00:00+08:00"); without offset, Beijing time."""
    try:
        at = datetime.fromisoformat(value.strip())
    except ValueError as err:
        raise RetryArgumentError(f"--since 需要 ISO 8601 时间，例如 2026-11-22T14:00（北京时间），"
                                 f"收到 {value!r}") from err
    if at.tzinfo is None:
        at = at.replace(tzinfo=SHANGHAI)
    return at.timestamp()


async def retry(config_path: str, instruction_id: int | None, since: str | None) -> int:
    settings = load_settings(config_path)
    since_at = parse_since(since) if since is not None else None
    storage = await open_storage(settings.database)
    try:
        requeued = await storage.requeue_failed(time.time(), instruction_id=instruction_id, since=since_at)
    finally:
        await storage.close()
    total = sum(len(ids) for ids in requeued.values())
    if not total:
        print("没有符合条件的失败消息")
        return 0
    instructions = sorted(i for i in requeued if i is not None)
    print(f"已重新排队 {total} 条失败消息" + (f"，涉及指令 {', '.join(f'#{i}' for i in instructions)}"
                                              if instructions else "") + "；运行中的服务将在几秒内发送")
    return 0
