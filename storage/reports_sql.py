"""SQL of the bulletins, the dashboard and the exports, as a mixin of SQLStorage.

Period figures read report_facts (migration 006: one narrow row per instruction, clustered by day and
kept by triggers); the board and the overdue list read instructions and open deadlines through their
indexes. Every query is bounded by a day range, a LIMIT or a partial index, so none of them grows
with the years of history behind it.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from domain.models import OutboxMessage
from domain.reports import (
    GROUPINGS,
    Board,
    BoardRow,
    FactGroup,
    History,
    OverdueItem,
    ReportFilter,
    day_start,
)

_BOARD_COLUMNS = (
    "i.id, i.instruction_no, i.received_at, i.risk_level, i.fraud_type, i.warning_type, i.routed_station,"
    " i.routed_grid, i.state, i.target_name, i.target_phone, i.amount_at_risk, i.acked_at, i.outcome,"
    " i.contact_method, i.loss_avoided, i.amount_lost,"
    " (SELECT MIN(d.due_at) FROM deadlines d WHERE d.instruction_id = i.id AND d.state = 'open'),"
    " i.needs_assignment, i.delivery_failed, i.closed_at, i.target_address, i.target_id_number"
)
# Synthetic history (bot/reports/synthetic.py), written straight into the tables; the triggers of
# migration 006 keep report_facts in step exactly as they do for live writes.
_HISTORY_SQL = (
    ("instructions",
     "INSERT INTO instructions(id, instruction_no, issued_at, received_at, warning_type, fraud_type, risk_level,"
     " target_name, target_phone, target_id_number, target_address, target_age, station_code, grid_code,"
     " routed_station, routed_grid, summary, amount_at_risk, state, acked_at, acked_by, contact_method, outcome,"
     " loss_avoided, amount_lost, reported_at, reported_by, closed_at, raw)"
     " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"),
    ("deadlines",
     "INSERT INTO deadlines(instruction_id, stage, milestone, due_at, state, settled_at) VALUES (?, ?, ?, ?, ?, ?)"),
    ("assignments",
     "INSERT INTO assignments(instruction_id, userid, role_label, assigned_at, acked_at, stage)"
     " VALUES (?, ?, ?, ?, ?, ?)"),
    ("events",
     "INSERT INTO events(instruction_id, at, actor, channel, action, from_state, to_state)"
     " VALUES (?, ?, ?, ?, ?, ?, ?)"),
)


def insert_history_sync(conn: sqlite3.Connection, history: History) -> None:
    """Write one batch of synthetic history on a plain sqlite3 connection (the benchmark's generator)."""
    for table, sql in _HISTORY_SQL:
        conn.executemany(sql, getattr(history, table))


# Seconds between the parts of one bulletin, so the delivery worker sends them in order.
_PART_SPACING = 0.5
# The last day number a query range needs (9999-12-31): "since first_day" as a BETWEEN of the day index.
_LAST_DAY = 2_932_896


class ReportsSQL:
    """Report queries; mixed into SQLStorage, whose _read, _transaction() and _insert_outbox() they use."""

    async def report_groups(self, flt: ReportFilter, by: str) -> list[FactGroup]:
        """Counts and sums over flt's day range per day, station or outcome (`by`).

        From the daily rollup, unless a filter needs what only report_facts has (fraud type, state, assignee).
        """
        if by not in GROUPINGS:
            raise ValueError(f"cannot group by {by!r}")
        if flt.fraud_type or flt.states is not None or flt.assignee:
            where, args = _where(flt, "facts")
            sql = (f"SELECT {by}, COUNT(*), COUNT(acked_at), SUM(ack_ontime), COUNT(contact_at),"
                   " SUM(CASE WHEN visit = 1 OR contact_method IN ('见面', '上门') THEN 1 ELSE 0 END),"
                   " COALESCE(SUM(loss_avoided), 0.0), COALESCE(SUM(amount_lost), 0.0)"
                   f" FROM report_facts f WHERE {where} GROUP BY {by}")
        else:
            where, args = _where(flt, "daily")
            key = by if by == "day" else f"NULLIF({by}, '')"
            sql = (f"SELECT {key}, SUM(received), SUM(signed), SUM(ack_ontime), SUM(contacted), SUM(visits),"
                   " COALESCE(SUM(loss_avoided), 0.0), COALESCE(SUM(amount_lost), 0.0)"
                   f" FROM report_daily r WHERE {where} GROUP BY {by} HAVING SUM(received) > 0")
        return [FactGroup(*r) for r in await self._read.fetchall(sql, args)]

    async def report_durations(self, flt: ReportFilter) -> list[tuple[str | None, float | None, float | None]]:
        """(station, seconds to the first sign-for, seconds to phone contact) of each instruction in flt's day
        range that got that far: a range read of report_facts, returned as plain tuples."""
        where, args = _where(flt, "facts")
        return await self._read.fetchall(
            "SELECT station, acked_at - received_at, contact_at - received_at FROM report_facts f"
            f" WHERE {where} AND (acked_at IS NOT NULL OR contact_at IS NOT NULL)",
            args,
        )

    async def overdue_items(self, now: float, flt: ReportFilter,
                            limit: int) -> tuple[dict[str | None, int], list[OverdueItem]]:
        """Open instructions with a deadline past due: how many per station, and the `limit` longest overdue."""
        where, args = _where(flt, "instructions")
        base = (
            "FROM deadlines d JOIN instructions i ON i.id = d.instruction_id"
            f" WHERE d.state = 'open' AND d.due_at < ? AND {where}"
        )
        counts = {
            r[0]: r[1] for r in await self._read.fetchall(
                f"SELECT i.routed_station, COUNT(DISTINCT d.instruction_id) {base} GROUP BY i.routed_station",
                [now, *args],
            )
        }
        # Each instruction once, with its earliest open deadline (the one overdue longest).
        rows = await self._read.fetchall(
            "SELECT i.id, i.routed_station, i.risk_level, i.fraud_type, i.state, i.received_at, d.stage,"
            f" d.milestone, d.due_at {base} AND d.id = (SELECT e.id FROM deadlines e"
            " WHERE e.instruction_id = d.instruction_id AND e.state = 'open' ORDER BY e.due_at, e.id LIMIT 1)"
            " ORDER BY d.due_at, i.id LIMIT ?",
            [now, *args, limit],
        )
        return counts, [OverdueItem(*r) for r in rows]

    async def board(self, flt: ReportFilter, now: float, limit: int) -> Board:
        """The newest `limit` instructions matching flt, with counts by state and of the overdue."""
        where, args = _where(flt, "instructions")
        by_state = {
            r[0]: r[1] for r in await self._read.fetchall(
                f"SELECT i.state, COUNT(*) FROM instructions i WHERE {where} GROUP BY i.state", args
            )
        }
        overdue = await self._read.fetchval(
            "SELECT COUNT(DISTINCT d.instruction_id) FROM deadlines d JOIN instructions i ON i.id = d.instruction_id"
            f" WHERE d.state = 'open' AND d.due_at < ? AND {where}", [now, *args],
        )
        return Board(await self.instruction_rows(flt, limit), sum(by_state.values()), by_state, overdue)

    async def instruction_rows(self, flt: ReportFilter, limit: int) -> list[BoardRow]:
        """Instructions matching flt, newest first, at most `limit` (the board's list and the exports)."""
        where, args = _where(flt, "instructions")
        rows = await self._read.fetchall(
            f"SELECT {_BOARD_COLUMNS} FROM instructions i WHERE {where}"
            # "+": order by sorting what the state/station index found, never by walking the whole
            # history backwards through instructions_received looking for the few open ones.
            " ORDER BY +i.received_at DESC, i.id DESC LIMIT ?",
            [*args, limit],
        )
        return [BoardRow(*r[:18], bool(r[18]), bool(r[19]), *r[20:]) for r in rows]

    async def fraud_types(self, first_day: int, scope: ReportFilter | None = None) -> list[str]:
        """The fraud types seen since first_day, most frequent first (the filter's choices), among the
        instructions of scope's stations or assignee only (a viewer's scope; None: every station's)."""
        flt = ReportFilter(stations=scope.stations, assignee=scope.assignee) if scope else ReportFilter()
        where, args = _where(replace(flt, first_day=first_day, last_day=_LAST_DAY), "facts")
        rows = await self._read.fetchall(
            f"SELECT fraud_type FROM report_facts f WHERE {where} GROUP BY fraud_type ORDER BY COUNT(*) DESC LIMIT 50",
            args,
        )
        return [r[0] for r in rows]

    # -- dashboard sessions (migration 009) --------------------------------------------------

    async def create_session(self, token_hash: str, userid: str, now: float, expires_at: float) -> None:
        """Record a new dashboard session, and forget the ones that have expired."""
        async with self._transaction(durable=False) as db:  # lost at a power cut: the user logs in again
            await db.execute("DELETE FROM dashboard_sessions WHERE expires_at <= ?", (now,))
            await db.execute(
                "INSERT INTO dashboard_sessions(token_hash, userid, created_at, expires_at) VALUES (?, ?, ?, ?)",
                (token_hash, userid, now, expires_at),
            )

    async def session_user(self, token_hash: str, now: float) -> str | None:
        """Who a live session belongs to; None if it ended (logout, revocation) or expired."""
        return await self._read.fetchval(
            "SELECT userid FROM dashboard_sessions WHERE token_hash = ? AND expires_at > ?", (token_hash, now)
        )

    async def end_session(self, token_hash: str) -> bool:
        """Logout: the session is refused from now on, whoever holds a copy of its cookie."""
        async with self._transaction() as db:
            return await db.execute("DELETE FROM dashboard_sessions WHERE token_hash = ?", (token_hash,)) > 0

    async def end_sessions(self, userid: str) -> int:
        """Revoke every session of one user (all their browsers); returns how many ended."""
        async with self._transaction() as db:
            return await db.execute("DELETE FROM dashboard_sessions WHERE userid = ?", (userid,))

    async def insert_history(self, history: History) -> None:
        """Write one batch of synthetic history in one transaction (the demo's past weeks)."""
        async with self._transaction() as db:
            for table, sql in _HISTORY_SQL:
                await db.executemany(sql, getattr(history, table))
            await self._after_explicit_ids(db, "instructions")

    async def max_instruction_id(self) -> int:
        return await self._read.fetchval("SELECT COALESCE(MAX(id), 0) FROM instructions")

    async def meta_default(self, key: str, value: str) -> str:
        """The stored value of a meta key, storing `value` first if there is none (e.g. a generated secret)."""
        async with self._transaction() as db:
            await db.execute("INSERT INTO meta(key, value) VALUES (?, ?) ON CONFLICT (key) DO NOTHING", (key, value))
            return await db.fetchval("SELECT value FROM meta WHERE key = ?", (key,))

    async def bulletin_sent(self, kind: str, first_day: int) -> bool:
        row = await self._read.fetchone(
            "SELECT 1 FROM bulletin_runs WHERE kind = ? AND period_start = ?", (kind, first_day)
        )
        return row is not None

    async def record_bulletin(self, kind: str, first_day: int, messages: Sequence[OutboxMessage],
                              summary: dict[str, Any], now: float) -> bool:
        """Record a bulletin run and queue its messages, in one transaction; False if it was sent before."""
        async with self._transaction() as db:
            added = await db.execute(
                "INSERT INTO bulletin_runs(kind, period_start, created_at, messages, summary) VALUES (?, ?, ?, ?, ?)"
                " ON CONFLICT (kind, period_start) DO NOTHING",
                (kind, first_day, now, len(messages), json.dumps(summary, ensure_ascii=False)),
            )
            if added == 0:
                return False
            for n, message in enumerate(messages):
                await self._insert_outbox(db, None, [message], now + n * _PART_SPACING)
            return True


def _where(flt: ReportFilter, table: str) -> tuple[str, list[Any]]:
    """A WHERE clause for report_facts (alias f), report_daily (r) or instructions (i), and its arguments."""
    t = {"facts": "f", "daily": "r", "instructions": "i"}[table]
    station = f"{t}.station"
    if t == "i":
        # With a state filter the state index finds the few open ones faster than a station's whole history.
        # (`|| ''` hides the column from the planner in SQLite, and means nothing to PostgreSQL.)
        station = "i.routed_station || ''" if flt.states is not None else "i.routed_station"
    clauses: list[str] = []
    args: list[Any] = []
    if flt.stations is not None:
        clauses.append(f"{station} IN ({', '.join('?' * len(flt.stations)) or 'NULL'})")
        args += flt.stations
    if flt.station:
        clauses.append(f"{station} = ?")
        args.append(flt.station)
    if flt.assignee:
        clauses.append(f"{t}.{'id' if t == 'i' else 'instruction_id'} IN (SELECT instruction_id FROM assignments"
                       " WHERE userid = ? AND (active = 1 OR acked_at IS NOT NULL))")
        args.append(flt.assignee)
    for column, value in (("risk_level", flt.risk_level), ("fraud_type", flt.fraud_type)):
        if value:
            clauses.append(f"{t}.{column} = ?")
            args.append(value)
    if flt.states is not None:
        clauses.append(f"{t}.state IN ({', '.join('?' * len(flt.states)) or 'NULL'})")
        args += flt.states
    if t != "i":
        clauses.append(f"{t}.day BETWEEN ? AND ?")
        args += [flt.first_day, flt.last_day]
    else:
        if flt.first_day is not None:
            clauses.append("i.received_at >= ?")
            args.append(day_start(flt.first_day))
        if flt.last_day is not None:
            clauses.append("i.received_at < ?")
            args.append(day_start(flt.last_day + 1))
    return " AND ".join(clauses) or "1 = 1", args
