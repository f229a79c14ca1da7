"""The WeCom simulator is a package of its own: it imports nothing of the service."""

from __future__ import annotations

import subprocess
import sys

from tests.helpers import ROOT

_PROBE = """
import sys

class RefuseService:
    # Any import of the service's packages fails: the simulator must stand without them.
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("bot", "handlers", "storage"):
            raise ImportError(f"the simulator imported {name}")
        return None

sys.meta_path.insert(0, RefuseService())
import wecom_sim
from wecom_sim import Simulator, SimulatorConfig, create_simulator_app

app = create_simulator_app(Simulator(SimulatorConfig(corp_id="ww1", corp_secret="s", agent_id=1)))
print(sorted(m.split(".")[0] for m in sys.modules if m.split(".")[0] in ("bot", "handlers", "storage")))
"""


def test_the_simulator_imports_and_builds_its_app_without_the_service():
    result = subprocess.run([sys.executable, "-c", _PROBE], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
