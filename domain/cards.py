"""Cards that stay true: the records of a sent interaction card, its click codes and a queued update
(WeCom's rules and how the service uses them: bot/cards.py)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from domain.models import OutboxMessage

CARD_PURPOSES = ("assignee_card", "feedback_card")  # the interaction cards sent to a person
UPDATE_PURPOSE = "card_update"  # outbox rows that call message/update_template_card
CODE_TTL = 72 * 3600.0
# An update may wait in the queue (a rate limit, a retry): a code this close to its end is left alone.
CODE_MARGIN = 600.0
REFRESH_KEY = "refresh:{id}"


@dataclass(frozen=True)
class ClickCode:
    """The response_code of one click on a card of an instruction."""

    code: str
    task_id: str
    instruction_id: int
    userid: str


@dataclass(frozen=True)
class StoredCard:
    """A card sent to a person: its original content, what its last update shows, codes it has left."""

    task_id: str
    userid: str
    purpose: str
    card: dict[str, Any]
    shows: str | None  # the status line of its last update; None: never updated
    usable: int  # unspent codes that are still valid


@dataclass(frozen=True)
class CardUpdate:
    """An update to queue if a code of the card can be claimed: `prefer` first (a click's own), else the oldest."""

    instruction_id: int
    task_id: str
    shows: str
    message: OutboxMessage  # the update_template_card body, without its response_code
    prefer: str | None = None
