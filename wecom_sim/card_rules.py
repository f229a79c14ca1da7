"""Validation of template_card JSON with the errcodes WeCom gives per broken field."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from .content import utf8_len
from .errors import ApiError

CARD_TYPES = frozenset({"text_notice", "news_notice", "button_interaction", "vote_interaction", "multiple_interaction"})
INTERACTIVE_TYPES = frozenset({"button_interaction", "vote_interaction", "multiple_interaction"})
ROBOT_CARD_TYPES = frozenset({"text_notice", "news_notice"})

_TASK_ID_RE = re.compile(r"[0-9A-Za-z_@-]+")


@dataclass(frozen=True)
class CardSpec:
    """What the rest of the simulator needs to know about a valid card."""

    card_type: str
    task_id: str | None
    has_action_menu: bool

    @property
    def interactive(self) -> bool:
        """Button, vote and multiple cards: they call back and get a response_code."""
        return self.card_type in INTERACTIVE_TYPES

    @property
    def updatable(self) -> bool:
        """Whether update_template_card may later change this card."""
        return self.interactive or self.has_action_menu


def validate_card(card: object, *, update: bool = False) -> CardSpec:
    """Check a template_card; `update` relaxes the task_id rule for update_template_card."""
    if not isinstance(card, dict):
        raise ApiError(40058, "template_card must be an object")
    card_type = card.get("card_type")
    if card_type not in CARD_TYPES:
        raise ApiError(42031)
    has_menu = card.get("action_menu") is not None
    task_id = card.get("task_id")
    if task_id is not None or (not update and (card_type in INTERACTIVE_TYPES or has_menu)):
        check_task_id(task_id)
    if not (_obj(card, "main_title").get("title") or card.get("sub_title_text")):
        raise ApiError(42033, "main_title.title or sub_title_text is required")
    _check_source(_obj(card, "source"))
    if has_menu:
        _check_action_menu(_obj(card, "action_menu"))
    _check_horizontal(card.get("horizontal_content_list"))
    _check_jumps(card.get("jump_list"))
    _check_card_action(card.get("card_action"), required=card_type == "text_notice")
    _TYPE_CHECKS[card_type](card)
    return CardSpec(card_type, task_id, has_menu)


def check_task_id(task_id: object) -> None:
    """Raise 42014 unless `task_id` is 1..128 bytes of [0-9A-Za-z_@-]."""
    if not isinstance(task_id, str) or not _TASK_ID_RE.fullmatch(task_id) or len(task_id) > 128:
        raise ApiError(42014)


def _check_source(source: dict) -> None:
    if source.get("desc_color", 0) not in (0, 1, 2, 3):
        raise ApiError(40058, "source.desc_color must be 0..3")


def _check_action_menu(menu: dict) -> None:
    actions = _list(menu, "action_list", 1, 3, 40058)
    keys = [action.get("key") for action in actions]
    if not all(isinstance(key, str) and key for key in keys) or len(set(keys)) != len(keys):
        raise ApiError(42051, "action_menu.action_list keys must be present and unique")
    if not all(isinstance(action.get("text"), str) and action["text"] for action in actions):
        raise ApiError(40058, "action_menu.action_list.text is required")


def _check_horizontal(items: object) -> None:
    if items is None:
        return
    if not isinstance(items, list) or len(items) > 6:
        raise ApiError(42035)
    needs = {1: ("url", 42028), 2: ("media_id", 42029), 3: ("userid", 42050)}
    for item in _dicts(items):
        if not item.get("keyname"):
            raise ApiError(42027)
        kind = item.get("type", 0)
        if kind not in (0, 1, 2, 3):
            raise ApiError(40058, "horizontal_content_list.type must be 0..3")
        if kind in needs and not item.get(needs[kind][0]):
            raise ApiError(needs[kind][1])


def _check_jumps(items: object) -> None:
    if items is None:
        return
    if not isinstance(items, list) or len(items) > 3:
        raise ApiError(42042)
    for item in _dicts(items):
        if not item.get("title"):
            raise ApiError(42033, "jump_list.title is required")
        kind = item.get("type", 0)
        if kind == 1 and not item.get("url"):
            raise ApiError(42028)
        if kind == 2 and not item.get("appid"):
            raise ApiError(42030)


def _check_card_action(action: object, *, required: bool) -> None:
    if action is None:
        if required:
            raise ApiError(42045, "card_action is required for text_notice")
        return
    if not isinstance(action, dict):
        raise ApiError(42045)
    kind = action.get("type", 0)
    if kind == 1 and not action.get("url"):
        raise ApiError(42028)
    if kind == 2 and not action.get("appid"):
        raise ApiError(42030)
    if kind not in (0, 1, 2) or (kind == 0 and required):
        raise ApiError(42045)


def _check_text_notice(card: dict) -> None:
    if card.get("emphasis_content") is not None:
        _obj(card, "emphasis_content")


def _check_news_notice(card: dict) -> None:
    image = card.get("card_image")
    if image is not None and not (isinstance(image, dict) and image.get("url")):
        raise ApiError(42044)
    rows = card.get("vertical_content_list")
    if rows is None:
        return
    if not isinstance(rows, list) or len(rows) > 4:
        raise ApiError(42036)
    if not all(row.get("title") for row in _dicts(rows)):
        raise ApiError(42033, "vertical_content_list.title is required")


def _check_button_interaction(card: dict) -> None:
    if card.get("button_selection") is not None:
        _check_selection(_obj(card, "button_selection"), max_options=10)
    keys: set[str] = set()
    for button in _list(card, "button_list", 1, 6, 40058):
        if not isinstance(button.get("text"), str) or not button["text"]:
            raise ApiError(42038)
        if button.get("style", 1) not in (1, 2, 3, 4):
            raise ApiError(40058, "button_list.style must be 1..4")
        kind = button.get("type", 0)
        if kind == 1:
            if not button.get("url"):
                raise ApiError(42028)
            continue
        key = button.get("key")
        if kind != 0 or not isinstance(key, str) or not key or utf8_len(key) > 1024 or key in keys:
            raise ApiError(42039)
        keys.add(key)


def _check_vote_interaction(card: dict) -> None:
    checkbox = card.get("checkbox")
    if not isinstance(checkbox, dict):
        raise ApiError(40058, "checkbox is required for vote_interaction")
    if checkbox.get("mode", 0) not in (0, 1):
        raise ApiError(40058, "checkbox.mode must be 0 or 1")
    _check_selection(checkbox, max_options=20)
    _check_submit(card)


def _check_multiple_interaction(card: dict) -> None:
    selections = _list(card, "select_list", 1, 3, 42047)
    for selection in selections:
        _check_selection(selection, max_options=10)
    keys = [selection["question_key"] for selection in selections]
    if len(set(keys)) != len(keys):
        raise ApiError(42043, "select_list.question_key must be unique")
    _check_submit(card)


def _check_selection(selection: dict, *, max_options: int) -> None:
    key = selection.get("question_key")
    if not isinstance(key, str) or not key or utf8_len(key) > 1024:
        raise ApiError(42043)
    ids: set[str] = set()
    for option in _list(selection, "option_list", 1, max_options, 42037):
        option_id = option.get("id")
        if not isinstance(option_id, str) or not option_id or utf8_len(option_id) > 128 or option_id in ids:
            raise ApiError(42040)
        ids.add(option_id)
        if not isinstance(option.get("text"), str) or not option["text"]:
            raise ApiError(42041)


def _check_submit(card: dict) -> None:
    submit = card.get("submit_button")
    if not isinstance(submit, dict) or not isinstance(submit.get("key"), str) or not submit["key"]:
        raise ApiError(42046)
    if "text" in submit and not isinstance(submit["text"], str):
        raise ApiError(42049)


def _obj(parent: dict, key: str) -> dict:
    value = parent.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ApiError(40058, f"{key} must be an object")
    return value


def _list(parent: dict, key: str, low: int, high: int, errcode: int) -> list[dict]:
    value = parent.get(key)
    if not isinstance(value, list) or not low <= len(value) <= high:
        raise ApiError(errcode, f"{key} must hold {low}..{high} items")
    return _dicts(value)


def _dicts(items: list) -> list[dict]:
    if not all(isinstance(item, dict) for item in items):
        raise ApiError(40058, "list items must be objects")
    return items


_TYPE_CHECKS: dict[str, Callable[[dict], None]] = {
    "text_notice": _check_text_notice,
    "news_notice": _check_news_notice,
    "button_interaction": _check_button_interaction,
    "vote_interaction": _check_vote_interaction,
    "multiple_interaction": _check_multiple_interaction,
}
