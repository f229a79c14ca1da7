"""`python bot.py campaign list|preview NAME|run NAME --config config.toml`.

Works on the database directly, so it needs no running bot: a run written here is picked up by the
bot's next awareness look (or at its next start), like any other outbox row.
"""

from __future__ import annotations

import asyncio
import time

from bot.awareness.service import AwarenessService
from bot.awareness.views import campaign_view, preview_view
from bot.config import Settings, load_settings
from bot.directory import load_directory_file
from bot.dispatch import DispatchPlanner
from bot.render import Renderer
from storage import Storage, open_storage


def main(action: str, name: str | None, config_path: str) -> int:
    settings = load_settings(config_path)
    if action != "list" and not name:
        print(f"error: campaign {action} needs a campaign name (see: campaign list)")
        return 2
    return asyncio.run(_main(settings, action, name or ""))


async def _main(settings: Settings, action: str, name: str) -> int:
    directory = load_directory_file(settings.directory.path)
    storage: Storage = await open_storage(settings.database)
    try:
        renderer = Renderer()
        planner = DispatchPlanner(directory, renderer, settings.wecom.agent_id, "cli")
        service = AwarenessService(settings, storage, None, renderer, lambda: planner, time.time, lambda: None)
        await service.start(list(directory.resident_groups.values()))
        if action == "list":
            _print_list(await storage.campaigns())
            return 0
        stored = await storage.campaign(name)
        if stored is None:
            print(f"error: no campaign named {name!r} (see: campaign list)")
            return 1
        if action == "preview":
            _print_preview(preview_view(await service.plan(stored.campaign)))
            return 0
        run_id = await service.run_now(name)
        run = await storage.run(run_id)
        print(f"run #{run_id} of {name}: {run['groups']} groups queued; the running bot sends them at its next "
              f"awareness look (every {settings.awareness.check_interval:g} s) or when it starts")
        return 0
    finally:
        await storage.close()


def _print_list(stored: list) -> None:
    if not stored:
        print("no campaigns (define [[awareness.campaigns]] in the config, or POST /api/v1/campaigns)")
        return
    now = time.time()
    for s in stored:
        v = campaign_view(s, now)
        state = "enabled" if v["enabled"] else "disabled"
        print(f"{v['name']:<24} {state:<8} {v['source']:<6} {v['schedule'] or '(by hand)':<16} "
              f"{v['selection']:<8} next {v['next_run'] or '-':<25} {v['title']}")


def _print_preview(preview: dict) -> None:
    print(f"dry run of {preview['campaign']}: {preview['groups']} groups, {preview['calls']} WeCom calls; "
          "nothing is sent")
    for t in preview["targets"]:
        print(f"\n[{t['station']}] {t['group_name']} ({t['group']}, {t['channel']})")
        print(f"  item   {t['item']} {t['title']} ({t['fraud_type']})")
        print(f"  why    {t['reason']}")
        print("  text   " + t["content"].replace("\n", "\n         "))
    for left in preview["left_out"]:
        print(f"\nleft out {left['group']}: {left['reason']}")
