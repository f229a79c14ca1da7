"""A WeCom (企业微信) simulator that speaks the real HTTP API, for tests, demos and benchmarks."""

from .app import create_simulator_app
from .clock import SimClock
from .config import SimulatorConfig
from .keys import SIMULATOR_KEY
from .simulator import ApiResponse, Simulator

__all__ = ["SIMULATOR_KEY", "ApiResponse", "SimClock", "Simulator", "SimulatorConfig", "create_simulator_app"]
