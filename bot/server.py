"""How the bot's HTTP server is started, and how it bounds slow and idle clients.

aiohttp closes a connection that stays idle for keepalive_timeout, but has no deadline for a request's
headers and no cap on connections. Here:

- header_timeout: from the first byte of a request to the end of its headers (slowloris); the
  connection is closed when it runs out.
- body_timeout: handlers.limits fails the body's reader after it (a 408).
- keepalive_timeout: aiohttp's, from the connection's start and after each answer.
- max_connections: at the cap a new connection closes the longest-idle one (no request in progress:
  idle keep-alive, or headers still trickling in), so idle clients cannot lock out the center's platform;
  when every connection is busy the newcomer is closed at once. The soft open-files limit is raised to
  fit the cap plus FD_HEADROOM (the database, the WeCom client's pool, logs), or the cap shrinks to fit.
- memory: buffers of a wave of slow clients are freed when they are answered, but glibc keeps the
  freed pages; every TRIM_INTERVAL the site hands them back to the system (malloc_trim), so the
  process returns to its size before the attack instead of staying at its peak.

docs/deployment.md has the systemd unit and the reverse proxy in front.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ctypes.util
import logging
import resource
import signal
from collections.abc import Callable
from typing import Any

from aiohttp import web
from aiohttp.web_protocol import RequestHandler

from bot.config import ServerSettings
from bot.logs import client_warning, quiet_client_failures

_LOGGER = logging.getLogger(__name__)

# Descriptors kept free for everything that is not a client connection: SQLite's database, WAL and
# shared-memory files and its readers, the WeCom client's pool (64), a PostgreSQL pool, logs, the listener.
FD_HEADROOM = 256
# How long the rest of a body refused early (413, 408) is read and dropped before the connection closes.
LINGERING_TIME = 2.0
BACKLOG = 1024  # connections the kernel queues before accept: bursts of new ones are not refused there
TRIM_INTERVAL = 60.0  # seconds between hand-backs of freed memory to the system


async def start(app: web.Application, settings: ServerSettings) -> web.AppRunner:
    """Start `app` on settings.host:port with the bounds above; the caller awaits runner.cleanup()."""
    quiet_client_failures()
    runner = web.AppRunner(app, access_log=None, handler_cancellation=False)
    await runner.setup()
    site = BoundedSite(runner, settings)
    await site.start()
    return runner


def run(app: web.Application, settings: ServerSettings) -> None:
    """Serve until SIGINT or SIGTERM, then stop the app cleanly (what web.run_app did)."""
    asyncio.run(_serve(app, settings))


async def _serve(app: web.Application, settings: ServerSettings) -> None:
    runner = await start(app, settings)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()


def connection_cap(wanted: int) -> int:
    """`wanted`, or fewer when the open-files limit cannot hold it beside FD_HEADROOM (raising the soft
    limit up to the hard one first, as systemd's LimitNOFILE= or `ulimit -Hn` allows)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    need = wanted + FD_HEADROOM
    if soft != resource.RLIM_INFINITY and soft < need:
        raised = need if hard == resource.RLIM_INFINITY else min(need, hard)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (raised, hard))
            soft = raised
        except (ValueError, OSError):
            pass
    if soft == resource.RLIM_INFINITY or soft >= need:
        return wanted
    cap = max(soft - FD_HEADROOM, soft // 4)
    _LOGGER.warning("open-files limit too low for server.max_connections: capped at %d connections", cap,
                    extra={"max_connections": wanted, "nofile_soft": soft, "nofile_hard": hard})
    return cap


class BoundedSite(web.BaseSite):
    """A TCP site whose connections are BoundedRequestHandlers sharing one connection cap."""

    def __init__(self, runner: web.AppRunner, settings: ServerSettings) -> None:
        super().__init__(runner, backlog=BACKLOG)
        self._settings = settings
        self._connections = Connections(connection_cap(settings.max_connections))
        self._trimming: asyncio.Task[None] | None = None

    @property
    def name(self) -> str:
        return f"http://{self._settings.host}:{self._settings.port}"

    async def start(self) -> None:
        await super().start()
        loop = asyncio.get_running_loop()
        server = self._runner.server
        assert server is not None
        handler_args: dict[str, Any] = {
            "loop": loop, "access_log": None, "keepalive_timeout": self._settings.keepalive_timeout,
            "lingering_time": LINGERING_TIME,
        }

        def protocol() -> BoundedRequestHandler:
            return BoundedRequestHandler(server, self._connections, self._settings.header_timeout, **handler_args)

        self._server = await loop.create_server(protocol, self._settings.host, self._settings.port,
                                                reuse_address=True, backlog=self._backlog)
        trim = _malloc_trim()
        if trim is not None:
            self._trimming = asyncio.create_task(_hand_back_freed_memory(trim))

    async def stop(self) -> None:
        if self._trimming is not None:
            self._trimming.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._trimming
        await super().stop()


def _malloc_trim() -> Callable[[int], int] | None:
    """glibc's malloc_trim, or None on a C library without it (musl, macOS)."""
    name = ctypes.util.find_library("c")
    try:
        return ctypes.CDLL(name).malloc_trim if name else None
    except (OSError, AttributeError):
        return None


async def _hand_back_freed_memory(trim: Callable[[int], int]) -> None:
    while True:
        await asyncio.sleep(TRIM_INTERVAL)
        trim(0)  # a few milliseconds for a heap of a few hundred MB


class Connections:
    """The open connections of a site, oldest first, within a cap."""

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self._open: dict[BoundedRequestHandler, None] = {}  # insertion order: oldest first

    def __len__(self) -> int:
        return len(self._open)

    def admit(self, handler: BoundedRequestHandler) -> bool:
        """Whether `handler`'s new connection may stay; at the cap, the longest-idle one makes room."""
        if len(self._open) >= self.cap:
            idle = next((h for h in self._open if h.idle), None)
            if idle is None:
                client_warning(_LOGGER, "connection_cap", "connection cap reached, every connection busy: "
                               "a new one closed", cap=self.cap)
                return False
            client_warning(_LOGGER, "connection_cap", "connection cap reached: the longest-idle one closed",
                           cap=self.cap)
            self.forget(idle)
            idle.force_close()
        self._open[handler] = None
        return True

    def forget(self, handler: BoundedRequestHandler) -> None:
        self._open.pop(handler, None)


class BoundedRequestHandler(RequestHandler):
    """aiohttp's connection protocol with a deadline on headers and a place under the connection cap."""

    def __init__(self, manager: web.Server, connections: Connections, header_timeout: float, **kwargs: Any) -> None:
        super().__init__(manager, **kwargs)
        self._connections = connections
        self._header_timeout = header_timeout
        self._header_deadline: asyncio.TimerHandle | None = None
        self._admitted = False

    @property
    def idle(self) -> bool:
        """No request being handled: waiting for one, or for the rest of its headers."""
        return not self._request_in_progress  # aiohttp's own flag (pinned aiohttp 3.14)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if not self._connections.admit(self):
            transport.abort()
            return
        self._admitted = True
        super().connection_made(transport)

    def connection_lost(self, exc: BaseException | None) -> None:
        if not self._admitted:
            return
        self._connections.forget(self)
        self._cancel_header_deadline()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        # aiohttp's loop awaits _waiter until a request's headers are parsed: bytes arriving while it is
        # still pending belong to headers not yet complete.
        waiting = self._waiter is not None and not self._waiter.done()
        if waiting and self._header_deadline is None:
            self._header_deadline = self._loop.call_later(self._header_timeout, self._headers_too_slow)
        elif not waiting:
            self._cancel_header_deadline()

    def _headers_too_slow(self) -> None:
        self._header_deadline = None
        if self._waiter is not None and not self._waiter.done():
            client_warning(_LOGGER, "slow_headers", "request headers not received in time: connection closed",
                           remote=_peer(self.transport))
            self.force_close()

    def _cancel_header_deadline(self) -> None:
        if self._header_deadline is not None:
            self._header_deadline.cancel()
            self._header_deadline = None


def _peer(transport: asyncio.BaseTransport | None) -> str | None:
    peer = transport.get_extra_info("peername") if transport is not None else None
    return peer[0] if isinstance(peer, tuple) else None

