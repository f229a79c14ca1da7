"""Storage of awareness campaigns, runs and their delivery log (mixed into SQLStorage)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from domain.awareness import AwaitingTask, Campaign, GroupHistory, RunPlan, StoredCampaign
from domain.directory import ResidentGroup
from domain.models import OutboxMessage
from storage.engines import Session

# A group's delivery state in a run, from its outbox row and (customer groups) WeCom's send result.
_TARGET_STATE = """
    CASE
        WHEN o.state IN ('pending', 'sending') THEN 'pending'
        WHEN o.state = 'failed' THEN 'failed'
        WHEN t.confirm_state = 'awaiting' THEN 'awaiting_confirmation'
        WHEN t.confirm_state = 'failed' THEN 'failed'
        ELSE 'sent'
    END
"""


class AwarenessSQL:
    """Mixin for SQLStorage: uses its _transaction(), _read, _take_turns() and _insert_outbox()."""

    # -- residents' groups ------------------------------------------------------------------

    async def replace_resident_groups(self, groups: Sequence[ResidentGroup]) -> None:
        async with self._transaction() as db:
            await self._take_turns(db)
            await db.execute("DELETE FROM resident_groups")
            await db.executemany(
                "INSERT INTO resident_groups(code, name, station_code, channel, address, community, tags, owner,"
                " members) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [(g.code, g.name, g.station_code, g.channel, g.address, g.community,
                  json.dumps(g.tags, ensure_ascii=False), g.owner, json.dumps(g.members)) for g in groups],
            )

    async def resident_groups(self) -> list[ResidentGroup]:
        rows = await self._read.fetchall("SELECT * FROM resident_groups ORDER BY station_code, code")
        return [
            ResidentGroup(r["code"], r["name"], r["station_code"], r["channel"], r["address"], r["community"],
                          tuple(json.loads(r["tags"])), r["owner"], tuple(json.loads(r["members"])))
            for r in rows
        ]

    # -- campaigns --------------------------------------------------------------------------

    async def sync_config_campaigns(self, campaigns: Sequence[Campaign], now: float) -> None:
        """Make the config file's campaigns the stored ones, except where the API changed a campaign."""
        async with self._transaction() as db:
            await self._take_turns(db)
            names = [c.name for c in campaigns]
            kept = f" AND name NOT IN ({', '.join('?' for _ in names)})" if names else ""
            await db.execute(f"DELETE FROM awareness_campaigns WHERE source = 'config'{kept}", names)
            for campaign in campaigns:
                await self._upsert_campaign(db, campaign, "config", now, keep_api=True)

    async def save_campaign(self, campaign: Campaign, now: float, create: bool) -> bool:
        """Store an API change; False if `create` and the name exists, or not `create` and it does not."""
        async with self._transaction() as db:
            exists = await db.fetchone("SELECT 1 FROM awareness_campaigns WHERE name = ?", (campaign.name,))
            if bool(exists) == create:
                return False
            await self._upsert_campaign(db, campaign, "api", now, keep_api=False)
            return True

    @staticmethod
    async def _upsert_campaign(db: Session, campaign: Campaign, source: str, now: float,
                               keep_api: bool) -> None:
        row = await db.fetchone("SELECT source, definition, last_slot FROM awareness_campaigns WHERE name = ?",
                         (campaign.name,))
        definition = json.dumps(campaign.as_dict(), ensure_ascii=False, sort_keys=True)
        if row is None:
            # A new campaign counts its slots from now: nothing is run for times before it existed.
            await db.execute(
                "INSERT INTO awareness_campaigns(name, source, definition, last_slot, updated_at)"
                " VALUES (?, ?, ?, ?, ?)",
                (campaign.name, source, definition, now, now),
            )
            return
        if keep_api and row["source"] == "api":
            return
        was_enabled = json.loads(row["definition"]).get("enabled", True)
        # Re-enabling a campaign does not catch up on the slots it was disabled for.
        last_slot = now if campaign.enabled and not was_enabled else row["last_slot"]
        await db.execute(
            "UPDATE awareness_campaigns SET source = ?, definition = ?, last_slot = ?, updated_at = ? WHERE name = ?",
            (source, definition, last_slot, now, campaign.name),
        )

    async def campaigns(self) -> list[StoredCampaign]:
        rows = await self._read.fetchall("SELECT * FROM awareness_campaigns ORDER BY name")
        return [_stored(r) for r in rows]

    async def campaign(self, name: str) -> StoredCampaign | None:
        row = await self._read.fetchone("SELECT * FROM awareness_campaigns WHERE name = ?", (name,))
        return _stored(row) if row else None

    async def skip_slots(self, name: str, expected_last: float | None, new_last: float) -> bool:
        """Mark scheduled times as handled without running them (missed too long ago)."""
        async with self._transaction() as db:
            return await _advance(db, name, expected_last, new_last)

    # -- selection inputs -------------------------------------------------------------------

    async def fraud_type_counts(self, since: float) -> dict[str, list[tuple[str, int]]]:
        """Per station, the fraud types of its instructions received since `since`, most frequent first."""
        rows = await self._read.fetchall(
            "SELECT routed_station, fraud_type, COUNT(*) AS n FROM instructions"
            " WHERE received_at >= ? AND routed_station IS NOT NULL GROUP BY routed_station, fraud_type"
            " ORDER BY routed_station, n DESC, fraud_type",
            (since,),
        )
        counts: dict[str, list[tuple[str, int]]] = {}
        for r in rows:
            counts.setdefault(r[0], []).append((r[1], r[2]))
        return counts

    async def group_histories(self) -> dict[str, GroupHistory]:
        """What each group has been sent by any campaign; failed pushes do not count."""
        rows = await self._read.fetchall(
            "SELECT t.group_code, t.item_id, COUNT(*), MAX(r.created_at) FROM awareness_targets t"
            " JOIN awareness_runs r ON r.id = t.run_id JOIN outbox o ON o.id = t.outbox_id"
            " WHERE o.state != 'failed' AND (t.confirm_state IS NULL OR t.confirm_state != 'failed')"
            " GROUP BY t.group_code, t.item_id"
        )
        histories: dict[str, dict[str, tuple[int, float]]] = {}
        for group_code, item_id, times, last in rows:
            histories.setdefault(group_code, {})[item_id] = (times, last)
        return {code: GroupHistory(items) for code, items in histories.items()}

    # -- runs -------------------------------------------------------------------------------

    async def create_run(self, plan: RunPlan, now: float, expected_last: float | None = None) -> int | None:
        """Store a run, its outbox rows and targets in one transaction.

        A scheduled run also moves the campaign's last_slot from `expected_last` to its slot; if
        another tick (or process) got there first, nothing is written and None is returned.
        """
        c = plan.campaign
        async with self._transaction() as db:
            if plan.slot is not None and not await _advance(db, c.name, expected_last, plan.slot):
                return None
            run_id = await db.insert(
                "INSERT INTO awareness_runs(campaign, title, trigger, slot, created_at, definition)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (c.name, c.title, plan.trigger, plan.slot, now,
                 json.dumps(c.as_dict(), ensure_ascii=False, sort_keys=True)),
            )
            targets = {t.group.code: t for t in plan.targets}
            rows = []
            for push in plan.pushes:
                outbox_id = await self._insert_one_outbox(db, None, push.message, now)
                for code in push.groups:
                    t = targets[code]
                    g = t.group
                    rows.append((run_id, g.code, g.name, g.station_code, g.channel, g.address, t.item.id,
                                 t.item.fraud_type, t.reason, outbox_id,
                                 "awaiting" if g.channel == "customer_group" else None))
            await db.executemany(
                "INSERT INTO awareness_targets(run_id, group_code, group_name, station_code, channel, address,"
                " item_id, fraud_type, reason, outbox_id, confirm_state) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                rows,
            )
            return run_id

    async def runs(self, campaign: str, limit: int = 10) -> list[dict[str, Any]]:
        rows = await self._read.fetchall(
            "SELECT * FROM awareness_runs WHERE campaign = ? ORDER BY id DESC LIMIT ?", (campaign, limit)
        )
        return [await self._run_summary(r) for r in rows]

    async def run(self, run_id: int) -> dict[str, Any] | None:
        row = await self._read.fetchone("SELECT * FROM awareness_runs WHERE id = ?", (run_id,))
        return await self._run_summary(row) if row else None

    async def _run_summary(self, r: Any) -> dict[str, Any]:
        counts = await self._read.fetchall(
            f"SELECT {_TARGET_STATE} AS delivery, COUNT(*) FROM awareness_targets t"
            " JOIN outbox o ON o.id = t.outbox_id WHERE t.run_id = ? GROUP BY delivery",
            (r["id"],),
        )
        progress = {"sent": 0, "awaiting_confirmation": 0, "pending": 0, "failed": 0}
        progress.update({state: n for state, n in counts})
        return {
            "id": r["id"], "campaign": r["campaign"], "title": r["title"], "trigger": r["trigger"],
            "slot": r["slot"], "created_at": r["created_at"], "finished_at": r["finished_at"],
            "groups": sum(progress.values()), "progress": progress,
        }

    async def delivery_log(self, run_id: int) -> list[dict[str, Any]]:
        """Per group of a run: item, why it was chosen, state and the reason for a failure or a wait."""
        rows = await self._read.fetchall(
            f"SELECT t.*, {_TARGET_STATE} AS delivery, o.id AS outbox_id, o.attempts, o.last_error, o.sent_at,"
            " o.next_attempt_at, o.channel AS outbox_channel FROM awareness_targets t"
            " JOIN outbox o ON o.id = t.outbox_id WHERE t.run_id = ? ORDER BY t.station_code, t.group_code",
            (run_id,),
        )
        return [
            {
                "group": r["group_code"], "group_name": r["group_name"], "station": r["station_code"],
                "channel": r["channel"], "item": r["item_id"], "fraud_type": r["fraud_type"], "reason": r["reason"],
                "state": r["delivery"], "outbox_id": r["outbox_id"], "attempts": r["attempts"],
                "sent_at": r["confirmed_at"] if r["channel"] == "customer_group" else r["sent_at"],
                "task_created_at": r["sent_at"] if r["channel"] == "customer_group" else None,
                "next_attempt_at": r["next_attempt_at"] if r["delivery"] == "pending" else None,
                "error": r["confirm_note"] or r["last_error"],
            }
            for r in rows
        ]

    async def open_runs(self) -> list[int]:
        rows = await self._read.fetchall("SELECT id FROM awareness_runs WHERE finished_at IS NULL ORDER BY id")
        return [r[0] for r in rows]

    async def finish_run(self, run_id: int, now: float, report: Sequence[OutboxMessage]) -> bool:
        """Close a run with nothing left pending, enqueueing its failure report in the same transaction."""
        async with self._transaction() as db:
            pending = await db.fetchval(
                "SELECT COUNT(*) FROM awareness_targets t JOIN outbox o ON o.id = t.outbox_id WHERE t.run_id = ?"
                " AND (o.state IN ('pending', 'sending') OR (o.state = 'sent' AND t.confirm_state = 'awaiting'))",
                (run_id,),
            )
            if pending:
                return False
            finished = await db.execute(
                "UPDATE awareness_runs SET finished_at = ?, failed = (SELECT COUNT(*) FROM awareness_targets t"
                " JOIN outbox o ON o.id = t.outbox_id WHERE t.run_id = ? AND (o.state = 'failed'"
                " OR t.confirm_state = 'failed')) WHERE id = ? AND finished_at IS NULL",
                (now, run_id, run_id),
            )
            if finished and report:
                await self._insert_outbox(db, None, report, now)
            return bool(finished)

    # -- customer-group confirmations -------------------------------------------------------

    async def awaiting_tasks(self) -> list[AwaitingTask]:
        rows = await self._read.fetchall(
            "SELECT o.id, o.msgid, o.address, o.sent_at, t.address AS chat_id, t.run_id, t.group_code"
            " FROM awareness_targets t JOIN outbox o ON o.id = t.outbox_id"
            " WHERE t.confirm_state = 'awaiting' AND o.state = 'sent' ORDER BY o.id"
        )
        tasks: dict[int, AwaitingTask] = {}
        for r in rows:
            task = tasks.setdefault(r[0], AwaitingTask(r[0], r[1] or "", r[2], r[3], {}))
            task.chats[r["chat_id"]] = (r["run_id"], r["group_code"])
        return list(tasks.values())

    async def record_confirmations(self, updates: Sequence[tuple[int, str, str, float, str | None]]) -> None:
        """(run id, group code, 'sent' | 'failed', when, note) for customer groups still awaiting."""
        if not updates:
            return
        async with self._transaction() as db:
            await db.executemany(
                "UPDATE awareness_targets SET confirm_state = ?, confirmed_at = ?, confirm_note = ?"
                " WHERE run_id = ? AND group_code = ? AND confirm_state = 'awaiting'",
                [(state, at, note, run_id, code) for run_id, code, state, at, note in updates],
            )


async def _advance(db: Session, name: str, expected_last: float | None, new_last: float) -> bool:
    changed = await db.execute(
        "UPDATE awareness_campaigns SET last_slot = ? WHERE name = ? AND last_slot IS NOT DISTINCT FROM ?",
        (new_last, name, expected_last),
    )
    return changed == 1


def _stored(r: Any) -> StoredCampaign:
    return StoredCampaign(Campaign.from_dict(json.loads(r["definition"])), r["source"], r["last_slot"], r["updated_at"])
