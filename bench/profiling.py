"""py-spy on the bot while a phase runs, and the top frames of what it recorded (bench/run.py --profile)."""

from __future__ import annotations

import asyncio
import shutil
import signal
import sys
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path


def py_spy() -> str:
    found = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(found).exists():
        raise SystemExit("--profile needs py-spy: .venv/bin/pip install py-spy")
    return found


@asynccontextmanager
async def recording(pid: int | None, out: Path) -> AsyncIterator[None]:
    """Sample `pid` (all threads, not idle ones) into `out` (py-spy's raw collapsed stacks); None: no-op."""
    if pid is None:
        yield
        return
    proc = await asyncio.create_subprocess_exec(
        py_spy(), "record", "--format", "raw", "--rate", "200", "--nonblocking", "--threads", "-o", str(out),
        "--pid", str(pid), stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
    await asyncio.sleep(1.0)
    try:
        yield
    finally:
        proc.send_signal(signal.SIGINT)
        await proc.wait()


def top_frames(raw: str, most: int = 15) -> dict:
    """Self and inclusive sample shares per function from collapsed stacks ("a;b;c 12" lines)."""
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in raw.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        total += n
        frames = [_short(f) for f in stack.split(";") if not f.startswith(("process ", "thread "))]
        if frames:
            own[frames[-1]] += n
        for f in set(frames):
            inclusive[f] += n
    share = (lambda c: [(f, round(100 * n / total, 1)) for f, n in c.most_common(most)]) if total else (lambda c: [])
    return {"samples": total, "self": share(own), "inclusive": share(inclusive)}


def _short(frame: str) -> str:
    """`name (path/to/module.py:123)` → `name (module.py)`: lines folded together."""
    name, _, where = frame.partition(" (")
    return f"{name} ({Path(where.rstrip(')').rsplit(':', 1)[0]).name})" if where else name


def markdown(profiles: dict[str, dict]) -> str:
    lines = ["# Where the bot spends its CPU (py-spy, `bench/run.py --profile`)", ""]
    for phase, p in profiles.items():
        lines += [f"## {phase} ({p['samples']} samples of busy threads at 200 Hz)", "",
                  "| self % | function | | inclusive % | function |", "|---|---|---|---|---|"]
        for (f1, s1), (f2, s2) in zip(p["self"], p["inclusive"], strict=False):
            lines.append(f"| {s1} | `{f1}` | | {s2} | `{f2}` |")
        lines.append("")
    return "\n".join(lines)
