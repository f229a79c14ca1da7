"""Structured logging: one JSON object per line, with the `extra` fields a call passes."""

from __future__ import annotations

import asyncio
import json
import logging
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.web_protocol import RequestPayloadError

from domain.masking import redact

_STANDARD = set(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {"message", "asctime", "taskName"}


def _message(record: logging.LogRecord) -> str:
    """The record's message; warnings and errors may quote values from elsewhere (a database driver's error
    names the offending argument), so phone, ID and bank card numbers in them are masked."""
    message = record.getMessage()
    return redact(message) if record.levelno >= logging.WARNING else message


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": _message(record),
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD:
                entry[key] = value
        if record.exc_info:
            entry["exc"] = redact(self.formatException(record.exc_info))
        return json.dumps(entry, ensure_ascii=False, default=str)


class TextFormatter(logging.Formatter):
    """Human-readable lines for the console, with the extra fields as key=value."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        if record.levelno >= logging.WARNING:
            line = redact(line)
        extras = " ".join(f"{k}={v}" for k, v in record.__dict__.items() if k not in _STANDARD)
        return f"{line} {extras}" if extras else line


def setup_logging(level: str = "INFO", fmt: str = "json") -> None:
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    quiet_client_failures()
    # APScheduler logs every run of the sweep at INFO; its warnings and errors still come through.
    logging.getLogger("apscheduler").setLevel(max(logging.WARNING, root.level))
    # aiosqlite logs every statement with its parameters at DEBUG: residents' names and phones, tokens.
    logging.getLogger("aiosqlite").setLevel(max(logging.INFO, logging.getLevelName(level)))


# -- client-side failures: one WARNING line each, rate-limited ---------------------------------------------
#
# Disconnects, malformed HTTP, stalled uploads and forged signatures are what an anonymous client can cause
# at will. Each is worth one line without a traceback, and not thousands a minute: past `per_window` lines
# of one kind in a window the rest are counted, and the first line of the next window carries that count.
# ERROR stays for what is wrong in Quanzu itself.


@dataclass
class _Window:
    start: float
    logged: int = 1
    suppressed: int = 0


class ClientWarnings:
    """At most `per_window` WARNING lines per kind of client failure per `window` seconds."""

    def __init__(self, per_window: int = 10, window: float = 60.0, clock: Callable[[], float] = time.monotonic):
        self.per_window = per_window
        self._window = window
        self._clock = clock
        self._windows: dict[str, _Window] = {}

    def admit(self, kind: str) -> tuple[bool, int]:
        """Whether to log this one, and how many of this kind went unlogged in the window before it."""
        now = self._clock()
        current = self._windows.get(kind)
        if current is None or now - current.start >= self._window:
            self._windows[kind] = _Window(now)
            return True, current.suppressed if current else 0
        if current.logged < self.per_window:
            current.logged += 1
            return True, 0
        current.suppressed += 1
        return False, 0


CLIENT_WARNINGS = ClientWarnings()


def client_warning(logger: logging.Logger, kind: str, message: str, **extra: object) -> None:
    """Log a failure the client caused as one rate-limited WARNING line (no traceback)."""
    log, suppressed = CLIENT_WARNINGS.admit(kind)
    if log:
        if suppressed:
            extra["suppressed_before"] = suppressed
        logger.warning(message, extra={"kind": kind, **extra})


def is_client_failure(exc: BaseException | None) -> bool:
    """A failure of the peer (gone, malformed HTTP, broken body framing), not of Quanzu."""
    return isinstance(exc, ConnectionError | HttpProcessingError | RequestPayloadError | asyncio.CancelledError)


class _ClientFailureFilter(logging.Filter):
    """aiohttp logs a malformed request or a vanished client at ERROR with a traceback ("Error handling
    request"): rewrite such records into one rate-limited WARNING line, drop the ones over the limit."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if not is_client_failure(exc):
            return True
        kind = "client_gone" if isinstance(exc, ConnectionError | asyncio.CancelledError) else "malformed_http"
        log, suppressed = CLIENT_WARNINGS.admit(kind)
        if not log:
            return False
        record.msg, record.args = "%s from a client: %s", (type(exc).__name__, _one_line(exc))
        record.levelno, record.levelname = logging.WARNING, "WARNING"
        record.exc_info, record.exc_text = None, None
        record.kind = kind
        if suppressed:
            record.suppressed_before = suppressed
        return True


def _one_line(exc: BaseException | None) -> str:
    """The exception's text on one line, short (aiohttp's parser errors quote the offending bytes)."""
    return " ".join(str(exc).split())[:200]


_CLIENT_FAILURE_FILTER = _ClientFailureFilter()


def quiet_client_failures() -> None:
    """Install the filter on aiohttp's server loggers (idempotent)."""
    for name in ("aiohttp.server", "aiohttp.web"):
        logger = logging.getLogger(name)
        if _CLIENT_FAILURE_FILTER not in logger.filters:
            logger.addFilter(_CLIENT_FAILURE_FILTER)
