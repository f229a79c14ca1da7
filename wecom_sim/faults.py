"""Injected failures: the next n calls of an API answer an errcode or an HTTP error."""

from __future__ import annotations

from dataclasses import asdict, dataclass

ANY_API = "*"


@dataclass
class Fault:
    """One planned failure and how many more calls it will hit."""

    api: str
    errcode: int | None
    http_status: int | None
    remaining: int


class FaultPlan:
    """Faults waiting to hit calls, oldest first."""

    def __init__(self) -> None:
        self._faults: list[Fault] = []

    def add(self, api: str, *, errcode: int | None = None, http_status: int | None = None, times: int = 1) -> None:
        """Make the next `times` calls of `api` (or of any API for "*") fail."""
        if (errcode is None) == (http_status is None):
            raise ValueError("give exactly one of errcode or http_status")
        if errcode == 0:
            raise ValueError("errcode 0 is success, not a fault")
        if http_status is not None and not 100 <= http_status <= 599:
            raise ValueError("http_status must be an HTTP status code")
        if times < 1:
            raise ValueError("times must be at least 1")
        self._faults.append(Fault(api, errcode, http_status, times))

    def take(self, api: str) -> Fault | None:
        """Consume one hit of the first fault that matches `api`, if any."""
        for fault in self._faults:
            if fault.api in (api, ANY_API):
                fault.remaining -= 1
                if fault.remaining == 0:
                    self._faults.remove(fault)
                return fault
        return None

    def clear(self) -> None:
        """Drop every planned fault."""
        self._faults.clear()

    def pending(self) -> list[dict]:
        """Describe the faults still waiting."""
        return [asdict(fault) for fault in self._faults]
