"""客户群群发: tasks made by externalcontact/add_msg_template, sent only when the staff member confirms."""

from __future__ import annotations

import calendar
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

_SHANGHAI = ZoneInfo("Asia/Shanghai")
UNSENT, SENT, OVER_QUOTA = 0, 1, 3  # get_groupmsg_send_result status values


@dataclass
class GroupMsgTask:
    msgid: str
    sender: str
    chat_ids: list[str]
    text: str
    created_at: float
    confirmed_at: float | None = None
    results: dict[str, tuple[int, float | None]] = field(default_factory=dict)  # chat_id → (status, send_time)

    def as_dict(self) -> dict[str, Any]:
        return {
            "msgid": self.msgid, "sender": self.sender, "chat_ids": list(self.chat_ids), "text": self.text,
            "created_at": self.created_at, "confirmed_at": self.confirmed_at,
            "results": [{"chat_id": c, "status": s, "send_time": t} for c, (s, t) in self.results.items()],
        }


class GroupMsgBook:
    """Tasks by msgid, and how many mass messages each customer group got per natural month."""

    def __init__(self) -> None:
        self.tasks: dict[str, GroupMsgTask] = {}
        self._received: Counter[tuple[str, str]] = Counter()

    def create(self, msgid: str, sender: str, chat_ids: list[str], text: str, now: float) -> GroupMsgTask:
        task = GroupMsgTask(msgid, sender, chat_ids, text, now, results={c: (UNSENT, None) for c in chat_ids})
        self.tasks[msgid] = task
        return task

    def confirm(self, task: GroupMsgTask, now: float) -> list[str]:
        """The staff member taps send: groups within their monthly quota get it; returns those chat ids."""
        task.confirmed_at = now
        local = datetime.fromtimestamp(now, _SHANGHAI)
        month = f"{local.year}-{local.month:02d}"
        quota = calendar.monthrange(local.year, local.month)[1]  # WeCom: days-in-month messages a month
        delivered = []
        for chat_id in task.chat_ids:
            if self._received[(chat_id, month)] >= quota:
                task.results[chat_id] = (OVER_QUOTA, None)
                continue
            self._received[(chat_id, month)] += 1
            task.results[chat_id] = (SENT, now)
            delivered.append(chat_id)
        return delivered

    def pending(self, sender: str | None = None) -> list[GroupMsgTask]:
        return [t for t in self.tasks.values() if t.confirmed_at is None and (sender is None or t.sender == sender)]
