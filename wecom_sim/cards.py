"""Sent template cards as each recipient sees them, and their single-use response codes."""

from __future__ import annotations

import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .errors import ApiError

RESPONSE_CODE_TTL = 72 * 3600


@dataclass
class ResponseCode:
    """A code from a send or a click; usable once within 72 hours."""

    task_id: str | None
    expires_at: float
    used: bool = False


@dataclass
class CardView:
    """The card one member currently sees; updates replace `card` with a new dict."""

    userid: str
    card: dict
    updated_at: float
    source: str
    # What the member last chose on this card (question_key -> option ids), shown instead of the card's
    # defaults; a greyed button keeps it, a whole new card starts from its own selected_id / is_checked.
    selections: dict[str, list[str]] = field(default_factory=dict)


@dataclass
class Task:
    """A card with a task_id and the per-member views of it."""

    task_id: str
    card_type: str
    views: dict[str, CardView] = field(default_factory=dict)


class CardBook:
    """Tasks by task_id, their per-member card views and the response codes issued."""

    def __init__(self) -> None:
        self._tasks: dict[str, Task] = {}
        self._codes: dict[str, ResponseCode] = {}
        # Grows whenever a card appears or changes for someone, so viewers can tell.
        self.revision = 0

    def has_task(self, task_id: str) -> bool:
        """Tell whether `task_id` was already used by this app."""
        return task_id in self._tasks

    def task(self, task_id: str) -> Task | None:
        """Return the task for `task_id`, if any."""
        return self._tasks.get(task_id)

    def open_task(self, task_id: str, card: dict, userids: Iterable[str], now: float) -> None:
        """Register a newly sent card and the members it reached."""
        task = Task(task_id, card["card_type"])
        for userid in userids:
            task.views[userid.lower()] = CardView(userid, card, now, "send")
        self._tasks[task_id] = task
        self.revision += 1

    def issue_code(self, task_id: str | None, now: float) -> str:
        """Create a fresh single-use response_code for `task_id`."""
        code = secrets.token_urlsafe(48)
        self._codes[code] = ResponseCode(task_id, now + RESPONSE_CODE_TTL)
        return code

    def redeem(self, code: object, now: float) -> Task:
        """Return the task behind an unused, unexpired code; the caller marks it used."""
        entry = self._codes.get(code) if isinstance(code, str) else None
        # 全局错误码 (https://developer.work.weixin.qq.com/document/path/90313): 60140 无效的response_code,
        # "可能是response_code已经过期" — unknown, used and expired codes alike (42052 is a recall's msgid).
        if entry is None or entry.used:
            raise ApiError(60140, "response_code is invalid or already used")
        if now >= entry.expires_at:
            raise ApiError(60140, "response_code expired (usable within 72 hours)")
        task = self._tasks.get(entry.task_id) if entry.task_id else None
        if task is None:
            raise ApiError(42016)
        return task

    def mark_used(self, code: str) -> None:
        """Spend a response code."""
        self._codes[code].used = True

    def apply(self, task: Task, userids: Iterable[str], card: dict, now: float, source: str) -> list[str]:
        """Show `card` to those of `userids` who hold the task; return who was updated."""
        updated = []
        for userid in userids:
            view = task.views.get(userid.lower())
            if view is not None:
                task.views[userid.lower()] = CardView(view.userid, card, now, source)
                updated.append(view.userid)
        self.revision += bool(updated)
        return updated

    def replace_button(self, task: Task, userids: Iterable[str], name: str, now: float, source: str) -> list[str]:
        """Grey out the buttons of each member's current card with the text `name`."""
        updated = []
        for userid in userids:
            view = task.views.get(userid.lower())
            if view is not None:
                card = {**view.card, "replace_text": name}
                task.views[userid.lower()] = CardView(view.userid, card, now, source, view.selections)
                updated.append(view.userid)
        self.revision += bool(updated)
        return updated

    def remember_choices(self, task_id: str, userid: str, items: Iterable[Mapping[str, Any]]) -> None:
        """Keep what `userid` chose when clicking or submitting their card of `task_id`."""
        view = self.view(task_id, userid)
        chosen = {str(item["question_key"]): [str(o) for o in item.get("option_ids", ())] for item in items}
        if view is not None and chosen and chosen != view.selections:
            view.selections = chosen
            self.revision += 1

    def view(self, task_id: str, userid: str) -> CardView | None:
        """Return the card view `userid` has of `task_id`, if they received it."""
        task = self._tasks.get(task_id)
        return task.views.get(userid.lower()) if task else None

    def views(self, *, user: str | None = None, task_id: str | None = None) -> list[dict]:
        """List current card views, optionally for one member and/or one task."""
        if task_id is None:
            tasks = list(self._tasks.values())
        else:
            tasks = [self._tasks[task_id]] if task_id in self._tasks else []
        wanted = user.lower() if user else None
        return [
            {
                "userid": view.userid,
                "task_id": task.task_id,
                "card_type": task.card_type,
                "card": view.card,
                "updated_at": view.updated_at,
                "source": view.source,
                "selections": view.selections,
            }
            for task in tasks
            for key, view in task.views.items()
            if wanted is None or key == wanted
        ]
