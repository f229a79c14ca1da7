"""Who may see what on the dashboard. Roles come from the directory, looked up at every request.

- the center (directory role `center`, or the local admin): every instruction, unmasked; statistics,
  bulletins and exports of all stations;
- a station leader or officer: the instructions of their station, unmasked there; their station's
  statistics, bulletin and exports;
- a grid worker: only the instructions assigned to them (the board and their details); no statistics
  or exports.
Lists (the board, exports unless the center asks for full data) show residents masked (唐某, 138****8000).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from domain.directory import Directory
from domain.models import Assignment, Instruction
from domain.reports import ReportFilter

ADMIN_ROLE = "admin"


@dataclass(frozen=True)
class Viewer:
    userid: str
    name: str
    role: str  # admin | center | station_leader | officer | grid_worker
    station: str | None = None

    @property
    def is_center(self) -> bool:
        return self.role in (ADMIN_ROLE, "center")

    @property
    def sees_statistics(self) -> bool:
        return self.role != "grid_worker"

    def scope(self) -> ReportFilter:
        """The restriction every query of this viewer carries."""
        if self.is_center:
            return ReportFilter()
        if self.role == "grid_worker":
            return ReportFilter(assignee=self.userid)
        return ReportFilter(stations=(self.station,) if self.station else ())

    def stations(self, directory: Directory) -> list[str]:
        """The station codes this viewer may pick in filters."""
        if self.is_center:
            return list(directory.stations)
        return [self.station] if self.station in directory.stations else []

    def may_view(self, instruction: Instruction, assignments: Sequence[Assignment]) -> bool:
        """May open this instruction's detail, with the resident unmasked."""
        if self.is_center:
            return True
        if self.role == "grid_worker":
            return any(a.userid == self.userid and (a.active or a.acked_at) for a in assignments)
        return self.station is not None and instruction.routed_station == self.station


def viewer_for(userid: str, directory: Directory, admin_user: str) -> Viewer | None:
    """The viewer a session names, as the directory says now (None if they left it)."""
    if userid == f"admin:{admin_user}":
        return Viewer(userid, "中心管理员", ADMIN_ROLE)
    person = directory.people.get(userid)
    if person is None:
        return None
    return Viewer(person.userid, person.name, person.role, person.station_code)
