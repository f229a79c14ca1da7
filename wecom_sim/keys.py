"""Typed keys for what the simulator app shares."""

from __future__ import annotations

from aiohttp import web

from .simulator import Simulator

SIMULATOR_KEY = web.AppKey("simulator", Simulator)
