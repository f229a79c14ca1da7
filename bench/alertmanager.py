"""Prometheus Alertmanager as the comparison: installed from Debian, its wechat receiver aimed at the simulator.

Each alert carries its own `id` label and the route groups by it, so every alert is a group of one
and, with `group_wait: 0s`, is notified as soon as Alertmanager has it. The receiver sends the id as
the message text, to the same person Quanzu sends its first card to, so the simulator's log tells
which alert each call was for. Clustering is off (no gossip settling or peer wait before a send).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
from pathlib import Path

PACKAGE = "prometheus-alertmanager"
BINARY = "prometheus-alertmanager"


def ensure_installed() -> str:
    """The path of the alertmanager binary; installs the Debian package with apt-get when missing."""
    found = shutil.which(BINARY)
    if found:
        return found
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        raise SystemExit(f"{BINARY} is not installed and this user cannot apt-get it: run "
                         f"`sudo apt-get install {PACKAGE}` (Debian/Ubuntu) and start the benchmark again.")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    print(f"installing {PACKAGE} with apt-get ...", flush=True)
    for command in (["apt-get", "update", "-qq"],
                    ["apt-get", "install", "-y", "-qq", "--no-install-recommends", PACKAGE]):
        done = subprocess.run(command, env=env, capture_output=True, text=True)
        if done.returncode != 0:
            raise SystemExit(f"`{' '.join(command)}` failed ({done.returncode}):\n{done.stderr[-2000:]}")
    # The package's own service (port 9093) is not what we measure; stop it if the install started it.
    subprocess.run(["service", PACKAGE, "stop"], capture_output=True)
    found = shutil.which(BINARY)
    if not found:
        raise SystemExit(f"{PACKAGE} installed but {BINARY} is not on PATH")
    return found


def version(binary: str) -> str:
    done = subprocess.run([binary, "--version"], capture_output=True, text=True)
    first = (done.stdout or done.stderr).splitlines()
    return first[0].strip() if first else "unknown"


def write_config(path: Path, sim_port: int, corp_id: str, secret: str, agent_id: int) -> None:
    path.write_text(
        "route:\n"
        "  receiver: wecom\n"
        "  group_by: ['id']\n"
        "  group_wait: 0s\n"
        "  group_interval: 1s\n"
        "  repeat_interval: 24h\n"
        "receivers:\n"
        "  - name: wecom\n"
        "    wechat_configs:\n"
        "      - send_resolved: false\n"
        f"        api_url: 'http://127.0.0.1:{sim_port}/cgi-bin/'\n"
        f"        corp_id: '{corp_id}'\n"
        f"        api_secret: '{secret}'\n"
        f"        agent_id: '{agent_id}'\n"
        "        to_user: '{{ .CommonLabels.user }}'\n"
        "        message: '{{ .CommonLabels.id }}'\n",
        encoding="utf-8",
    )


async def start(binary: str, work: Path, port: int) -> asyncio.subprocess.Process:
    """Alertmanager on 127.0.0.1:port with the config in work/alertmanager.yml, clustering off."""
    (work / "am-data").mkdir(exist_ok=True)
    log = os.open(work / "alertmanager.log", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        return await asyncio.create_subprocess_exec(
            binary, f"--config.file={work / 'alertmanager.yml'}", f"--storage.path={work / 'am-data'}",
            f"--web.listen-address=127.0.0.1:{port}", "--cluster.listen-address=", "--log.level=warn",
            stdout=asyncio.subprocess.DEVNULL, stderr=log,
        )
    finally:
        os.close(log)


def alert(number: int, user: str, starts_at: str) -> dict:
    """One alert for POST /api/v2/alerts: its own group (id), sent to `user`."""
    return {"labels": {"alertname": "FraudWarning", "id": f"AM-{number:07d}", "user": user},
            "annotations": {"summary": "压测"}, "startsAt": starts_at}
