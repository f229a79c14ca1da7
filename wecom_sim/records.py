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
        # Grows on every append and clear, so viewers can tell that something changed.
        self.revision = 0

    @property
    def last_seq(self) -> int:
        """The seq of the newest record ever stored (0 before the first), cleared or not."""
        return self._next_seq - 1

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
        self.revision += 1
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
        self.revision += 1


class TextLog:
    """The 1:1 app chat items that are no API call: texts members typed and the app's passive text replies.

    A record is `{"seq", "at", "api", "userid", "content", "msg_id", "state", "status", "after_message_seq"}`:
    `api` is "callback/text" (typed by `userid`, sent to the bot as a text callback; `state` goes from
    "sending" to "delivered" or "failed", `status` is the callback's last HTTP status) or "reply/text"
    (the bot's passive text reply to the text with MsgId `msg_id`, shown to `userid`).
    `after_message_seq` is the MessageLog seq current when the item happened, which places it among messages.
    """

    APIS = ("callback/text", "reply/text")

    def __init__(self) -> None:
        self.records: list[dict[str, Any]] = []
        self._next_seq = 1
        self.revision = 0

    def append(
        self, *, at: float, api: str, userid: str, content: str, msg_id: int | None, after_message_seq: int
    ) -> dict[str, Any]:
        """Store one item, stamping it with the next sequence number."""
        if api not in self.APIS:
            raise ValueError(f"api must be one of {self.APIS}")
        record = {
            "seq": self._next_seq,
            "at": at,
            "api": api,
            "userid": userid,
            "content": content,
            "msg_id": msg_id,
            "state": "sending" if api == "callback/text" else None,
            "status": None,
            "after_message_seq": after_message_seq,
        }
        self._next_seq += 1
        self.revision += 1
        self.records.append(record)
        return record

    def settle(self, record: dict[str, Any], *, status: int | None) -> None:
        """Mark a typed text as delivered (the bot answered HTTP 200) or failed."""
        record["status"] = status
        record["state"] = "delivered" if status == 200 else "failed"
        self.revision += 1

    def query(self, *, user: str | None = None, since: int | None = None) -> list[dict[str, Any]]:
        """Return items of one member's app chat (any member without `user`), after seq `since`."""
        records = self.records
        if since is not None:
            records = records[bisect.bisect_right(records, since, key=lambda r: r["seq"]) :]
        wanted = user.lower() if user else None
        return [record for record in records if wanted is None or record["userid"].lower() == wanted]

    def clear(self) -> None:
        """Forget every item (sequence numbers are not reused)."""
        self.records.clear()
        self.revision += 1


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
