"""The cluster benchmark still runs end to end (`bench/cluster.py --quick`); no timing is asserted here."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bench.cluster import markdown
from tests.pg import PG_URL

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.postgresql_only


def test_quick_cluster_run_writes_well_formed_results(tmp_path):
    server = PG_URL.split("?", 1)[0].rsplit("/", 1)[0]
    done = subprocess.run([sys.executable, "bench/cluster.py", "--quick", "--out", str(tmp_path), "--pg-server", server,
                           "--database", "quanzu_bench_pytest"], cwd=ROOT, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads((tmp_path / "cluster.json").read_text(encoding="utf-8"))
    assert set(result["runs"]) == {"sqlite", "postgresql", "postgresql_x2"}
    for name, run in result["runs"].items():
        assert run["peak_per_s"] > 0, name
        assert set(run["latency_at_peak_ms"]) == {"p50", "p99", "max"}, name
        assert run["ladder"]["steps"] and run["ladder_accepted"] > 0, name
        assert run["every_accepted_stored"] and run["every_accepted_reached_wecom"], name
        assert run["no_card_shown_twice"] and run["outbox_settled"] and run["delivered_everything"], name
        delivery = run["delivery"]
        assert delivery["accepted"] == delivery["reached_wecom"] == run["stored"]["instructions_stored"], name
        assert delivery["cards_shown"] > 0 and delivery["cards_shown_twice"] == 0, name
        assert len(run["cpu"]["bots_s"]) == run["instances"] and all(c > 0 for c in run["cpu"]["bots_s"]), name
        assert not run["bot_log"]["errors"], name
    assert result["runs"]["sqlite"]["instances"] == result["runs"]["postgresql"]["instances"] == 1
    cluster = result["runs"]["postgresql_x2"]
    assert cluster["instances"] == 2 and len(cluster["stored"]["sent_by_instance"]) == 2  # both sent messages
    assert cluster["cpu"]["postgresql"]["database_backends_s"] > 0
    table = (tmp_path / "cluster.md").read_text(encoding="utf-8")
    assert table == markdown(result)
    assert table.count("\n|") >= 4
