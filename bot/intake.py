"""Accepting instructions from the center: validate, store durably with their outbox rows, hand those to the sender."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from bot.dispatch import DispatchPlanner
from bot.metrics import Metrics
from bot.models import AcceptResult, NewInstruction, OutboxRow
from bot.validation import validate_instruction
from storage import Storage


@dataclass(frozen=True)
class ItemOutcome:
    """What the center is told about one instruction: an HTTP status and a JSON body."""

    status: int
    body: dict[str, Any]


class IntakeService:
    def __init__(self, storage: Storage, planner: Callable[[], DispatchPlanner],
                 send: Callable[[Sequence[OutboxRow]], None], metrics: Metrics, clock: Callable[[], float]) -> None:
        self._storage = storage
        self._planner = planner
        self._send = send
        self._metrics = metrics
        self._clock = clock

    async def submit(self, objects: list[Any]) -> list[ItemOutcome]:
        """Validate each object; store the valid ones in one transaction; answer per object, in order."""
        outcomes: list[ItemOutcome | None] = []
        valid: list[NewInstruction] = []
        for obj in objects:
            item, errors = validate_instruction(obj)
            if item is None:
                self._metrics.instructions_rejected.inc()
                outcomes.append(ItemOutcome(400, {"error": "指令内容有误", "errors": errors,
                                                  **_number_of(obj)}))
            else:
                valid.append(item)
                outcomes.append(None)
        if valid:
            planner = self._planner()
            now = self._clock()
            results = await self._storage.accept_instructions(
                valid, lambda item: planner.route(item, now), planner, now
            )
            self._send([row for result in results for row in result.outbox])
            accepted = iter(zip(valid, results, strict=True))
            outcomes = [o if o is not None else self._accepted(*next(accepted)) for o in outcomes]
        return outcomes  # type: ignore[return-value]

    def _accepted(self, item: NewInstruction, result: AcceptResult) -> ItemOutcome:
        body = {"id": result.id, "instruction_no": result.instruction_no, "status": result.state}
        if result.created:
            self._metrics.instructions_received.labels(item.risk_level).inc()
            return ItemOutcome(202, body)
        self._metrics.instructions_duplicate.inc()
        return ItemOutcome(200, {**body, "duplicate": True})


def _number_of(obj: Any) -> dict[str, Any]:
    if isinstance(obj, dict) and isinstance(obj.get("instruction_no"), str):
        return {"instruction_no": obj["instruction_no"]}
    return {}
