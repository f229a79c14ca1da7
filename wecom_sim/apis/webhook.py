"""webhook/send: group robots, reached by key and limited to 20 messages a minute."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from ..card_rules import ROBOT_CARD_TYPES, validate_card
from ..content import WEBHOOK_MSGTYPES, validate_body
from ..errors import ApiError

if TYPE_CHECKING:
    from ..simulator import Simulator


def send(sim: Simulator, query: Mapping[str, str], body: dict) -> dict:
    """Post through a robot; unlike app messages, going over the limit is an error (45009)."""
    robot = sim.directory.robots.get(query.get("key", ""))
    if robot is None:
        raise ApiError(93000)
    now = sim.clock.now()
    if not sim.robot_limit.has_room(robot.key, now):
        raise ApiError(45009)
    msgtype = body.get("msgtype")
    if msgtype not in WEBHOOK_MSGTYPES:
        raise ApiError(40008)
    if msgtype == "template_card":
        card = body.get("template_card")
        # Robots get no callbacks, so only the two notice cards are allowed.
        if not isinstance(card, dict) or card.get("card_type") not in ROBOT_CARD_TYPES:
            raise ApiError(42031)
        validate_card(card)
    else:
        validate_body(msgtype, body, "webhook")
    sim.robot_limit.record(robot.key, now)
    sim.log.append(
        at=now,
        api="webhook/send",
        msgtype=msgtype,
        to_users=list(robot.members),
        robot_key=robot.key,
        body=body,
        delivered_to=list(robot.members),
    )
    return {}
