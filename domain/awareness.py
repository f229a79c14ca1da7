"""Records passed between awareness planning, storage and the API."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

from domain.directory import ResidentGroup
from domain.models import OutboxMessage

CHANNELS = ("customer_group", "webhook", "app")
EVERYONE = "全体"
AUDIENCES = (EVERYONE, "老年人", "学生", "宝妈", "青年", "企业财务", "个体商户")


@dataclass(frozen=True)
class Audience:
    """Which residents' groups a campaign reaches. Empty lists do not filter; filters combine with AND."""

    stations: tuple[str, ...] = ()
    communities: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    groups: tuple[str, ...] = ()


@dataclass(frozen=True)
class Campaign:
    name: str
    title: str
    schedule: str  # crontab in Asia/Shanghai; "" = only run by hand
    selection: str  # fixed | rotation | trend
    audience: Audience = field(default_factory=Audience)
    channels: tuple[str, ...] = CHANNELS
    item: str | None = None  # the item of a fixed campaign
    fraud_types: tuple[str, ...] = ()  # narrows the pool of rotation and trend campaigns
    trend_days: int = 7
    quiet_hours: str = "21:30-08:00"  # "" = none
    urgent: bool = False  # urgent campaigns ignore quiet hours
    enabled: bool = True

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Campaign:
        """The inverse of as_dict, for a definition that was checked when it was stored (bot/awareness/settings)."""
        fields = dict(data)
        fields["audience"] = Audience(**{k: tuple(v) for k, v in fields.get("audience", {}).items()})
        for key in ("channels", "fraud_types"):
            if key in fields:
                fields[key] = tuple(fields[key])
        return cls(**fields)

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["audience"] = {k: list(v) for k, v in data["audience"].items()}
        for key in ("channels", "fraud_types"):
            data[key] = list(data[key])
        return data


@dataclass(frozen=True)
class Item:
    id: str
    fraud_type: str
    audiences: tuple[str, ...]
    title: str
    body: str
    footer: bool = True

    def fits(self, tags: Iterable[str]) -> bool:
        """Whether this item is written for a group with these audience tags (untagged groups: anything)."""
        tags = [t for t in tags if t in AUDIENCES]
        return not tags or EVERYONE in self.audiences or any(t in self.audiences for t in tags)


class Library:
    """The items in file order; looked up by id, filtered by audience and fraud type."""

    def __init__(self, items: Iterable[Item]) -> None:
        self.items = tuple(items)
        self.by_id = {item.id: item for item in self.items}

    def pool(self, tags: Iterable[str], fraud_types: Iterable[str] = ()) -> list[Item]:
        """Items for a group with these tags, optionally only of the given fraud types."""
        tags = tuple(tags)
        types = set(fraud_types)
        return [i for i in self.items if i.fits(tags) and (not types or i.fraud_type in types)]

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
