"""message/send and message/update_template_card."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from ..card_rules import INTERACTIVE_TYPES, CardSpec, validate_card
from ..content import APP_MSGTYPES, validate_body
from ..duplicates import DuplicateFilter, check_settings
from ..errors import ApiError
from .common import check_agent, deliver, new_msgid

if TYPE_CHECKING:
    from ..simulator import Simulator

_MAX_USERS = 1000


def send(sim: Simulator, query: Mapping[str, str], body: dict) -> dict:
    """Send an app message to members, with duplicate check and silent per-member drops."""
    check_agent(sim, body)
    msgtype = body.get("msgtype")
    if msgtype not in APP_MSGTYPES:
        raise ApiError(40008)
    spec: CardSpec | None = None
    truncated = False
    if msgtype == "template_card":
        spec = validate_card(body.get("template_card"))
        if spec.updatable and not sim.config.callback_url:
            raise ApiError(43012)
    else:
        truncated = validate_body(msgtype, body, "app")
    requested, parties, tags = _addressees(body)
    valid, invalid = _resolve(sim, requested)
    if not valid:
        raise ApiError(81013)
    interval = check_settings(body)
    now = sim.clock.now()
    dup_key = DuplicateFilter.key(body) if interval else None
    duplicate = dup_key is not None and sim.duplicates.is_duplicate(dup_key, now)
    # WeCom checks for a duplicate first: an exact re-send of a card is success, not 42014.
    if not duplicate and spec and spec.task_id and sim.cards.has_task(spec.task_id):
        raise ApiError(42014)
    delivered, dropped = ([], []) if duplicate else deliver(sim.app_quota.acquire, valid, now)
    if dup_key is not None and not duplicate:
        sim.duplicates.remember(dup_key, now, interval)
    if spec and spec.task_id and not duplicate:
        sim.cards.open_task(spec.task_id, body["template_card"], delivered, now)
    response_code = sim.cards.issue_code(spec.task_id, now) if spec and spec.interactive else None
    msgid = new_msgid()
    sim.log.append(
        at=now,
        api="message/send",
        msgtype=msgtype,
        to_users=requested,
        body=body,
        delivered_to=delivered,
        dropped_for=dropped,
        duplicate=duplicate,
        truncated=truncated,
        msgid=msgid,
        response_code=response_code,
        task_id=spec.task_id if spec else None,
    )
    result = {
        "invaliduser": "|".join(invalid),
        "invalidparty": "|".join(parties),
        "invalidtag": "|".join(tags),
        "unlicenseduser": "",
        "msgid": msgid,
    }
    if response_code:
        result["response_code"] = response_code
    return result


def update_template_card(sim: Simulator, query: Mapping[str, str], body: dict) -> dict:
    """Update a sent card for some or all of its recipients, spending a response_code."""
    check_agent(sim, body)
    code = body.get("response_code")
    if not isinstance(code, str) or not code:
        raise ApiError(40058, "response_code is required")
    if ("button" in body) == ("template_card" in body):
        raise ApiError(40058, "give exactly one of button or template_card")
    now = sim.clock.now()
    task = sim.cards.redeem(code, now)
    targets = _update_targets(body, [view.userid for view in task.views.values()])
    source = "update_template_card"
    if "button" in body:
        button = body["button"]
        name = button.get("replace_name") if isinstance(button, dict) else None
        if not isinstance(name, str) or not name:
            raise ApiError(40058, "button.replace_name is required")
        if task.card_type not in INTERACTIVE_TYPES:
            raise ApiError(40058, "button updates need a button, vote or multiple card")
        updated = sim.cards.replace_button(task, targets, name, now, source)
        msgtype = "update_button"
    else:
        validate_card(body["template_card"], update=True)
        updated = sim.cards.apply(task, targets, body["template_card"], now, source)
        msgtype = "update_template_card"
    sim.cards.mark_used(code)
    sim.log.append(
        at=now,
        api="message/update_template_card",
        msgtype=msgtype,
        to_users=targets,
        body=body,
        delivered_to=updated,
        response_code=code,
        task_id=task.task_id,
    )
    reached = {userid.lower() for userid in updated}
    return {"invaliduser": [userid.lower() for userid in targets if userid.lower() not in reached]}


def _addressees(body: dict) -> tuple[list[str], list[str], list[str]]:
    """Return (userids, invalid parties, invalid tags) named by touser/toparty/totag."""
    users = _split(body, "touser")
    parties = _split(body, "toparty")
    tags = _split(body, "totag")
    if not (users or parties or tags):
        raise ApiError(82001)
    if len(users) > _MAX_USERS:
        raise ApiError(40058, f"touser names more than {_MAX_USERS} members")
    if users == ["@all"]:
        return users, [], []
    # The simulator has no departments or tags, so every one named is invalid.
    return users, parties, tags


def _resolve(sim: Simulator, requested: list[str]) -> tuple[list[str], list[str]]:
    """Map requested userids to members; return (valid canonical ids, invalid lower-cased ids)."""
    if requested == ["@all"]:
        return sim.directory.all_userids(), []
    valid: dict[str, None] = {}
    invalid: dict[str, None] = {}
    for userid in requested:
        user = sim.directory.resolve(userid)
        if user is None:
            invalid[userid.lower()] = None
        else:
            valid[user.userid] = None
    return list(valid), list(invalid)


def _split(body: dict, key: str) -> list[str]:
    value = body.get(key)
    if value is None or value == "":
        return []
    if not isinstance(value, str):
        raise ApiError(40058, f'{key} must be a "a|b" string')
    return [item for item in value.split("|") if item]


def _update_targets(body: dict, recipients: list[str]) -> list[str]:
    if body.get("atall") in (1, True):
        return recipients
    userids = body.get("userids", [])
    if not isinstance(userids, list) or not all(isinstance(u, str) for u in userids):
        raise ApiError(40058, "userids must be an array of userids")
    if not userids and not body.get("partyids") and not body.get("tagids"):
        raise ApiError(40058, "name userids, partyids, tagids or set atall")
    return userids
