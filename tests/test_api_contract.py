"""The API's contract: its OpenAPI description is valid and complete, and the running bot keeps it.

schemathesis generates requests from the description (positive cases that fit the schemas, negative ones
that break them), sends them over HTTP to the bot listening on its port, and checks every answer: never a
5xx, a documented status code, the documented content type and headers, and a body that fits the
documented schema; and a negative case must be refused (4xx), except by the batch intake, which answers
200 with a 400 per bad item. Hypothesis runs derandomized (the same cases on every run) in a worker thread while
the bot serves on the test's event loop. Figures per operation are printed for the drills table.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from datetime import datetime
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from openapi_spec_validator import validate
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import FailureGroup
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from bot.app import create_app
from bot.render import SHANGHAI
from tests.helpers import AUTH, instruction

# Nothing here depends on the storage backend: the PostgreSQL pass would repeat the same HTTP cases.
pytestmark = pytest.mark.sqlite_only

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_headers_conformance,
          response_schema_conformance]
# A batch that breaks the schema is answered 200 with a 400 per bad item (the valid ones are stored): by design.
BATCH_OPERATION = "POST /api/v1/instructions"
CASES = {GenerationMode.POSITIVE: 75, GenerationMode.NEGATIVE: 50}  # per operation (and per fixed path value)
CAMPAIGN = {"name": "weekly", "title": "每周宣防", "schedule": "30 9 * * 1", "selection": "rotation",
            "audience": {"tags": ["老年人"]}}
CONTRACT = settings(derandomize=True, database=None, deadline=None, print_blob=False,
                    suppress_health_check=list(HealthCheck), phases=(Phase.explicit, Phase.generate, Phase.shrink))


@pytest.fixture
async def contract_bot(aiohttp_client, sim, make_settings):
    """The bot on a real port with one campaign; WeCom unreachable, so no CPU goes to delivery."""
    settings_ = make_settings("http://127.0.0.1:9", awareness={"campaigns": [CAMPAIGN]})
    return await aiohttp_client(create_app(settings_, clock=sim.clock.now))


async def test_the_description_is_valid_openapi_served_without_a_token_and_covers_every_api_route(contract_bot):
    resp = await contract_bot.get("/api/v1/openapi.json")
    assert resp.status == 200 and resp.content_type == "application/json"
    description = await resp.json()
    validate(description)  # raises on any violation of the OpenAPI 3.1 schema
    described = {(method.upper(), path) for path, item in description["paths"].items()
                 for method in item if method != "parameters"}
    served = {(route.method, route.resource.canonical) for route in contract_bot.server.app.router.routes()
              if route.resource is not None and route.resource.canonical.startswith("/api/v1/")
              and route.method != "HEAD"}
    assert described == served


async def test_schemathesis_finds_no_5xx_and_no_answer_outside_the_description(contract_bot):
    description = await (await contract_bot.get("/api/v1/openapi.json")).json()
    number = (await (await contract_bot.post("/api/v1/instructions", json=instruction(), headers=AUTH)).json())["id"]
    run = await (await contract_bot.post(f"/api/v1/campaigns/{CAMPAIGN['name']}/run", headers=AUTH)).json()
    schema = schemathesis.openapi.from_dict(description)
    base_url = str(contract_bot.make_url("")).rstrip("/")
    # Generated path values almost never name something that exists: half the cases use one that does.
    existing = {"name": CAMPAIGN["name"], "id": number, "run_id": run["run"]["id"]}
    started = time.monotonic()
    figures, failures = await asyncio.to_thread(_drive, schema, base_url, existing)
    took = time.monotonic() - started
    total = sum(figures.values())
    by_run: dict[tuple[str, str], Counter] = {}
    for (operation, variant, status), cases in figures.items():
        by_run.setdefault((operation, variant), Counter())[status] += cases
    for (operation, variant), statuses in sorted(by_run.items()):
        print(f"schemathesis {operation} [{variant}]: {statuses.total()} cases, status codes {dict(statuses)}")
    operations = {operation for operation, _ in by_run}
    print(f"schemathesis: {len(operations)} operations, {total} cases in {took:.0f} s, {len(failures)} failures")
    assert failures == [], "\n\n".join(failures)
    assert total >= 2000


def _drive(schema, base_url: str, existing: dict[str, Any]) -> tuple[Counter, list[str]]:
    figures: Counter = Counter()
    failures: list[str] = []
    for result in schema.get_all_operations():
        operation = result.ok()
        label = f"{operation.method.upper()} {operation.path}"
        fixed = {p.name: existing[p.name] for p in operation.path_parameters if p.name in existing}
        variants = [("any", {})] + ([("existing", fixed)] if fixed else [])
        for mode, examples in CASES.items():
            for variant, path_parameters in variants:
                strategy = operation.as_strategy(generation_mode=mode, path_parameters=path_parameters or None)
                if label == BATCH_OPERATION and mode is GenerationMode.POSITIVE:
                    strategy = st.tuples(strategy, st.booleans()).map(_recently_issued)
                key = (label, f"{mode.value}, {variant} path")
                try:
                    checks = CHECKS if label == BATCH_OPERATION else [*CHECKS, negative_data_rejection]
                    _run_cases(strategy, examples, base_url, checks,
                               lambda status, key=key: figures.update([(*key, status)]))
                except Unsatisfiable:  # nothing in this operation can be made invalid (no parameters, no body)
                    continue
                except (Exception, FailureGroup) as failure:  # every operation runs; all failures are reported
                    failures.append(f"{key}: {failure}")
    return figures, failures


def _run_cases(strategy, examples: int, base_url: str, checks: list, count) -> None:
    @settings(CONTRACT, max_examples=examples)
    @given(strategy)
    def check(case) -> None:
        response = case.call(base_url=base_url, headers=AUTH, timeout=30)
        count(response.status_code)
        case.validate_response(response, checks=checks)

    check()


def _recently_issued(drawn: tuple[Any, bool]) -> Any:
    """Most generated dates are outside what the intake accepts (2000 … now + 1 day): move half of them to
    today, so that the accepting path (202, 200 duplicates, batches) gets its share of the cases."""
    case, move = drawn
    if move:
        today = datetime.now(SHANGHAI).isoformat(timespec="seconds")
        for item in case.body if isinstance(case.body, list) else [case.body]:
            if isinstance(item, dict) and "issued_at" in item:
                item["issued_at"] = today
    return case
