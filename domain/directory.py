"""The directory as the service sees it: stations, grids, people, WeCom groups and residents' groups.

Read from a TOML file by bot/directory.py, stored by storage/, routed from in memory.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property


@dataclass(frozen=True)
class ChatGroup:
    code: str
    name: str
    kind: str  # appchat | webhook
    address: str  # chatid or webhook key
    members: tuple[str, ...] = ()


@dataclass(frozen=True)
class Station:
    code: str
    name: str
    group_code: str | None
    leader: str | None
    duty_officer: str | None


@dataclass(frozen=True)
class Grid:
    code: str
    name: str
    station_code: str


@dataclass(frozen=True)
class Person:
    userid: str
    name: str
    role: str
    station_code: str | None = None
    grid_code: str | None = None
    mobile: str | None = None


@dataclass(frozen=True)
class ResidentGroup:
    """A police–resident group (警民群) that awareness campaigns push into."""

    code: str
    name: str
    station_code: str
    channel: str  # customer_group (客户群群发) | webhook (group robot) | app (app message to internal users)
    address: str  # the customer group's chat_id, the robot's webhook key, or the userids "a|b"
    community: str = ""
    tags: tuple[str, ...] = ()
    owner: str | None = None  # customer_group: the staff member who owns the group and confirms each push
    members: tuple[str, ...] = ()  # app: the userids; webhook: the group's members (for the simulator)


RESIDENT_CHANNELS = ("customer_group", "webhook", "app")


@dataclass(frozen=True)
class Directory:
    center_name: str = "反诈中心"
    fallback_group: str | None = None  # where unroutable instructions and delivery failures go
    stations: dict[str, Station] = field(default_factory=dict)
    grids: dict[str, Grid] = field(default_factory=dict)
    people: dict[str, Person] = field(default_factory=dict)
    groups: dict[str, ChatGroup] = field(default_factory=dict)
    resident_groups: dict[str, ResidentGroup] = field(default_factory=dict)

    def grid_workers(self, grid_code: str) -> list[Person]:
        return list(self._workers_by_grid.get(grid_code, ()))

    @cached_property
    def _workers_by_grid(self) -> dict[str, list[Person]]:
        # Built once per directory: scanning every person for each instruction showed in the profile.
        index: dict[str, list[Person]] = {}
        for p in self.people.values():
            if p.role == "grid_worker" and p.grid_code:
                index.setdefault(p.grid_code, []).append(p)
        return index

    def group(self, code: str | None) -> ChatGroup | None:
        return self.groups.get(code) if code else None
