"""Duty rosters (值班表): who is on duty at each station, by date and shift, imported from CSV.

A station keeps its roster in a spreadsheet and exports it as CSV (UTF-8, or GBK as Excel writes it
on a Chinese Windows). One row per shift:

    日期,派出所,班次,开始,结束,值班民警,带班领导
    2026-11-27,DM,白班,08:00,20:00,王强,陈龙
    2026-11-27,DM,夜班,20:00,08:00,李娜,陈龙

A shift whose end is not after its start ends the next day (a night shift, or 08:00–08:00 for a
24-hour shift). People are named by WeCom userid or by their name in the directory. Cards and
escalations go to whoever is on duty at that moment; where a rostered station has no shift, the
directory's duty officer (then the station leader) stands in and the leader is warned about the gap.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterable
from datetime import date, datetime, time, timedelta

from bot.render import SHANGHAI
from domain.directory import Directory, Person
from domain.roster import RosterBook, Shift

_HEADERS = {
    "日期": "date", "值班日期": "date", "date": "date",
    "派出所": "station", "单位": "station", "station": "station",
    "班次": "shift", "shift": "shift",
    "开始": "start", "开始时间": "start", "start": "start",
    "结束": "end", "结束时间": "end", "end": "end",
    "值班民警": "officer", "值班人": "officer", "值班人员": "officer", "officer": "officer",
    "带班领导": "leader", "值班领导": "leader", "leader": "leader",
}
_REQUIRED = ("date", "station", "start", "end", "officer")
_DATE = re.compile(r"^([0-9]{4})\s*[-/.年]\s*([0-9]{1,2})\s*[-/.月]\s*([0-9]{1,2})\s*日?$")
_TIME = re.compile(r"^([0-9]{1,2})[:：]([0-9]{2})$")
MAX_ROWS = 20000
MAX_CELL = 64  # characters in a cell: names, codes, dates and shift labels are all short
YEARS = range(2000, 2100)  # a duty roster is about this century; beyond it dates cannot be computed


class RosterError(ValueError):
    """The roster file cannot be imported; `problems` lists every bad row, in Chinese."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("；".join(problems[:5]) + (f"（共 {len(problems)} 处）" if len(problems) > 5 else ""))
        self.problems = problems


def summarise(shifts: list[Shift], book: RosterBook) -> dict:
    """What an import covered, and the gaps it leaves inside that span, for the person who imported it."""
    start = min(s.starts_at for s in shifts)
    end = max(s.ends_at for s in shifts)
    stations = sorted({s.station_code for s in shifts})
    gaps = [g for code in stations for g in book.gaps(code, start, end)
            if g.start is not None and g.end is not None]
    return {
        "imported": len(shifts),
        "stations": stations,
        "from": _local(start),
        "to": _local(end),
        "gaps": [{"station": g.station_code, "from": _local(g.start), "to": _local(g.end)} for g in gaps],
    }


def _local(epoch: float | None) -> str | None:
    return None if epoch is None else datetime.fromtimestamp(epoch, SHANGHAI).strftime("%Y-%m-%d %H:%M")


# -- import ----------------------------------------------------------------------------------


def parse_roster_csv(data: bytes, directory: Directory) -> list[Shift]:
    """Every shift in the file, or RosterError listing every problem (nothing is half-imported)."""
    text = _decode(data)
    if "\x00" in text:  # UTF-16/32 read as GBK, or a binary file: no CSV has NUL characters
        raise RosterError(["无法识别文件内容，请另存为 UTF-8 或 GBK 编码的 CSV"])
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        return _parse_rows(reader, directory)
    except csv.Error as err:  # a cell longer than the csv module allows, a stray quote or line break
        raise RosterError([f"第{reader.line_num}行：CSV 格式错误，无法解析"]) from err


def _parse_rows(reader: Iterable[list[str]], directory: Directory) -> list[Shift]:
    header = next(reader, None)
    if header is None:
        raise RosterError(["值班表是空文件"])
    columns = {_HEADERS.get(h.strip().lower() if h.strip().isascii() else h.strip()): n for n, h in enumerate(header)}
    missing = [name for name in _REQUIRED if name not in columns]
    if missing:
        labels = {"date": "日期", "station": "派出所", "start": "开始", "end": "结束", "officer": "值班民警"}
        raise RosterError([f"表头缺少列：{'、'.join(labels[m] for m in missing)}"
                           "（需要：日期,派出所,班次,开始,结束,值班民警,带班领导）"])
    shifts: list[Shift] = []
    problems: list[str] = []
    for line, row in enumerate(reader, start=2):
        if not any(cell.strip() for cell in row):
            continue
        if len(shifts) + len(problems) >= MAX_ROWS:
            problems.append(f"值班表超过 {MAX_ROWS} 行，请按月分批导入")
            break
        cell = {name: (row[n].strip() if n < len(row) else "") for name, n in columns.items() if name}
        try:
            _check_cells(cell)
            shifts.append(_shift(cell, directory))
        except ValueError as err:
            problems.append(f"第{line}行：{err}")
    if problems:
        raise RosterError(problems)
    if not shifts:
        raise RosterError(["值班表没有任何班次"])
    return shifts


def _decode(data: bytes) -> str:
    for encoding in ("utf-8-sig", "gb18030"):
        try:
            return data.decode(encoding)
        except UnicodeDecodeError:
            continue
    raise RosterError(["无法识别文件编码，请另存为 UTF-8 或 GBK 编码的 CSV"])


def _check_cells(cell: dict[str, str]) -> None:
    for value in cell.values():
        if len(value) > MAX_CELL:
            raise ValueError(f"单元格内容过长（超过{MAX_CELL}个字符）")
        if any(ord(ch) < 32 or ord(ch) == 127 for ch in value):
            raise ValueError("单元格含有控制字符")


def _shift(cell: dict[str, str], directory: Directory) -> Shift:
    station = _station(cell["station"], directory)
    day = _date(cell["date"])
    start = _time(cell["start"], "开始")
    end = _time(cell["end"], "结束")
    starts_at = datetime.combine(day, start, SHANGHAI)
    ends_at = datetime.combine(day, end, SHANGHAI)
    if ends_at <= starts_at:  # a night or 24-hour shift ends the next day ("24:00" is midnight)
        ends_at += timedelta(days=1)
    officer = _person(cell["officer"], station, directory, "值班民警")
    leader = _person(cell["leader"], station, directory, "带班领导") if cell.get("leader") else None
    return Shift(station, day.isoformat(), cell.get("shift") or "值班", starts_at.timestamp(), ends_at.timestamp(),
                 officer, leader)


def _station(value: str, directory: Directory) -> str:
    if value in directory.stations:
        return value
    for station in directory.stations.values():
        if station.name == value:
            return station.code
    raise ValueError(f"派出所“{value}”不在通讯录中（填派出所编码或全称）")


def _date(value: str) -> date:
    match = _DATE.match(value)
    if not match:
        raise ValueError(f"日期“{value}”无法识别（例：2026-11-27）")
    try:
        day = date(*(int(g) for g in match.groups()))
    except ValueError as err:
        raise ValueError(f"日期“{value}”不存在") from err
    if day.year not in YEARS:
        raise ValueError(f"日期“{value}”不在 {YEARS.start}–{YEARS.stop - 1} 年之间")
    return day


def _time(value: str, what: str) -> time:
    match = _TIME.match(value)
    if not match:
        raise ValueError(f"{what}时间“{value}”无法识别（例：08:00）")
    hour, minute = int(match.group(1)), int(match.group(2))
    if (hour, minute) == (24, 0):
        return time(0)
    if hour > 23 or minute > 59:
        raise ValueError(f"{what}时间“{value}”不存在")
    return time(hour, minute)


def _person(value: str, station_code: str, directory: Directory, what: str) -> str:
    person = directory.people.get(value)
    if person is None:
        named = [p for p in directory.people.values() if p.name == value]
        eligible = [p for p in named if _may_stand_duty(p, station_code)]
        if len(eligible) > 1:
            raise ValueError(f"{what}“{value}”重名，请改填企业微信用户ID")
        person = eligible[0] if eligible else (named[0] if named else None)
    if person is None:
        raise ValueError(f"{what}“{value}”不在通讯录中")
    if not _may_stand_duty(person, station_code):
        raise ValueError(f"{what}“{value}”不是该派出所的民警或所领导")
    return person.userid


def _may_stand_duty(person: Person, station_code: str) -> bool:
    return person.role in ("officer", "station_leader") and person.station_code == station_code
