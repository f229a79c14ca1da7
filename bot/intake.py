"""Accepting instructions from the center: validate, store durably with their outbox rows, hand those to the sender."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from bot.dispatch import DispatchPlanner
from bot.metrics import Metrics
from bot.validation import validate_instruction
from domain.models import AcceptResult, NewInstruction, OutboxRow
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
        """Validate each object; store the valid ones; answer per object, in order.

        The valid ones go in one transaction. Should that fail (validation refuses all that is known to
        trip storing or rendering, so this is a database fault or a bug), each is stored on its own, so
        that one item can never keep the others of its batch from being stored."""
        now = self._clock()
        outcomes: list[ItemOutcome | None] = []
        valid: list[tuple[int, NewInstruction]] = []
        for index, obj in enumerate(objects):
            item, errors = validate_instruction(obj, now)
            if item is None:
                self._metrics.instructions_rejected.inc()
                outcomes.append(ItemOutcome(400, {"error": "指令内容有误", "errors": errors, **_number_of(obj)}))
            else:
                valid.append((index, item))
                outcomes.append(None)
        if valid:
            planner = self._planner()
            items = [item for _, item in valid]
            try:
                results: list[AcceptResult | None] = list(await self._store(items, planner, now))
            except Exception:
                results = [await self._store_alone(item, planner, now) for item in items]
            self._send([row for result in results if result is not None for row in result.outbox])
            for (index, item), result in zip(valid, results, strict=True):
                outcomes[index] = self._accepted(item, result) if result is not None else _not_stored(item)
        return outcomes  # type: ignore[return-value]

    async def _store(self, items: list[NewInstruction], planner: DispatchPlanner, now: float) -> list[AcceptResult]:
        return await self._storage.accept_instructions(items, lambda item: planner.route(item, now), planner, now)

    async def _store_alone(self, item: NewInstruction, planner: DispatchPlanner, now: float) -> AcceptResult | None:
        try:
            (result,) = await self._store([item], planner, now)
        except Exception:  # the storage layer logged why; the center is told to send this one again
            return None
        return result

    def _accepted(self, item: NewInstruction, result: AcceptResult) -> ItemOutcome:
        body = {"id": result.id, "instruction_no": result.instruction_no, "status": result.state}
        if result.created:
            self._metrics.instructions_received.labels(item.risk_level).inc()
            return ItemOutcome(202, body)
        self._metrics.instructions_duplicate.inc()
        return ItemOutcome(200, {**body, "duplicate": True})


def _not_stored(item: NewInstruction) -> ItemOutcome:
    return ItemOutcome(503, {"error": "指令未能写入数据库，请稍后重试", "instruction_no": item.instruction_no})


def _number_of(obj: Any) -> dict[str, Any]:
    if isinstance(obj, dict) and isinstance(obj.get("instruction_no"), str):
        return {"instruction_no": obj["instruction_no"]}
    return {}
