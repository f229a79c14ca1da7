"""Records passed between awareness planning, storage and the API."""

from __future__ import annotations

from dataclasses import dataclass, field

from bot.awareness.library import Item
from bot.awareness.settings import Campaign
from bot.directory import ResidentGroup
from bot.models import OutboxMessage

# Below every alert instruction (RISK_PRIORITY is 0..2): a campaign never delays an alert.
AWARENESS_PRIORITY = 5
AWARENESS_PURPOSE = "awareness"


@dataclass(frozen=True)
class StoredCampaign:
    campaign: Campaign
    source: str  # config | api
    last_slot: float | None
    updated_at: float


@dataclass(frozen=True)
class Target:
    """One group of a run: what it gets and why."""

    group: ResidentGroup
    item: Item
    reason: str


@dataclass(frozen=True)
class Push:
    """One WeCom call of a run and the groups it reaches (several for a customer-group task)."""

    message: OutboxMessage
    groups: tuple[str, ...]


@dataclass(frozen=True)
class RunPlan:
    campaign: Campaign
    trigger: str  # schedule | manual
    slot: float | None
    targets: list[Target]
    pushes: list[Push]
    left_out: list[tuple[str, str]] = field(default_factory=list)  # (group code, why nothing is sent)


@dataclass(frozen=True)
class GroupHistory:
    """What a group has been sent (failed pushes do not count): item id → (times, last time)."""

    items: dict[str, tuple[int, float]] = field(default_factory=dict)

    def times(self, item_id: str) -> int:
        return self.items.get(item_id, (0, 0.0))[0]

    def last(self, item_id: str) -> float:
        return self.items.get(item_id, (0, 0.0))[1]


@dataclass(frozen=True)
class AwaitingTask:
    """A customer-group task WeCom accepted, some of whose groups are not known to be sent yet."""

    outbox_id: int
    msgid: str
    sender: str
    sent_at: float
    chats: dict[str, tuple[int, str]]  # chat_id → (run id, group code)
