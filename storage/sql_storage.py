"""The storage of instructions, deadlines, callbacks and the outbox, in SQL both backends run.

With SQLite, writes that arrive while one is being committed are committed together in the next
transaction (group commit, storage/engines.py), so one fsync covers many of them.
Subclasses choose the engine: storage/sqlite.py (the embedded default) and storage/postgres.py.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import socket
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

from domain.cards import CARD_PURPOSES, CODE_MARGIN, CODE_TTL, UPDATE_PURPOSE, CardUpdate, ClickCode, StoredCard
from domain.directory import ChatGroup, Directory, Grid, Person, Station
from domain.lifecycle import OPEN_STATES
from domain.models import (
    ACTION_FIELDS,
    AcceptResult,
    ActionWrite,
    Assignment,
    AuditEvent,
    Deadline,
    Instruction,
    NewAssignment,
    NewDeadline,
    NewInstruction,
    OutboxMessage,
    OutboxRow,
    Settlement,
    Target,
    Timer,
)
from domain.roster import Shift
from storage.awareness_sql import AwarenessSQL
from storage.base import DispatchPlanner
from storage.engines import Engine, Reader, Session
from storage.reports_sql import ReportsSQL

_LOGGER = logging.getLogger(__name__)

_INSTRUCTION_COLUMNS = (
    "id, instruction_no, issued_at, received_at, warning_type, fraud_type, risk_level, target_name, "
    "target_phone, target_id_number, target_address, target_age, station_code, grid_code, routed_station, "
    "routed_grid, needs_assignment, summary, amount_at_risk, state, delivery_failed, "
    + ", ".join(sorted(ACTION_FIELDS))
)
_OUTBOX_COLUMNS = (
    "id, instruction_id, purpose, channel, address, label, body, rate_keys, priority, state, attempts, "
    "created_at, task_id"
)
_DEADLINE_COLUMNS = "id, instruction_id, stage, milestone, due_at, state, settled_at, settled_by"
_TIMER_COLUMNS = "id, deadline_id, instruction_id, step, notify, fire_at, state, fired_at"
# Rows the instruction counts as "dispatched" by: the station's notice and the personal cards.
_DISPATCH_PURPOSES = ("station_notice", "assignee_card")


class SQLStorage(AwarenessSQL, ReportsSQL):
    """Everything Quanzu stores, over an Engine (storage/engines.py): SQLite or PostgreSQL."""

    def __init__(self) -> None:
        self._engine: Engine | None = None
        self.instance_id = f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"

    async def open(self) -> None:
        self._engine = await self._connect()
        async with self._transaction() as tx:
            await tx.execute(
                "INSERT INTO meta(key, value) VALUES ('instance_salt', ?) ON CONFLICT (key) DO NOTHING",
                (secrets.token_hex(3),),
            )

    async def _connect(self) -> Engine:
        raise NotImplementedError

    async def close(self) -> None:
        if self._engine is not None:
            await self._engine.close()
        self._engine = None

    @property
    def engine(self) -> Engine:
        if self._engine is None:
            raise RuntimeError("storage is not open")
        return self._engine

    @property
    def _read(self) -> Reader:
        """Committed data only."""
        return self.engine.read

    def _transaction(self, durable: bool = True):
        return self.engine.transaction(durable)

    @staticmethod
    async def _take_turns(db: Session) -> None:
        """Wait for any other instance rewriting what every instance writes at start (the directory,
        residents' groups, the config's campaigns): the lock on this row, held to the end of the
        transaction, makes them take turns on PostgreSQL, so the second replaces what the first wrote
        instead of colliding with it."""
        await db.execute("UPDATE meta SET value = value WHERE key = 'instance_salt'")

    async def _lock_instruction(self, db: Session, instruction_id: int) -> None:
        """Make writers of this instruction's deliveries take turns until commit, so that the last of
        them sees the others' and says so (with SQLite one writer at a time already does)."""

    async def _after_explicit_ids(self, db: Session, table: str) -> None:
        """Rows went into `table` with their ids given: let the next generated id follow them."""

    async def meta(self, key: str) -> str | None:
        return await self._read.fetchval("SELECT value FROM meta WHERE key = ?", (key,))

    # -- directory -------------------------------------------------------------------------

    async def replace_directory(self, directory: Directory) -> None:
        async with self._transaction() as db:
            await self._take_turns(db)
            # Stations and grids stay referenced by old instructions only by code, so they can be rewritten:
            # children are deleted first and parents inserted first, so each foreign key holds throughout.
            for table in ("people", "grids", "stations", "chat_groups"):
                await db.execute(f"DELETE FROM {table}")
            await db.executemany(
                "INSERT INTO chat_groups(code, name, kind, address, members) VALUES (?, ?, ?, ?, ?)",
                [(g.code, g.name, g.kind, g.address, json.dumps(g.members)) for g in directory.groups.values()],
            )
            await db.executemany(
                "INSERT INTO stations(code, name, group_code, leader, duty_officer) VALUES (?, ?, ?, ?, ?)",
                [(s.code, s.name, s.group_code, s.leader, s.duty_officer) for s in directory.stations.values()],
            )
            await db.executemany(
                "INSERT INTO grids(code, name, station_code) VALUES (?, ?, ?)",
                [(g.code, g.name, g.station_code) for g in directory.grids.values()],
            )
            await db.executemany(
                "INSERT INTO people(userid, name, role, station_code, grid_code, mobile) VALUES (?, ?, ?, ?, ?, ?)",
                [(p.userid, p.name, p.role, p.station_code, p.grid_code, p.mobile) for p in directory.people.values()],
            )
            await db.executemany(
                "INSERT INTO meta(key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                [("center_name", directory.center_name), ("fallback_group", directory.fallback_group or "")],
            )

    async def load_directory(self) -> Directory:
        db = self._read
        groups = {
            r["code"]: ChatGroup(r["code"], r["name"], r["kind"], r["address"], tuple(json.loads(r["members"])))
            for r in await db.fetchall("SELECT * FROM chat_groups")
        }
        stations = {
            r["code"]: Station(r["code"], r["name"], r["group_code"], r["leader"], r["duty_officer"])
            for r in await db.fetchall("SELECT * FROM stations")
        }
        grids = {
            r["code"]: Grid(r["code"], r["name"], r["station_code"])
            for r in await db.fetchall("SELECT * FROM grids")
        }
        people = {
            r["userid"]: Person(r["userid"], r["name"], r["role"], r["station_code"], r["grid_code"], r["mobile"])
            for r in await db.fetchall("SELECT * FROM people")
        }
        return Directory(
            center_name=await self.meta("center_name") or "反诈中心",
            fallback_group=await self.meta("fallback_group") or None,
            stations=stations,
            grids=grids,
            people=people,
            groups=groups,
        )

    # -- instructions ----------------------------------------------------------------------

    async def accept_instructions(
        self,
        items: Sequence[NewInstruction],
        route: Callable[[NewInstruction], dict[str, Any]],
        plan: DispatchPlanner,
        now: float,
    ) -> list[AcceptResult]:
        """Store new instructions with their outbox rows and audit events, durably, before returning."""
        try:
            async with self._transaction() as db:
                return [await self._accept_one(db, item, route, plan, now) for item in items]
        except Exception as err:
            _LOGGER.exception("storing an intake request failed")
            raise RuntimeError("指令未能写入数据库，请稍后重试") from err

    async def _accept_one(self, db: Session, item: NewInstruction, route: Callable[[NewInstruction], dict[str, Any]],
                          plan: DispatchPlanner, now: float) -> AcceptResult:
        existing = "SELECT id, state FROM instructions WHERE instruction_no = ?"
        row = await db.fetchone(existing, (item.instruction_no,))
        if row is not None:
            return AcceptResult(row["id"], item.instruction_no, created=False, state=row["state"])
        routing = route(item)
        t = item.target
        instruction_id = await db.insert(
            "INSERT INTO instructions(instruction_no, issued_at, received_at, warning_type, fraud_type, risk_level,"
            " target_name, target_phone, target_id_number, target_address, target_age, station_code, grid_code,"
            " routed_station, routed_grid, needs_assignment, summary, amount_at_risk, state, raw)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'received', ?)"
            " ON CONFLICT (instruction_no) DO NOTHING",
            (
                item.instruction_no, item.issued_at, now, item.warning_type, item.fraud_type, item.risk_level,
                t.name, t.phone, t.id_number, t.address, t.age, item.station_code, item.grid_code,
                routing["routed_station"], routing["routed_grid"], int(routing["needs_assignment"]),
                item.summary, item.amount_at_risk, json.dumps(item.raw, ensure_ascii=False),
            ),
        )
        if instruction_id is None:  # another instance stored the same number a moment ago
            row = await db.fetchone(existing, (item.instruction_no,))
            return AcceptResult(row["id"], item.instruction_no, created=False, state=row["state"])
        instruction = Instruction(
            id=instruction_id, instruction_no=item.instruction_no, issued_at=item.issued_at, received_at=now,
            warning_type=item.warning_type, fraud_type=item.fraud_type, risk_level=item.risk_level, target=t,
            station_code=item.station_code, grid_code=item.grid_code, routed_station=routing["routed_station"],
            routed_grid=routing["routed_grid"], needs_assignment=bool(routing["needs_assignment"]),
            summary=item.summary, amount_at_risk=item.amount_at_risk, state="received", delivery_failed=False,
        )
        dispatch = plan(instruction)
        await self._insert_events(db, instruction_id, dispatch.events, now)
        claimed = await self._insert_claimed(db, instruction_id, dispatch.messages, now)
        await self._assign(db, instruction_id, dispatch.assignees, now)
        await self._insert_deadlines(db, instruction_id, dispatch.deadlines)
        return AcceptResult(instruction_id, item.instruction_no, created=True, state="received", outbox=claimed)

    async def get_instruction(self, instruction_id: int) -> Instruction | None:
        row = await self._read.fetchone(
            f"SELECT {_INSTRUCTION_COLUMNS} FROM instructions WHERE id = ?", (instruction_id,)
        )
        return _instruction(row) if row else None

    async def timeline(self, instruction_id: int) -> list[dict[str, Any]]:
        rows = await self._read.fetchall(
            "SELECT at, actor, channel, action, from_state, to_state, detail FROM events"
            " WHERE instruction_id = ? ORDER BY id",
            (instruction_id,),
        )
        return [{**dict(r), "detail": json.loads(r["detail"])} for r in rows]

    async def deliveries(self, instruction_id: int) -> list[dict[str, Any]]:
        rows = await self._read.fetchall(
            "SELECT id, purpose, channel, label, state, attempts, created_at, sent_at, last_error FROM outbox"
            " WHERE instruction_id = ? ORDER BY id",
            (instruction_id,),
        )
        return [dict(r) for r in rows]

    async def apply_action(self, write: ActionWrite, now: float, card_updates: Sequence[CardUpdate] = ()) -> bool:
        """Write one action if the instruction is still in write.from_state; False if it moved meanwhile.

        With it, the updates of the cards it changes, each queued only if a code of its card can be claimed."""
        unknown = set(write.fields) - ACTION_FIELDS
        if unknown:
            raise ValueError(f"not an action field: {sorted(unknown)}")
        assignments = ", ".join(f"{column} = ?" for column in write.fields)
        async with self._transaction() as db:
            changed = await db.execute(
                f"UPDATE instructions SET state = ?{', ' + assignments if assignments else ''}"
                " WHERE id = ? AND state = ?",
                (write.to_state, *write.fields.values(), write.instruction_id, write.from_state),
            )
            if changed == 0:
                return False
            if write.ack_user:
                acked = await db.execute(
                    "UPDATE assignments SET acked_at = COALESCE(acked_at, ?)"
                    " WHERE instruction_id = ? AND userid = ? AND active = 1",
                    (now, write.instruction_id, write.ack_user),
                )
                if acked == 0:  # signed by someone of the station who was not assigned
                    await db.execute(
                        "INSERT INTO assignments(instruction_id, userid, role_label, assigned_at, acked_at, stage)"
                        " VALUES (?, ?, '签收人', ?, ?, ?)",
                        (write.instruction_id, write.ack_user, now, now, write.ack_stage),
                    )
            await db.executemany(
                "UPDATE assignments SET active = 0 WHERE instruction_id = ? AND userid = ?",
                [(write.instruction_id, u) for u in write.unassign],
            )
            await self._assign(db, write.instruction_id, write.assign, now)
            actor = write.events[0].actor if write.events else None
            for settlement in write.settle:
                await self._settle(db, write.instruction_id, settlement, actor, now)
            await self._insert_deadlines(db, write.instruction_id, write.deadlines)
            await self._insert_events(db, write.instruction_id, write.events, now)
            await self._insert_outbox(db, write.instruction_id, write.messages, now)
            await self._insert_card_updates(db, card_updates, now)
            return True

    async def assignments(self, instruction_id: int) -> list[Assignment]:
        rows = await self._read.fetchall(
            "SELECT instruction_id, userid, role_label, assigned_at, acked_at, active, stage FROM assignments"
            " WHERE instruction_id = ? ORDER BY id",
            (instruction_id,),
        )
        return [Assignment(r[0], r[1], r[2], r[3], r[4], bool(r[5]), r[6]) for r in rows]

    async def deadlines(self, instruction_id: int) -> list[Deadline]:
        rows = await self._read.fetchall(
            f"SELECT {_DEADLINE_COLUMNS} FROM deadlines WHERE instruction_id = ? ORDER BY due_at, id", (instruction_id,)
        )
        return [Deadline(*r) for r in rows]

    async def timers(self, instruction_id: int) -> list[Timer]:
        """Every step of the instruction's ladders: those written as timers, and those still waiting in
        their deadline row (pending while it is open, cancelled once it was settled)."""
        db = self._read
        rows = await db.fetchall(f"SELECT {_TIMER_COLUMNS} FROM timers WHERE instruction_id = ?", (instruction_id,))
        timers = [Timer(*r) for r in rows]
        for deadline_id, state, ladder in await db.fetchall(
            "SELECT id, state, ladder FROM deadlines WHERE instruction_id = ? AND ladder != '[]'", (instruction_id,)
        ):
            timers += [Timer(None, deadline_id, instruction_id, step, notify, fire_at,
                             "pending" if state == "open" else "cancelled", None)
                       for step, notify, fire_at in json.loads(ladder)]
        return sorted(timers, key=lambda t: (t.fire_at, t.id is None, t.id or 0))

    async def open_tasks(self, userid: str) -> list[Instruction]:
        rows = await self._read.fetchall(
            f"SELECT {_INSTRUCTION_COLUMNS} FROM instructions"
            " WHERE id IN (SELECT instruction_id FROM assignments WHERE userid = ? AND active = 1)"
            f" AND state IN {OPEN_STATES!r} ORDER BY received_at, id",
            (userid,),
        )
        return [_instruction(r) for r in rows]

    # -- cards that stay true (bot/cards.py) -------------------------------------------------

    async def instruction_cards(self, instruction_id: int, now: float) -> list[StoredCard]:
        """The interaction cards sent for an instruction, with their last update's status and the codes left."""
        cards = await self._read.fetchall(
            "SELECT task_id, address, purpose, body FROM outbox WHERE instruction_id = ? AND state = 'sent'"
            f" AND task_id IS NOT NULL AND purpose IN {CARD_PURPOSES!r} ORDER BY id",
            (instruction_id,),
        )
        if not cards:
            return []
        usable: dict[str, int] = {}
        shows: dict[str, tuple[int, str]] = {}
        for task_id, used_at, outbox_id, status, issued_at in await self._read.fetchall(
            "SELECT task_id, used_at, outbox_id, shows, issued_at FROM card_codes WHERE instruction_id = ?",
            (instruction_id,),
        ):
            if used_at is None and issued_at > now - CODE_TTL + CODE_MARGIN:
                usable[task_id] = usable.get(task_id, 0) + 1
            elif status is not None and outbox_id is not None and outbox_id > shows.get(task_id, (0, ""))[0]:
                shows[task_id] = (outbox_id, status)
        return [
            StoredCard(task_id, address, purpose, json.loads(body)["template_card"],
                       shows[task_id][1] if task_id in shows else None, usable.get(task_id, 0))
            for task_id, address, purpose, body in cards
        ]

    async def enqueue_card_updates(self, updates: Sequence[CardUpdate], now: float) -> int:
        """Queue card updates outside an action (a 刷新 click); how many found a code."""
        async with self._transaction() as db:
            return await self._insert_card_updates(db, updates, now)

    async def _insert_card_updates(self, db: Session, updates: Sequence[CardUpdate], now: float) -> int:
        """Each update claims a code of its card (its preferred one if still good, else the oldest good one)
        and is queued with it; one whose card has no code left is not queued.

        An update of the same card still waiting in the queue is superseded (each carries the whole card): it
        is removed and its code given back, and the new one goes no earlier than it would have, so that a
        card never shows an older state after a newer."""
        queued = 0
        for update in updates:
            waiting = await db.fetchall(
                "DELETE FROM outbox WHERE instruction_id = ? AND task_id = ? AND purpose = ? AND state = 'pending'"
                " RETURNING id, next_attempt_at", (update.instruction_id, update.task_id, UPDATE_PURPOSE),
            )
            due = max([now, *(at for _, at in waiting)])
            await db.executemany("UPDATE card_codes SET used_at = NULL, outbox_id = NULL, shows = NULL"
                                 " WHERE outbox_id = ?", [(row_id,) for row_id, _ in waiting])
            code = await db.fetchval(
                "UPDATE card_codes SET used_at = ?, shows = ? WHERE code = (SELECT code FROM card_codes"
                " WHERE task_id = ? AND instruction_id = ? AND used_at IS NULL AND issued_at > ?"
                " ORDER BY CASE WHEN code = ? THEN 0 ELSE 1 END, issued_at LIMIT 1) AND used_at IS NULL"
                " RETURNING code",
                (now, update.shows, update.task_id, update.instruction_id, now - CODE_TTL + CODE_MARGIN,
                 update.prefer or ""),
            )
            if code is None:
                continue
            message = replace(update.message, body={**update.message.body, "response_code": code})
            row_id = await db.insert(_OUTBOX_INSERT, _outbox_values(update.instruction_id, message, now, due=due))
            await db.execute("UPDATE card_codes SET outbox_id = ? WHERE code = ?", (row_id, code))
            queued += 1
        return queued

    # -- deadlines and escalation ----------------------------------------------------------

    async def due_timers(self, now: float, limit: int) -> list[Timer]:
        rows = await self._read.fetchall(
            f"SELECT {_TIMER_COLUMNS} FROM timers WHERE state = 'pending' AND fire_at <= ?"
            " ORDER BY fire_at, id LIMIT ?",
            (now, limit),
        )
        return [Timer(*r) for r in rows]

    async def fire_timers(self, timers: Sequence[Timer], state: str, events: Sequence[AuditEvent],
                          messages: Sequence[OutboxMessage], now: float) -> bool:
        """Take timers out of 'pending' exactly once, all together, with what they send, in one transaction.

        False (nothing sent) if any was taken meanwhile or its deadline settled; those are cancelled.
        """
        ids = [t.id for t in timers]
        async with self._transaction() as db:
            rows = await db.fetchall(
                "SELECT t.id, t.state, d.state FROM timers t JOIN deadlines d ON d.id = t.deadline_id"
                f" WHERE t.id IN ({', '.join('?' * len(ids))})", ids,
            )
            settled = [r[0] for r in rows if r[1] == "pending" and r[2] != "open"]
            await db.executemany("UPDATE timers SET state = 'cancelled' WHERE id = ?", [(t,) for t in settled])
            if len(rows) != len(ids) or any(r[1] != "pending" or r[2] != "open" for r in rows):
                return False
            await db.executemany("UPDATE timers SET state = ?, fired_at = ? WHERE id = ?",
                                 [(state, now, t) for t in ids])
            await self._next_steps(db, ids)
            instruction_id = timers[0].instruction_id
            await self._insert_events(db, instruction_id, events, now)
            await self._insert_outbox(db, instruction_id, messages, now)
            return True

    # -- duty rosters ----------------------------------------------------------------------

    async def load_shifts(self) -> list[Shift]:
        rows = await self._read.fetchall(
            "SELECT station_code, duty_date, shift, starts_at, ends_at, officer, leader FROM duty_shifts"
            " ORDER BY station_code, starts_at"
        )
        return [Shift(*r) for r in rows]

    async def replace_shifts(self, shifts: Sequence[Shift], now: float) -> None:
        """Import a roster: the days it lists replace what those stations had for those days."""
        async with self._transaction() as db:
            await db.executemany(
                "DELETE FROM duty_shifts WHERE station_code = ? AND duty_date = ?",
                sorted({(s.station_code, s.duty_date) for s in shifts}),
            )
            await db.executemany(
                "INSERT INTO duty_shifts(station_code, duty_date, shift, starts_at, ends_at, officer, leader,"
                " imported_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                [(s.station_code, s.duty_date, s.shift, s.starts_at, s.ends_at, s.officer, s.leader, now)
                 for s in shifts],
            )
            await db.execute(
                "INSERT INTO meta(key, value) VALUES ('roster_version', ?)"
                " ON CONFLICT(key) DO UPDATE SET value = excluded.value", (repr(now),),
            )

    async def warn_roster_gap(self, gap_key: str, messages: Sequence[OutboxMessage], now: float) -> bool:
        """Queue the warning about a roster gap unless it was sent before; True if queued now."""
        async with self._transaction() as db:
            added = await db.execute(
                "INSERT INTO roster_gap_warnings(gap_key, warned_at) VALUES (?, ?) ON CONFLICT (gap_key) DO NOTHING",
                (gap_key, now),
            )
            if added == 0:
                return False
            await self._insert_outbox(db, None, messages, now)
            return True

    # -- callbacks -------------------------------------------------------------------------

    async def record_callback(self, dedupe_key: str, from_user: str, kind: str, plaintext: str,
                              now: float, click: ClickCode | None = None) -> int | None:
        """Store a callback before acting on it; None if WeCom sent this one before.

        A card click's response_code is kept with it, if the card is one this app sent that person."""
        async with self._transaction() as db:
            callback_id = await db.insert(
                "INSERT INTO callbacks(dedupe_key, received_at, from_user, kind, plaintext) VALUES (?, ?, ?, ?, ?)"
                " ON CONFLICT (dedupe_key) DO NOTHING",
                (dedupe_key, now, from_user, kind, plaintext),
            )
            if callback_id is not None and click is not None and await db.fetchval(
                "SELECT COUNT(*) FROM outbox WHERE instruction_id = ? AND task_id = ? AND address = ?"
                f" AND purpose IN {CARD_PURPOSES!r}", (click.instruction_id, click.task_id, click.userid),
            ):
                await db.execute(
                    "INSERT INTO card_codes(code, task_id, instruction_id, userid, source, issued_at)"
                    " VALUES (?, ?, ?, ?, 'click', ?) ON CONFLICT DO NOTHING",
                    (click.code, click.task_id, click.instruction_id, click.userid, now),
                )
            return callback_id

    async def finish_callback(self, callback_id: int, outcome: str, now: float) -> None:
        async with self._transaction() as db:
            await db.execute(
                "UPDATE callbacks SET processed_at = ?, outcome = ? WHERE id = ?", (now, outcome, callback_id)
            )

    async def unprocessed_callbacks(self) -> list[tuple[int, str]]:
        rows = await self._read.fetchall(
            "SELECT id, plaintext FROM callbacks WHERE processed_at IS NULL ORDER BY id"
        )
        return [(r[0], r[1]) for r in rows]

    # -- outbox ----------------------------------------------------------------------------

    async def enqueue(self, instruction_id: int | None, messages: Sequence[OutboxMessage], now: float) -> None:
        async with self._transaction() as db:
            await self._insert_outbox(db, instruction_id, messages, now)

    async def release_claims(self, alive_since: float) -> int:
        """Rows claimed by a process that is gone go back to pending (re-sent byte for byte).

        Gone: not this process, and no heartbeat since `alive_since` (storage/sqlite.py: one process
        owns the file, so every claim it finds at start is from a previous one).
        """
        async with self._transaction(durable=False) as db:
            return await db.execute(
                "UPDATE outbox SET state = 'pending', claimed_by = NULL WHERE state = 'sending'"
                " AND (claimed_by IS NULL OR (claimed_by != ? AND claimed_by NOT IN"
                " (SELECT instance FROM instances WHERE heartbeat_at >= ?)))",
                (self.instance_id, alive_since),
            )

    async def due_outbox(self, now: float, limit: int) -> list[OutboxRow]:
        rows = await self._read.fetchall(
            f"SELECT {_OUTBOX_COLUMNS} FROM outbox WHERE state = 'pending' AND next_attempt_at <= ?"
            " ORDER BY priority, id LIMIT ?",
            (now, limit),
        )
        return [_outbox_row(r) for r in rows]

    async def next_due_at(self) -> float | None:
        return await self._read.fetchval("SELECT MIN(next_attempt_at) FROM outbox WHERE state = 'pending'")

    async def defer(self, deferrals: Sequence[tuple[int, float]]) -> None:
        if not deferrals:
            return
        async with self._transaction(durable=False) as db:
            await db.executemany(
                "UPDATE outbox SET next_attempt_at = ? WHERE id = ?", [(at, rid) for rid, at in deferrals]
            )

    async def claim(self, row_ids: Sequence[int], now: float) -> set[int]:
        """Take pending rows for this process to send; the ids it got (another instance may have been first)."""
        if not row_ids:
            return set()
        async with self._transaction(durable=False) as db:
            rows = await db.fetchall(
                "UPDATE outbox SET state = 'sending', claimed_by = ?, attempts = attempts + 1, last_attempt_at = ?"
                f" WHERE id IN ({', '.join('?' * len(row_ids))}) AND state = 'pending' RETURNING id",
                (self.instance_id, now, *row_ids),
            )
            return {r[0] for r in rows}

    async def unclaim(self, returned: Sequence[tuple[int, float]]) -> None:
        """Rows claimed at intake that this process will not send now go back to the queue, due at the
        given time, as if never attempted."""
        async with self._transaction(durable=False) as db:
            await db.executemany(
                "UPDATE outbox SET state = 'pending', claimed_by = NULL, attempts = attempts - 1,"
                " last_attempt_at = NULL, next_attempt_at = ? WHERE id = ? AND state = 'sending' AND claimed_by = ?",
                [(at, row_id, self.instance_id) for row_id, at in returned],
            )

    async def mark_sent(
        self, row: OutboxRow, now: float, msgid: str | None, response_code: str | None, note: str | None
    ) -> None:
        """Record a delivery; the one that completes an instruction's dispatch (its station notice and
        personal cards all sent) also moves it from 'received' to 'dispatched', in the same transaction.

        The time between WeCom's answer and this durable record is the window in which a crash makes
        the message go out again; the engine's group commit keeps it to about one fsync.
        """
        async with self._transaction() as db:
            await db.execute(
                "UPDATE outbox SET state = 'sent', sent_at = ?, msgid = ?, response_code = ?, last_error = ?"
                " WHERE id = ?",
                (now, msgid, response_code, note, row.id),
            )
            if row.instruction_id is None:
                return
            if response_code and row.task_id and row.purpose in CARD_PURPOSES:
                await db.execute(
                    "INSERT INTO card_codes(code, task_id, instruction_id, userid, source, issued_at)"
                    " VALUES (?, ?, ?, ?, 'send', ?) ON CONFLICT DO NOTHING",
                    (response_code, row.task_id, row.instruction_id, row.address, now),
                )
            detail = {"outbox_id": row.id, "purpose": row.purpose, "to": row.label, "attempts": row.attempts}
            if note:
                detail["note"] = note
            events = [AuditEvent("delivered", "system", "outbox", detail=detail)]
            if row.purpose in _DISPATCH_PURPOSES and await self._dispatch_completed(db, row.instruction_id):
                events.append(AuditEvent("dispatched", "system", "outbox", "received", "dispatched"))
            await self._insert_events(db, row.instruction_id, events, now)

    async def _dispatch_completed(self, db: Session, instruction_id: int) -> bool:
        """True when the instruction's station notice and cards are all sent and it moved to 'dispatched' now."""
        await self._lock_instruction(db, instruction_id)
        undelivered = await db.fetchval(
            "SELECT COUNT(*) FROM outbox WHERE instruction_id = ? AND state != 'sent'"
            f" AND purpose IN {_DISPATCH_PURPOSES!r}", (instruction_id,),
        )
        return undelivered == 0 and await db.execute(
            "UPDATE instructions SET state = 'dispatched' WHERE id = ? AND state = 'received'", (instruction_id,)
        ) == 1

    async def mark_retry(self, row_id: int, next_at: float, error: str) -> None:
        async with self._transaction(durable=False) as db:
            await db.execute(
                "UPDATE outbox SET state = 'pending', claimed_by = NULL, next_attempt_at = ?, last_error = ?"
                " WHERE id = ?",
                (next_at, error, row_id),
            )

    async def mark_failed(self, row: OutboxRow, now: float, error: str) -> None:
        async with self._transaction() as db:
            await db.execute("UPDATE outbox SET state = 'failed', last_error = ? WHERE id = ?", (error, row.id))
            if row.instruction_id is not None:
                await db.execute("UPDATE instructions SET delivery_failed = 1 WHERE id = ?", (row.instruction_id,))
                detail = {"outbox_id": row.id, "purpose": row.purpose, "to": row.label, "error": error,
                          "attempts": row.attempts}
                await self._insert_events(
                    db, row.instruction_id, [AuditEvent("delivery_failed", "system", "outbox", detail=detail)], now
                )

    async def mark_dropped(self, row: OutboxRow, now: float, error: str) -> None:
        """A message that need not go any more (a card update WeCom will not take: its response_code was used
        or expired): failed, without flagging its instruction's delivery as failed. Its card's last shown
        status is what the update before it showed."""
        async with self._transaction() as db:
            await db.execute("UPDATE outbox SET state = 'failed', last_error = ? WHERE id = ?", (error, row.id))
            await db.execute("UPDATE card_codes SET shows = NULL WHERE outbox_id = ?", (row.id,))

    async def card_update_superseded(self, row: OutboxRow) -> bool:
        """Whether a later update of the same card was queued after this one (which must not overwrite it)."""
        return bool(await self._read.fetchval(
            "SELECT COUNT(*) FROM outbox WHERE instruction_id = ? AND task_id = ? AND purpose = ? AND id > ?",
            (row.instruction_id, row.task_id, UPDATE_PURPOSE, row.id),
        ))

    async def recent_attempts(self, since: float) -> list[tuple[float, tuple[str, ...]]]:
        rows = await self._read.fetchall(
            "SELECT last_attempt_at, rate_keys FROM outbox WHERE last_attempt_at >= ? ORDER BY last_attempt_at",
            (since,),
        )
        return [(r[0], tuple(json.loads(r[1]))) for r in rows]

    async def outbox_counts(self) -> dict[str, int]:
        rows = await self._read.fetchall("SELECT state, COUNT(*) FROM outbox GROUP BY state")
        return {r[0]: r[1] for r in rows}

    async def requeue_failed(self, now: float, instruction_id: int | None = None, since: float | None = None,
                             actor: str = "operator", channel: str = "cli") -> dict[int | None, list[int]]:
        """Make failed messages due again, as if never attempted (all of them, one instruction's, or those that
        failed since a time); each instruction gets an audit event naming its re-queued messages. Returns the
        outbox ids by instruction id (None: messages of no instruction, e.g. group notices)."""
        where, params = ["state = 'failed'"], [now]
        if instruction_id is not None:
            where.append("instruction_id = ?")
            params.append(instruction_id)
        if since is not None:
            where.append("COALESCE(last_attempt_at, created_at) >= ?")
            params.append(since)
        async with self._transaction() as db:
            rows = await db.fetchall(
                "UPDATE outbox SET state = 'pending', attempts = 0, next_attempt_at = ?, claimed_by = NULL"
                f" WHERE {' AND '.join(where)} RETURNING id, instruction_id", tuple(params),
            )
            requeued: dict[int | None, list[int]] = {}
            for row_id, owner in rows:
                requeued.setdefault(owner, []).append(row_id)
            for owner, ids in requeued.items():
                if owner is None:
                    continue
                await db.execute(
                    "UPDATE instructions SET delivery_failed = 0 WHERE id = ?"
                    " AND NOT EXISTS (SELECT 1 FROM outbox WHERE instruction_id = ? AND state = 'failed')",
                    (owner, owner),
                )
                event = AuditEvent("delivery_requeued", actor, channel, detail={"outbox_ids": sorted(ids)})
                await self._insert_events(db, owner, [event], now)
        return requeued

    # -- several instances on one database --------------------------------------------------

    async def heartbeat(self, now: float) -> None:
        """Say this process is alive (its claims on outbox rows stand while it keeps saying so)."""
        async with self._transaction(durable=False) as db:
            await db.execute(
                "INSERT INTO instances(instance, host, started_at, heartbeat_at) VALUES (?, ?, ?, ?)"
                " ON CONFLICT (instance) DO UPDATE SET heartbeat_at = excluded.heartbeat_at",
                (self.instance_id, socket.gethostname(), now, now),
            )

    async def hold_lease(self, name: str, now: float, ttl: float) -> bool:
        """Take or renew the lease `name` until now + ttl; False while another live holder has it."""
        async with self._transaction(durable=False) as db:
            row = await db.fetchone(
                "INSERT INTO leases(name, holder, expires_at) VALUES (?, ?, ?)"
                " ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at"
                " WHERE leases.holder = excluded.holder OR leases.expires_at < ? RETURNING holder",
                (name, self.instance_id, now + ttl, now),
            )
            return row is not None

    async def leave(self) -> None:
        """A clean stop: give up this process's leases and its place among the live instances."""
        async with self._transaction() as db:
            await db.execute("DELETE FROM leases WHERE holder = ?", (self.instance_id,))
            await db.execute("DELETE FROM instances WHERE instance = ?", (self.instance_id,))

    async def cluster_view(self, alive_since: float) -> dict[str, Any]:
        """The live instances and who holds each lease (the health endpoint shows it)."""
        live = await self._read.fetchall(
            "SELECT instance, host, started_at, heartbeat_at FROM instances WHERE heartbeat_at >= ?"
            " ORDER BY started_at",
            (alive_since,),
        )
        leases = await self._read.fetchall("SELECT name, holder, expires_at FROM leases ORDER BY name")
        return {"instance": self.instance_id, "instances": [dict(r) for r in live],
                "leases": {r["name"]: r["holder"] for r in leases}}

    # -- helpers ---------------------------------------------------------------------------

    @staticmethod
    async def _insert_events(
        db: Session, instruction_id: int, events: Sequence[AuditEvent], now: float
    ) -> None:
        await db.executemany(
            "INSERT INTO events(instruction_id, at, actor, channel, action, from_state, to_state, detail)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            [
                (instruction_id, now, e.actor, e.channel, e.action, e.from_state, e.to_state,
                 json.dumps(e.detail, ensure_ascii=False))
                for e in events
            ],
        )

    @staticmethod
    async def _assign(db: Session, instruction_id: int, assignees: Sequence[NewAssignment],
                      now: float) -> None:
        await db.executemany(
            "INSERT INTO assignments(instruction_id, userid, role_label, assigned_at, stage) VALUES (?, ?, ?, ?, ?)",
            [(instruction_id, a.userid, a.role_label, now, a.stage) for a in assignees],
        )

    @staticmethod
    async def _insert_deadlines(db: Session, instruction_id: int,
                                deadlines: Sequence[NewDeadline]) -> None:
        """Each deadline with the first step of its ladder as a timer; the later steps wait in the
        deadline row until the one before them fires (migration 008)."""
        first_steps = []
        for d in deadlines:
            first, *later = d.timers or [None]
            deadline_id = await db.insert(
                "INSERT INTO deadlines(instruction_id, stage, milestone, due_at, ladder) VALUES (?, ?, ?, ?, ?)",
                (instruction_id, d.stage, d.milestone, d.due_at, json.dumps(later)),
            )
            if first is not None:
                first_steps.append((deadline_id, instruction_id, *first))
        await db.executemany(_TIMER_INSERT, first_steps)

    @staticmethod
    async def _next_steps(db: Session, timer_ids: Sequence[int]) -> None:
        """The next step of each of these timers' ladders becomes their deadline's pending timer."""
        rows = await db.fetchall(
            "SELECT d.id, d.instruction_id, d.ladder FROM deadlines d JOIN timers t ON t.deadline_id = d.id"
            f" WHERE t.id IN ({', '.join('?' * len(timer_ids))}) AND d.ladder != '[]'", timer_ids,
        )
        for deadline_id, instruction_id, ladder in rows:
            (step, notify, fire_at), *later = json.loads(ladder)
            await db.execute(_TIMER_INSERT, (deadline_id, instruction_id, step, notify, fire_at))
            await db.execute("UPDATE deadlines SET ladder = ? WHERE id = ?", (json.dumps(later), deadline_id))

    @staticmethod
    async def _settle(db: Session, instruction_id: int, settlement: Settlement, actor: str | None,
                      now: float) -> None:
        """Close matching open deadlines and cancel their pending timers: escalation stops at once."""
        where, args = "instruction_id = ? AND state = 'open'", [instruction_id]
        if settlement.stage:
            where, args = where + " AND stage = ?", [*args, settlement.stage]
        if settlement.milestone:
            where, args = where + " AND milestone = ?", [*args, settlement.milestone]
        await db.execute(
            f"UPDATE timers SET state = 'cancelled' WHERE state = 'pending'"
            f" AND deadline_id IN (SELECT id FROM deadlines WHERE {where})", args,
        )
        await db.execute(f"UPDATE deadlines SET state = ?, settled_at = ?, settled_by = ? WHERE {where}",
                         [settlement.state, now, actor, *args])

    @staticmethod
    async def _insert_outbox(
        db: Session, instruction_id: int | None, messages: Sequence[OutboxMessage], now: float
    ) -> None:
        await db.executemany(_OUTBOX_INSERT, [_outbox_values(instruction_id, m, now) for m in messages])

    async def _insert_claimed(self, db: Session, instruction_id: int, messages: Sequence[OutboxMessage],
                              now: float) -> tuple[OutboxRow, ...]:
        """Outbox rows born claimed by this process, so that the sender starts them the moment they are
        committed, without a queue read and a claim of its own (bot/outbox.py, DeliveryWorker.take).
        A crash before they go leaves them claimed by a process that is gone: released like any claim."""
        rows = []
        for m in messages:
            values = _outbox_values(instruction_id, m, now)
            row_id = await db.insert(_OUTBOX_INSERT_CLAIMED, (*values, now, self.instance_id))
            rows.append(OutboxRow(row_id, instruction_id, m.purpose, m.channel, m.address, m.label, _stored_body(m),
                                  m.rate_keys, m.priority, "sending", 1, now, m.task_id))
        return tuple(rows)

    @staticmethod
    async def _insert_one_outbox(db: Session, instruction_id: int | None, message: OutboxMessage, now: float) -> int:
        return await db.insert(_OUTBOX_INSERT, _outbox_values(instruction_id, message, now))


_TIMER_INSERT = "INSERT INTO timers(deadline_id, instruction_id, step, notify, fire_at) VALUES (?, ?, ?, ?, ?)"
_OUTBOX_NEW = ("instruction_id, purpose, channel, address, label, rate_keys, body, task_id, priority,"
               " next_attempt_at, created_at")
_OUTBOX_INSERT = f"INSERT INTO outbox({_OUTBOX_NEW}) VALUES ({', '.join('?' * 11)})"
# Born claimed by the accepting process (its id the last value): see _insert_claimed.
_OUTBOX_INSERT_CLAIMED = (f"INSERT INTO outbox({_OUTBOX_NEW}, state, attempts, last_attempt_at, claimed_by)"
                          f" VALUES ({', '.join('?' * 11)}, 'sending', 1, ?, ?)")


def _outbox_values(instruction_id: int | None, m: OutboxMessage, now: float,
                   due: float | None = None) -> tuple[Any, ...]:
    """The values of _OUTBOX_NEW; the body is stored (and re-sent) exactly as _stored_body gives it."""
    return (instruction_id, m.purpose, m.channel, m.address, m.label, json.dumps(list(m.rate_keys)),
            _stored_body(m), m.task_id, m.priority, now if due is None else due, now)


def _stored_body(m: OutboxMessage) -> str:
    return json.dumps(m.body, ensure_ascii=False, sort_keys=True)


def _instruction(r: Any) -> Instruction:
    return Instruction(
        id=r["id"], instruction_no=r["instruction_no"], issued_at=r["issued_at"], received_at=r["received_at"],
        warning_type=r["warning_type"], fraud_type=r["fraud_type"], risk_level=r["risk_level"],
        target=Target(r["target_name"], r["target_phone"], r["target_id_number"], r["target_address"],
                      r["target_age"]),
        station_code=r["station_code"], grid_code=r["grid_code"], routed_station=r["routed_station"],
        routed_grid=r["routed_grid"], needs_assignment=bool(r["needs_assignment"]), summary=r["summary"],
        amount_at_risk=r["amount_at_risk"], state=r["state"], delivery_failed=bool(r["delivery_failed"]),
        **{column: r[column] for column in ACTION_FIELDS},
    )


def _outbox_row(r: Any) -> OutboxRow:
    return OutboxRow(
        id=r["id"], instruction_id=r["instruction_id"], purpose=r["purpose"], channel=r["channel"],
        address=r["address"], label=r["label"], body=r["body"], rate_keys=tuple(json.loads(r["rate_keys"])),
        priority=r["priority"], state=r["state"], attempts=r["attempts"], created_at=r["created_at"],
        task_id=r["task_id"],
    )
