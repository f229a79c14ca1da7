"""`bot.py roster import|show`: a station's duty roster from the command line, also while the bot runs.

The import writes to the database the bot uses; the running bot picks the new roster up at its next
deadline sweep (within `escalation.sweep_interval` seconds).
"""

from __future__ import annotations

import json
import time

from bot.config import load_settings
from bot.directory import load_directory_file
from bot.roster import RosterError, parse_roster_csv, summarise
from domain.roster import RosterBook
from storage import open_storage


async def import_file(config_path: str, data: bytes, csv_path: str) -> int:
    settings = load_settings(config_path)
    directory = load_directory_file(settings.directory.path)
    try:
        shifts = parse_roster_csv(data, directory)
    except RosterError as err:
        print(f"值班表有误，未导入任何班次（{csv_path}）：")
        for problem in err.problems:
            print(f"  {problem}")
        return 1
    storage = await open_storage(settings.database)
    try:
        await storage.replace_shifts(shifts, time.time())
        book = RosterBook(await storage.load_shifts(), directory)
    finally:
        await storage.close()
    summary = summarise(shifts, book)
    print(f"已导入 {summary['imported']} 个班次：{'、'.join(summary['stations'])}，"
          f"{summary['from']} 至 {summary['to']}")
    for gap in summary["gaps"]:
        print(f"  注意：{gap['station']} {gap['from']} 至 {gap['to']} 无人值班")
    return 0


async def show(config_path: str, as_json: bool) -> int:
    settings = load_settings(config_path)
    directory = load_directory_file(settings.directory.path)
    storage = await open_storage(settings.database)
    try:
        book = RosterBook(await storage.load_shifts(), directory)
    finally:
        await storage.close()
    now = time.time()
    rows = []
    for code, station in directory.stations.items():
        duty = book.on_duty(code, now)
        officer = directory.people.get(duty.officer or "")
        rows.append({"station": code, "name": station.name, "officer": duty.officer,
                     "officer_name": officer.name if officer else None, "source": duty.source,
                     "gaps_next_24h": len(book.gaps(code, now, now + 86400))})
    if as_json:
        print(json.dumps(rows, ensure_ascii=False, indent=2))
        return 0
    sources = {"roster": "值班表", "directory": "通讯录默认", "fallback": "值班表空档，由通讯录默认顶班"}
    for r in rows:
        print(f"{r['name']}（{r['station']}）：{r['officer_name'] or '无人'} · {sources[r['source']]}"
              + (f" · 未来24小时有 {r['gaps_next_24h']} 处空档" if r["gaps_next_24h"] else ""))
    return 0
