"""Fixtures: a real WeCom simulator over HTTP, a real database, the real app factory.

The database is a SQLite file in the test's folder, or with QUANZU_TEST_BACKEND=postgresql a fresh
schema of the local PostgreSQL (tests/pg.py); scripts/test runs the suite once for each.
"""

from __future__ import annotations

import asyncio
import json
import os

import pytest

from bot.app import SERVICES, create_app
from bot.config import parse_settings
from bot.demo import seed_simulator
from bot.directory import load_directory_file
from tests.browser import chromium
from tests.helpers import DISTRICT, TOKEN, create_chats_as_operator, free_port
from tests.pg import drop_left_schemas, new_pg_schema
from wecom_sim import Simulator, SimulatorConfig, create_simulator_app
from wecom_sim.clock import SimClock

BACKEND = os.environ.get("QUANZU_TEST_BACKEND", "sqlite")
if BACKEND not in {"sqlite", "postgresql"}:
    raise RuntimeError("QUANZU_TEST_BACKEND must be sqlite or postgresql")


def pytest_configure(config):
    config.addinivalue_line("markers", "sim_start(epoch): start the simulator's (and bot's) clock at this time")
    config.addinivalue_line("markers", "sqlite_only: about the SQLite file itself (skipped on PostgreSQL)")
    config.addinivalue_line("markers", "postgresql_only: needs PostgreSQL itself (runs in the PostgreSQL pass)")


def pytest_report_header(config):
    return f"storage backend: {BACKEND}"


def pytest_sessionfinish(session, exitstatus):
    asyncio.run(drop_left_schemas())


def pytest_collection_modifyitems(config, items):
    other = "postgresql_only" if BACKEND == "sqlite" else "sqlite_only"
    skip = pytest.mark.skip(reason=f"{other}: runs in the other backend's pass of scripts/test")
    for item in items:
        if item.get_closest_marker(other):
            item.add_marker(skip)


@pytest.fixture
async def database(tmp_path):
    """The [database] section of the bots a test starts (a fresh, empty database)."""
    if BACKEND == "postgresql":
        return {"url": await new_pg_schema()}
    return {"path": str(tmp_path / "quanzu.sqlite3")}


@pytest.fixture
def db_toml(database) -> str:
    """The same as the lines of a [database] section, for tests that write a config file."""
    return "\n".join(f"{key} = {json.dumps(value)}" for key, value in database.items())


@pytest.fixture
def sim(request) -> Simulator:
    """A simulated corp holding the demo district's people and robots (its app chats: `sim_server`)."""
    marker = request.node.get_closest_marker("sim_start")
    clock = SimClock(marker.args[0]) if marker else None
    # Interaction cards need an app with a callback URL; the bot fixture points it at the bot.
    simulator = Simulator(SimulatorConfig(callback_url="http://127.0.0.1:9/wecom/callback", customer_contact=True),
                          clock=clock)  # the admin put the app on 客户联系 → 可调用应用 (customer-group pushes)
    seed_simulator(simulator, load_directory_file(DISTRICT))
    return simulator


@pytest.fixture
async def sim_server(aiohttp_server, sim):
    """The simulator over HTTP, with the directory's app group chats created by the app, as an operator would."""
    server = await aiohttp_server(create_simulator_app(sim))
    await create_chats_as_operator(sim, str(server.make_url("")).rstrip("/"))
    return server


@pytest.fixture
async def sim_client(aiohttp_client, sim_server):
    """An HTTP client for the simulator's inspection and control endpoints."""
    return await aiohttp_client(sim_server)


@pytest.fixture
def make_settings(sim, database):
    """Settings for a bot talking to the simulator; overrides per section."""

    def build(sim_url: str, **sections):
        raw = {
            "database": dict(database),
            "wecom": {
                "corp_id": sim.config.corp_id,
                "corp_secret": sim.config.corp_secret,
                "agent_id": sim.config.agent_id,
                "token": sim.config.token,
                "encoding_aes_key": sim.config.encoding_aes_key,
                "api_base": f"{sim_url}/cgi-bin/",
                "request_timeout": 2.0,
            },
            "api": {"tokens": [TOKEN, "second-token-for-rotation"]},
            "directory": {"path": str(DISTRICT)},
            "delivery": {"backoff_base": 0.05, "backoff_max": 0.2, "max_attempts": 4},
            # Only the sweep at start: tests of deadlines ask for a fast one (tests/test_escalation.py).
            "escalation": {"sweep_interval": 3600},
            # Bulletins only where a test asks for them (tests/test_bulletins.py): none at start-up.
            "bulletin": {"enabled": False},
        }
        for section, values in sections.items():
            raw.setdefault(section, {}).update(values)
        return parse_settings(raw)

    return build


@pytest.fixture
async def bot(aiohttp_client, sim_server, sim, make_settings):
    """The bot's test client; its clock is the simulator's, so tests move both at once."""
    settings = make_settings(str(sim_server.make_url("")).rstrip("/"))
    client = await aiohttp_client(create_app(settings, clock=sim.clock.now))
    sim.config.callback_url = str(client.make_url("/wecom/callback"))
    return client


@pytest.fixture
def start_bot(aiohttp_client, sim_server, sim, make_settings):
    """Start (or restart, on the same database) a bot with these awareness campaigns and [awareness] keys."""

    async def start(*campaigns: dict, directory: str | None = None, **awareness):
        sections = {"awareness": {"check_interval": 0.05, "campaigns": list(campaigns), **awareness}}
        if directory:
            sections["directory"] = {"path": directory}
        settings = make_settings(str(sim_server.make_url("")).rstrip("/"), **sections)
        return await aiohttp_client(create_app(settings, clock=sim.clock.now))

    return start


@pytest.fixture
async def dash(aiohttp_client, sim, sim_server, make_settings):
    """The bot with its dashboard's WeCom OAuth pointed at the simulator and a local admin (tests.helpers)."""
    from tests.helpers import ADMIN_HASH

    sim_url = str(sim_server.make_url("")).rstrip("/")
    # On the port its config names: OAuth's redirect_uri is built from the config, never the Host header.
    port = free_port()
    settings = make_settings(sim_url, server={"port": port},
                             dashboard={"oauth_authorize_url": f"{sim_url}/connect/oauth2/authorize",
                                        "admin_password_hash": ADMIN_HASH})
    client = await aiohttp_client(create_app(settings, clock=sim.clock.now), server_kwargs={"port": port})
    sim.config.callback_url = str(client.make_url("/wecom/callback"))
    return client


@pytest.fixture
async def browser():
    """A phone-sized headless chromium; the test fails if any page logged an error (CSP, script, 404)."""
    errors: list[str] = []
    async with chromium() as context:
        context.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
        context.on("weberror", lambda error: errors.append(str(error.error)))
        yield context
    assert errors == []


def services(client):
    return client.server.app[SERVICES]
