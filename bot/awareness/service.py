"""The awareness service: finds due campaigns, makes runs, follows customer-group tasks, closes runs.

APScheduler only calls tick() now and then. What is due comes from the database and the app's
clock: each campaign stores the last scheduled time it handled, and a run is written in the same
transaction that moves it (bot/awareness/schedule.py says what happens to missed times). Each push
is an outbox row (purpose "awareness", below every alert in priority), so the delivery worker
sends it with its retries, WeCom's limits and crash safety. A run's failures are reported once,
when nothing of it is pending any more.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from aiohttp import web

from bot.awareness.library import load_library
from bot.awareness.planning import describe_slot, plan_run
from bot.awareness.schedule import due
from bot.awareness.settings import campaign_trigger
from bot.config import Settings
from bot.dispatch import DispatchPlanner
from bot.render import Renderer
from bot.wecom import WeComClient, WeComError
from domain.awareness import AWARENESS_PRIORITY, AwaitingTask, Campaign, Library, RunPlan, StoredCampaign
from domain.directory import ResidentGroup
from domain.models import OutboxMessage
from storage import Storage

_LOGGER = logging.getLogger(__name__)
_REPORTED_GROUPS = 10  # failed groups named in a run's failure report; the rest are counted
# get_groupmsg_send_result status for customer groups.
_SEND_STATUS = {
    1: ("sent", None),
    2: ("failed", "企业微信：群已解散或员工已不在群中，发送失败"),
    3: ("failed", "企业微信：该群本月已达群发次数上限，未送达"),
}


class AwarenessService:
    """Campaign runs for one app; all state is in the database."""



    def __init__(self, settings: Settings, storage: Storage, wecom: WeComClient | None, renderer: Renderer,
                 planner: Callable[[], DispatchPlanner], clock: Callable[[], float], wake: Callable[[], None],
                 library: Library | None = None) -> None:
        self.settings = settings.awareness
        self._agent_id = settings.wecom.agent_id
        self._storage = storage
        self._wecom = wecom
        self._renderer = renderer
        self._planner = planner
        self._clock = clock
        self._wake = wake
        self.library = library or load_library(self.settings.library)
        self._lock = asyncio.Lock()

    async def start(self, groups: list[ResidentGroup]) -> None:
        """Import the directory's residents' groups and the config file's campaigns."""
        await self._storage.replace_resident_groups(groups)
        await self._storage.sync_config_campaigns(self.settings.campaigns, self._clock())

    async def tick(self) -> None:
        """One look: run what is due, follow customer-group tasks, close finished runs."""
        async with self._lock:
            await self._run_due()
            await self._follow_tasks()
            await self._close_runs()

    # -- runs ---------------------------------------------------------------------------------

    async def plan(self, campaign: Campaign, trigger: str = "manual", slot: float | None = None) -> RunPlan:
        """What a run would send now, to whom and why (a dry run writes nothing)."""
        now = self._clock()
        trends = {}
        if campaign.selection == "trend":
            trends = await self._storage.fraud_type_counts(now - campaign.trend_days * 86400)
        directory = self._planner().directory
        return plan_run(campaign, trigger, slot, await self._storage.resident_groups(), self.library,
                        await self._storage.group_histories(), trends, self._renderer,
                        {code: s.name for code, s in directory.stations.items()}, self._agent_id)

    async def run_now(self, name: str) -> int | None:
        """Run a campaign by hand, now, whatever its schedule; None if there is no such campaign."""
        stored = await self._storage.campaign(name)
        if stored is None:
            return None
        async with self._lock:
            plan = await self.plan(stored.campaign)
            run_id = await self._storage.create_run(plan, self._clock())
        self._log_run(run_id, plan)
        self._wake()
        return run_id

    async def _run_due(self) -> None:
        now = self._clock()
        for stored in await self._storage.campaigns():
            c = stored.campaign
            trigger = campaign_trigger(c)
            if not c.enabled or trigger is None:
                continue
            if stored.last_slot is None:
                await self._storage.skip_slots(c.name, None, now)
                continue
            decision = due(trigger, stored.last_slot, now, self.settings.grace)
            if decision is None:
                continue
            if decision.skipped:
                _LOGGER.warning("campaign %s: %d scheduled times missed (the bot was down or late) are skipped",
                                c.name, decision.skipped, extra={"campaign": c.name, "last": decision.last})
            if decision.run is None:
                await self._storage.skip_slots(c.name, stored.last_slot, decision.last)
                continue
            plan = await self.plan(c, "schedule", decision.run)
            run_id = await self._storage.create_run(plan, now, stored.last_slot)
            if run_id is None:
                _LOGGER.info("campaign %s slot %s was run by another tick", c.name, describe_slot(decision.run))
                continue
            self._log_run(run_id, plan)
            self._wake()

    @staticmethod
    def _log_run(run_id: int | None, plan: RunPlan) -> None:
        _LOGGER.info("awareness run created", extra={
            "run_id": run_id, "campaign": plan.campaign.name, "trigger": plan.trigger,
            "slot": describe_slot(plan.slot), "groups": len(plan.targets), "calls": len(plan.pushes),
            "left_out": len(plan.left_out),
        })

    # -- customer-group tasks -----------------------------------------------------------------

    async def _follow_tasks(self) -> None:
        now = self._clock()
        updates: list[tuple[int, str, str, float, str | None]] = []
        for task in await self._storage.awaiting_tasks():
            if now - task.sent_at > self.settings.confirm_timeout:
                hours = round(self.settings.confirm_timeout / 3600)
                note = f"员工 {task.sender} 超过{hours}小时未在企业微信确认群发，未送达"
                updates += [(run_id, code, "failed", now, note) for run_id, code in task.chats.values()]
                continue
            try:
                results = await self._send_results(task)
            except WeComError as err:
                _LOGGER.warning("could not read a customer-group task's result; asking again later",
                                extra={"outbox_id": task.outbox_id, "error": str(err)})
                continue
            for chat_id, (run_id, code) in task.chats.items():
                status, send_time = results.get(chat_id, (None, 0))
                if status is None and results:
                    updates.append((run_id, code, "failed", now, "企业微信未为该群创建群发任务（fail_list）"))
                elif status in _SEND_STATUS:
                    state, note = _SEND_STATUS[status]
                    updates.append((run_id, code, state, float(send_time or now), note))
        await self._storage.record_confirmations(updates)

    async def _send_results(self, task: AwaitingTask) -> dict[str, tuple[int, int]]:
        """chat_id → (status, send_time) from WeCom, all pages."""
        results: dict[str, tuple[int, int]] = {}
        if self._wecom is None:
            return results
        cursor = ""
        while True:
            page = await self._wecom.groupmsg_send_result(task.msgid, task.sender, cursor)
            for entry in page.get("send_list", []):
                if entry.get("chat_id"):
                    results[entry["chat_id"]] = (int(entry.get("status", 0)), int(entry.get("send_time") or 0))
            cursor = page.get("next_cursor") or ""
            if not cursor:
                return results

    # -- closing runs -------------------------------------------------------------------------

    async def _close_runs(self) -> None:
        open_runs = await self._storage.open_runs()
        if open_runs:
            # Rows written by another process (the CLI) or made due by a clock jump: let the worker look.
            self._wake()
        for run_id in open_runs:
            run = await self._storage.run(run_id)
            if run is None or run["progress"]["pending"] or run["progress"]["awaiting_confirmation"]:
                continue
            failed = [e for e in await self._storage.delivery_log(run_id) if e["state"] == "failed"]
            report = self._failure_report(run, failed)
            if await self._storage.finish_run(run_id, self._clock(), report):
                _LOGGER.info("awareness run finished", extra={"run_id": run_id, **run["progress"]})
                if report:
                    self._wake()

    def _failure_report(self, run: dict[str, Any], failed: list[dict[str, Any]]) -> list[OutboxMessage]:
        if not failed:
            return []
        planner = self._planner()
        directory = planner.directory
        group = directory.group(directory.fallback_group)
        if group is None:
            _LOGGER.error("no center fallback group to report %d failed awareness pushes of run %d",
                          len(failed), run["id"])
            return []
        groups = [{"group_name": e["group_name"], "reason": e["error"] or "未知原因"} for e in failed]
        content = self._renderer.macro("awareness/push.j2", "failure_report", run=run, failed=len(failed),
                                       total=run["groups"], groups=groups[:_REPORTED_GROUPS])
        return [planner.group_markdown(group, content, "failure_notice", AWARENESS_PRIORITY)]

    # -- views --------------------------------------------------------------------------------

    async def campaigns(self) -> list[StoredCampaign]:
        return await self._storage.campaigns()


AWARENESS = web.AppKey("awareness", AwarenessService)
