"""The directory: stations, grids, people and WeCom groups, read from a TOML file.

The file is imported into the database (`python bot.py directory import`), and the running bot
routes from an in-memory snapshot of what the database holds.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from bot.config import read_toml
from bot.models import ROLES


class DirectoryError(ValueError):
    """The directory file is inconsistent; the message says where."""


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


def load_directory_file(path: str | Path) -> Directory:
    """Parse and check a directory TOML file."""
    return parse_directory(read_toml(Path(path), "directory", DirectoryError))


def parse_directory(raw: dict[str, Any]) -> Directory:
    center = raw.get("center", {})
    groups = {}
    for i, g in enumerate(raw.get("groups", [])):
        where = f"groups[{i}]"
        kind = _str(g, "kind", where)
        if kind not in ("appchat", "webhook"):
            raise DirectoryError(f"{where}.kind must be appchat or webhook")
        address = _str(g, "chatid" if kind == "appchat" else "webhook_key", where)
        code = _str(g, "code", where)
        groups[code] = ChatGroup(code, _str(g, "name", where), kind, address, tuple(g.get("members", ())))

    stations = {}
    for i, s in enumerate(raw.get("stations", [])):
        where = f"stations[{i}]"
        st = Station(
            code=_str(s, "code", where),
            name=_str(s, "name", where),
            group_code=s.get("group"),
            leader=s.get("leader"),
            duty_officer=s.get("duty_officer"),
        )
        if st.group_code and st.group_code not in groups:
            raise DirectoryError(f"{where}.group {st.group_code!r} is not a known group code")
        stations[st.code] = st

    grids = {}
    for i, g in enumerate(raw.get("grids", [])):
        where = f"grids[{i}]"
        grid = Grid(_str(g, "code", where), _str(g, "name", where), _str(g, "station", where))
        if grid.station_code not in stations:
            raise DirectoryError(f"{where}.station {grid.station_code!r} is not a known station")
        grids[grid.code] = grid

    people = {}
    for i, p in enumerate(raw.get("people", [])):
        where = f"people[{i}]"
        person = Person(
            userid=_str(p, "userid", where),
            name=_str(p, "name", where),
            role=_str(p, "role", where),
            station_code=p.get("station"),
            grid_code=p.get("grid"),
            mobile=p.get("mobile"),
        )
        if person.role not in ROLES:
            raise DirectoryError(f"{where}.role must be one of {', '.join(ROLES)}")
        if person.station_code and person.station_code not in stations:
            raise DirectoryError(f"{where}.station {person.station_code!r} is not a known station")
        if person.grid_code and person.grid_code not in grids:
            raise DirectoryError(f"{where}.grid {person.grid_code!r} is not a known grid")
        if person.role == "grid_worker" and not person.grid_code:
            raise DirectoryError(f"{where}: a grid_worker needs a grid")
        people[person.userid] = person

    for st in stations.values():
        for key, userid in (("leader", st.leader), ("duty_officer", st.duty_officer)):
            if userid and userid not in people:
                raise DirectoryError(f"station {st.code}.{key} {userid!r} is not in [[people]]")

    fallback = center.get("fallback_group")
    if fallback and fallback not in groups:
        raise DirectoryError(f"center.fallback_group {fallback!r} is not a known group code")
    return Directory(
        center_name=center.get("name", "反诈中心"),
        fallback_group=fallback,
        stations=stations,
        grids=grids,
        people=people,
        groups=groups,
        resident_groups=_resident_groups(raw.get("resident_groups", []), stations, people),
    )


def _resident_groups(entries: list[dict[str, Any]], stations: dict[str, Station],
                     people: dict[str, Person]) -> dict[str, ResidentGroup]:
    groups: dict[str, ResidentGroup] = {}
    for i, g in enumerate(entries):
        where = f"resident_groups[{i}]"
        channel = _str(g, "channel", where)
        if channel not in RESIDENT_CHANNELS:
            raise DirectoryError(f"{where}.channel must be one of {', '.join(RESIDENT_CHANNELS)}")
        owner = None
        members = tuple(g.get("members", ()))
        if channel == "customer_group":
            owner = _str(g, "owner", where)
            if owner not in people:
                raise DirectoryError(f"{where}.owner {owner!r} is not in [[people]]")
            address = _str(g, "chat_id", where)
        elif channel == "webhook":
            address = _str(g, "webhook_key", where)
        else:
            members = tuple(g.get("users", ()))
            if not members or any(u not in people for u in members):
                raise DirectoryError(f"{where}.users must list userids from [[people]]")
            address = "|".join(members)
        group = ResidentGroup(
            code=_str(g, "code", where), name=_str(g, "name", where), station_code=_str(g, "station", where),
            channel=channel, address=address, community=str(g.get("community", "")).strip(),
            tags=tuple(g.get("tags", ())), owner=owner, members=members,
        )
        if group.station_code not in stations:
            raise DirectoryError(f"{where}.station {group.station_code!r} is not a known station")
        if group.code in groups:
            raise DirectoryError(f"{where}.code {group.code!r} is used twice")
        groups[group.code] = group
    return groups


def _str(table: dict[str, Any], key: str, where: str) -> str:
    value = table.get(key)
    if not isinstance(value, str) or not value.strip():
        raise DirectoryError(f"{where}.{key} is required and must be a non-empty string")
    return value.strip()
