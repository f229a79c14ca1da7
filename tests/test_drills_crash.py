"""Crash drill, CI size: the bot SIGKILLed twice during a burst; nothing accepted is lost or half-recorded.

The full drill (5,000 instructions, 5 kills) is bench/drills/crash.py; this runs the same code smaller.
"""

from __future__ import annotations

import pytest

from bench.drills.crash import run_crash

pytestmark = pytest.mark.sqlite_only  # the drill's harness runs the bot on SQLite; PostgreSQL: tests/test_cluster.py

# At most [delivery] concurrency × 4 rows are claimed at once (bot/outbox.py): a kill can repeat no more.
_MAX_IN_FLIGHT = 16 * 4


async def test_sigkill_during_a_burst_loses_nothing_and_shows_no_card_twice(tmp_path):
    result = await run_crash(400, kills=2, seed=3, work=tmp_path, stations=20, grids=20, rate=100.0)
    print(result)  # the figures, for whoever reads the CI log
    assert len(result["kills"]) == 2 and result["bot_starts"] == 3
    assert result["never_answered"] == 0
    assert result["stored_instructions"] == 400 and result["stored_ids_match_answers"]
    assert result["half_recorded"] == 0
    assert result["lost_displays"] == 0 and result["silently_dropped_records"] == 0
    assert result["duplicate_card_displays"] == 0  # WeCom's duplicate check swallows the re-sent cards
    # Group notices have no duplicate guard in WeCom: a kill can repeat only what was answered, not yet recorded.
    assert result["duplicate_chat_displays"] <= 2 * _MAX_IN_FLIGHT
    assert result["outbox_states"] == {"sent": 1200}
    assert result["journal_mode"] == "wal"
    assert result["log_lines"] > 1000 and result["log_lines_with_secrets_or_personal_data"] == 0
