"""Jinja2 rendering of everything a person reads. The texts themselves live in templates/."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import jinja2

from domain.lifecycle import ACTION_LABELS, STATE_LABELS
from domain.masking import group_context, group_view, mask_id_number, mask_name, mask_phone, redact
from domain.models import RISK_LABELS

TEMPLATES_DIR = Path(__file__).resolve().parent.parent / "templates"
# Templates whose text goes to group chats. Their instruction `i` is replaced by its group view and every
# other text they are given is redacted (bot.masking.group_context), whatever the caller passes.
GROUP_TEMPLATES = frozenset({
    "wecom/station_notice.md.j2", "wecom/fallback_notice.md.j2", "wecom/delivery_failed.md.j2",
    "wecom/outage_notice.md.j2", "wecom/credential_notice.md.j2", "wecom/notices.j2", "wecom/escalation.j2",
    "wecom/bulletin.md.j2", "awareness/push.j2",
})
# Templates for one person whose role needs the resident's details: their card, the replies to them.
PERSONAL_TEMPLATES = frozenset({"wecom/assignee_card.json.j2", "wecom/feedback_card.json.j2", "wecom/replies.j2",
                                "wecom/card_update.j2", "wecom/card_update.json.j2"})
SHANGHAI = ZoneInfo("Asia/Shanghai")

# Characters that WeCom markdown would interpret (formatting, links, <@userid> mentions, <font>):
# shown as their full-width twins so that text from the center is displayed, never executed.
_MARKDOWN_ESCAPES = str.maketrans({
    "<": "＜", ">": "＞", "[": "［", "]": "］", "*": "＊", "_": "＿", "`": "｀", "#": "＃",
    "\n": " ", "\r": " ",
})


def escape_markdown(value: Any) -> str:
    return str(value).translate(_MARKDOWN_ESCAPES)


def beijing_time(epoch: float, fmt: str = "%m-%d %H:%M:%S") -> str:
    return datetime.fromtimestamp(epoch, SHANGHAI).strftime(fmt)


def format_yuan(amount: float) -> str:
    """100000 → 10万元, 35000 → 3.5万元, 800 → 800元."""
    if amount >= 10000:
        wan = amount / 10000
        text = f"{wan:.2f}".rstrip("0").rstrip(".")
        return f"{text}万元"
    return f"{amount:.2f}".rstrip("0").rstrip(".") + "元"


def format_duration(seconds: float) -> str:
    """3分12秒, 1小时3分, 2天3小时: how long something took, as a person says it."""
    seconds = max(0, int(seconds))
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}天{hours}小时"
    if hours:
        return f"{hours}小时{minutes}分"
    if minutes:
        return f"{minutes}分{secs}秒"
    return f"{secs}秒"


def fit_bytes(text: str, limit: int) -> str:
    """Cut text to at most limit UTF-8 bytes on a character boundary, marking the cut."""
    data = text.encode("utf-8")
    if len(data) <= limit:
        return text
    marker = "…（内容过长已截断）"
    cut = data[: limit - len(marker.encode("utf-8"))].decode("utf-8", errors="ignore")
    return cut + marker


class Renderer:
    """Renders templates/ with the project's filters."""

    def __init__(self, templates_dir: Path = TEMPLATES_DIR) -> None:
        self.env = jinja2.Environment(
            loader=jinja2.FileSystemLoader(templates_dir),
            autoescape=False,  # output is markdown/JSON, escaped by the md and tojson filters
            undefined=jinja2.StrictUndefined,
            keep_trailing_newline=False,
        )
        self.env.filters.update(
            md=escape_markdown,
            mask_name=mask_name,
            mask_phone=mask_phone,
            mask_id=mask_id_number,
            redact=redact,
            group_view=group_view,
            bjtime=beijing_time,
            yuan=format_yuan,
            duration=format_duration,
        )
        self.env.globals.update(risk_labels=RISK_LABELS, state_labels=STATE_LABELS, action_labels=ACTION_LABELS)
        self.env.policies["json.dumps_kwargs"] = {"ensure_ascii": False, "sort_keys": False}

    def text(self, name: str, **context: Any) -> str:
        return self.env.get_template(name).render(**_for_audience(name, context)).strip()

    def macro(self, name: str, macro: str, **arguments: Any) -> str:
        """Call one macro of a template file that groups related texts (e.g. wecom/replies.j2)."""
        return str(getattr(self.env.get_template(name).module, macro)(**_for_audience(name, arguments))).strip()

    def json(self, name: str, **context: Any) -> dict[str, Any]:
        return json.loads(self.env.get_template(name).render(**context))


def _for_audience(name: str, context: dict[str, Any]) -> dict[str, Any]:
    return group_context(context) if name in GROUP_TEMPLATES else context
