"""The directory: stations, grids, people and WeCom groups, read from a TOML file.

The file is imported into the database (`python bot.py directory import`), and the running bot
routes from an in-memory snapshot of what the database holds.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from bot.config import read_toml
from domain.directory import RESIDENT_CHANNELS, ChatGroup, Directory, Grid, Person, ResidentGroup, Station
from domain.models import ROLES


class DirectoryError(ValueError):
    """The directory file is inconsistent; the message says where."""


def load_directory_file(path: str | Path) -> Directory:
    """Parse and check a directory TOML file."""
    return parse_directory(read_toml(Path(path), "directory", DirectoryError))


_KNOWN = {
    "": {"center", "groups", "stations", "grids", "people", "resident_groups"},
    "center": {"name", "fallback_group"},
    "groups": {"code", "name", "kind", "chatid", "webhook_key", "members"},
    "stations": {"code", "name", "group", "leader", "duty_officer"},
    "grids": {"code", "name", "station"},
    "people": {"userid", "name", "role", "station", "grid", "mobile"},
    "resident_groups": {"code", "name", "station", "channel", "chat_id", "webhook_key", "owner", "users", "members",
                        "community", "tags"},
}


class _Problems(list[str]):
    """Every problem of a directory file, so that `bot.py directory check` lists them all at once."""

    def entries(self, raw: dict[str, Any], table: str) -> Iterator[tuple[str, dict[str, Any]]]:
        """The entries of an array of tables; a malformed entry is noted and skipped."""
        value = raw.get(table, [])
        if not isinstance(value, list):
            self.append(f"[[{table}]] must be an array of tables")
            return
        for i, entry in enumerate(value):
            where = f"{table}[{i}]"
            if not isinstance(entry, dict):
                self.append(f"{where} must be a table")
                continue
            self.unknown(entry, table, where)
            yield where, entry

    def unknown(self, table: dict[str, Any], kind: str, where: str) -> None:
        for key in table:
            if key not in _KNOWN[kind]:
                close = difflib.get_close_matches(key, sorted(_KNOWN[kind]), n=1, cutoff=0.7)
                self.append(f"{where + '.' if where else ''}{key}: unknown key"
                            + (f" — did you mean {close[0]}?" if close else ""))


def parse_directory(raw: dict[str, Any]) -> Directory:
    """Check the whole file; a DirectoryError lists every problem found, one per line."""
    problems = _Problems()
    problems.unknown(raw, "", "")
    center = raw.get("center", {})
    if not isinstance(center, dict):
        problems.append("[center] must be a table")
        center = {}
    problems.unknown(center, "center", "center")

    groups: dict[str, ChatGroup] = {}
    for where, g in problems.entries(raw, "groups"):
        with _noted(problems):
            kind = _str(g, "kind", where)
            if kind not in ("appchat", "webhook"):
                raise DirectoryError(f"{where}.kind must be appchat or webhook")
            address = _str(g, "chatid" if kind == "appchat" else "webhook_key", where)
            code = _str(g, "code", where)
            if code in groups:
                raise DirectoryError(f"{where}.code {code!r} is used twice")
            groups[code] = ChatGroup(code, _str(g, "name", where), kind, address, tuple(g.get("members", ())))

    stations: dict[str, Station] = {}
    for where, s in problems.entries(raw, "stations"):
        with _noted(problems):
            st = Station(code=_str(s, "code", where), name=_str(s, "name", where), group_code=s.get("group"),
                         leader=s.get("leader"), duty_officer=s.get("duty_officer"))
            if st.code in stations:
                raise DirectoryError(f"{where}.code {st.code!r} is used twice")
            stations[st.code] = st
            if st.group_code and st.group_code not in groups:
                raise DirectoryError(f"{where}.group {st.group_code!r} is not a known group code")

    grids: dict[str, Grid] = {}
    for where, g in problems.entries(raw, "grids"):
        with _noted(problems):
            grid = Grid(_str(g, "code", where), _str(g, "name", where), _str(g, "station", where))
            if grid.code in grids:
                raise DirectoryError(f"{where}.code {grid.code!r} is used twice")
            grids[grid.code] = grid
            if grid.station_code not in stations:
                raise DirectoryError(f"{where}.station {grid.station_code!r} is not a known station")

    people: dict[str, Person] = {}
    for where, p in problems.entries(raw, "people"):
        with _noted(problems):
            person = Person(userid=_str(p, "userid", where), name=_str(p, "name", where),
                            role=_str(p, "role", where), station_code=p.get("station"), grid_code=p.get("grid"),
                            mobile=p.get("mobile"))
            if person.userid in people:
                raise DirectoryError(f"{where}.userid {person.userid!r} is used twice")
            people[person.userid] = person
            if person.role not in ROLES:
                raise DirectoryError(f"{where}.role must be one of {', '.join(ROLES)}")
            if person.station_code and person.station_code not in stations:
                raise DirectoryError(f"{where}.station {person.station_code!r} is not a known station")
            if person.grid_code and person.grid_code not in grids:
                raise DirectoryError(f"{where}.grid {person.grid_code!r} is not a known grid")
            if person.role == "grid_worker" and not person.grid_code:
                raise DirectoryError(f"{where}: a grid_worker needs a grid")

    for st in stations.values():
        for key, userid in (("leader", st.leader), ("duty_officer", st.duty_officer)):
            if userid and userid not in people:
                problems.append(f"station {st.code}.{key} {userid!r} is not in [[people]]")

    fallback = center.get("fallback_group")
    if fallback and fallback not in groups:
        problems.append(f"center.fallback_group {fallback!r} is not a known group code")
    resident_groups = _resident_groups(problems, raw, stations, people)
    if problems:
        raise DirectoryError("\n".join(problems))
    return Directory(
        center_name=center.get("name", "反诈中心"),
        fallback_group=fallback,
        stations=stations,
        grids=grids,
        people=people,
        groups=groups,
        resident_groups=resident_groups,
    )


@contextmanager
def _noted(problems: _Problems) -> Iterator[None]:
    """A problem with one entry is noted and the check goes on with the next."""
    try:
        yield
    except DirectoryError as err:
        problems.append(str(err))


def _resident_groups(problems: _Problems, raw: dict[str, Any], stations: dict[str, Station],
                     people: dict[str, Person]) -> dict[str, ResidentGroup]:
    groups: dict[str, ResidentGroup] = {}
    for where, g in problems.entries(raw, "resident_groups"):
        with _noted(problems):
            groups_entry = _resident_group(g, where, stations, people)
            if groups_entry.code in groups:
                raise DirectoryError(f"{where}.code {groups_entry.code!r} is used twice")
            groups[groups_entry.code] = groups_entry
    return groups


def _resident_group(g: dict[str, Any], where: str, stations: dict[str, Station],
                    people: dict[str, Person]) -> ResidentGroup:
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
    return group


def _str(table: dict[str, Any], key: str, where: str) -> str:
    value = table.get(key)
    if not isinstance(value, str) or not value.strip():
        raise DirectoryError(f"{where}.{key} is required and must be a non-empty string")
    return value.strip()
