"""What the simulator saw: delivered messages and per-API call counters."""

from __future__ import annotations

import bisect
from collections import Counter, defaultdict
from typing import Any


class MessageLog:
    """Successful message calls in arrival order; `seq` keeps growing across clears."""

    def __init__(self) -> None:
        self.records: list[dict[str, Any]] = []
        self._next_seq = 1

    def append(self, **fields: Any) -> dict[str, Any]:
        """Store one record, stamping it with the next sequence number."""
        record = {
            "seq": self._next_seq,
            "at": None,
            "api": None,
            "msgtype": None,
            "to_users": [],
            "chatid": None,
            "robot_key": None,
            "body": None,
            "delivered_to": [],
            "dropped_for": [],
            "duplicate": False,
            "truncated": False,
            "msgid": None,
            "response_code": None,
            "task_id": None,
        }
        unknown = fields.keys() - record.keys()
        if unknown:
            raise TypeError(f"unknown record fields: {sorted(unknown)}")
        record.update(fields)
        self._next_seq += 1
        self.records.append(record)
        return record

    def query(
        self,
        *,
        api: str | None = None,
        user: str | None = None,
        chatid: str | None = None,
        robot: str | None = None,
        since: int | None = None,
    ) -> list[dict[str, Any]]:
        """Return records matching every given filter; `user` matches delivered_to."""
        records = self.records
        if since is not None:
            records = records[bisect.bisect_right(records, since, key=lambda r: r["seq"]) :]
        wanted_user = user.lower() if user else None
        return [
            record
            for record in records
            if (api is None or record["api"] == api)
            and (chatid is None or record["chatid"] == chatid)
            and (robot is None or record["robot_key"] == robot)
            and (wanted_user is None or any(u.lower() == wanted_user for u in record["delivered_to"]))
        ]

    def clear(self) -> None:
        """Forget every record (sequence numbers are not reused)."""
        self.records.clear()


class Stats:
    """Calls per API and failures per errcode or injected HTTP status."""

    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()
        self.errors: Counter[int] = Counter()
        self.errors_by_api: defaultdict[str, Counter[int]] = defaultdict(Counter)
        self.http_errors: Counter[int] = Counter()

    def count_call(self, api: str) -> None:
        """Count one call of `api`."""
        self.calls[api] += 1

    def count_error(self, api: str, errcode: int) -> None:
        """Count one errcode answer of `api`."""
        self.errors[errcode] += 1
        self.errors_by_api[api][errcode] += 1

    def count_http_error(self, status: int) -> None:
        """Count one injected HTTP failure."""
        self.http_errors[status] += 1

    def snapshot(self) -> dict[str, Any]:
        """Return the counters as JSON-ready dicts."""
        return {
            "calls": dict(self.calls),
            "errors": {str(code): n for code, n in self.errors.items()},
            "errors_by_api": {
                api: {str(code): n for code, n in codes.items()} for api, codes in self.errors_by_api.items()
            },
            "http_errors": {str(status): n for status, n in self.http_errors.items()},
        }
