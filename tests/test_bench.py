"""The benchmark harness still runs end to end (`bench/run.py --quick`); no timing is asserted here."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bench.profiling import top_frames
from bench.run import markdown

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.sqlite_only  # the harness measures the embedded default


def test_quick_run_writes_well_formed_results(tmp_path):
    done = subprocess.run([sys.executable, "bench/run.py", "--quick", "--out", str(tmp_path)], cwd=ROOT,
                          capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads((tmp_path / "bench.json").read_text(encoding="utf-8"))
    latency = result["latency_quanzu"]
    assert latency["sent"] == latency["accepted"] == latency["reached_wecom"] > 0
    assert set(latency["alert_to_wecom_ms"]) == {"p50", "p99", "max"}
    assert "skipped" in result["latency_alertmanager"] or result["latency_alertmanager"]["reached_wecom"] > 0
    for ladder in ("intake_quanzu", "intake_bare", "callbacks"):
        steps = result[ladder]["steps"]
        assert steps and all(s["requests"] == s["succeeded"] for s in steps), ladder
    assert result["callbacks"]["steps"][0]["acks_recorded"] == result["callbacks"]["steps"][0]["requests"]
    assert result["fanout"]["fanout"]["progress"]["failed"] == 0
    assert result["rss"]["peak_mb"] > 0
    table = (tmp_path / "bench.md").read_text(encoding="utf-8")
    assert table == markdown(result)
    assert table.count("\n|") >= 6


def test_profile_summary_counts_self_and_inclusive_time():
    raw = ("thread (1): MainThread;main (bot.py:1);handle (handlers/intake.py:20);dumps (json/__init__.py:5) 3\n"
           "thread (1): MainThread;main (bot.py:1);handle (handlers/intake.py:21) 1\n")
    top = top_frames(raw)
    assert top["samples"] == 4
    assert top["self"][0] == ("dumps (__init__.py)", 75.0)
    assert ("handle (intake.py)", 100.0) in top["inclusive"]
