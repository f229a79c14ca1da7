"""The local admin's password check, off the event loop and bounded.

scrypt takes tens of milliseconds of CPU by design; on the event loop a handful of clients posting
the login form would hold up intake and WeCom callbacks. Checks run in a small thread pool of their
own (hashlib.scrypt releases the GIL) at the lowest CPU priority, so on a busy machine the event loop
(intake, callbacks) always runs first; at most MAX_WAITING wait for it: beyond that a login is
refused at once (Busy) instead of queueing work without bound. A wrong account name is checked
against a dummy hash with the same parameters, so it costs what a wrong password costs and the time
taken says nothing about which names exist.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import os
import secrets
import threading
from concurrent.futures import ThreadPoolExecutor

from handlers.dashboard.session import hash_password, scrypt_parameters, verify_password

WORKERS = 1  # password checks at a time; a person logs in a few times a day, never many per second
MAX_WAITING = 16  # checks queued or running; more are refused with 429 until one finishes


def _lowest_priority() -> None:
    """Nice this thread (only this thread: Linux schedules threads one by one) to the lowest priority."""
    with contextlib.suppress(AttributeError, OSError):  # elsewhere: the thread keeps the process's priority
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 19)


class Busy(Exception):
    """Too many password checks in progress: try again in a moment."""


class PasswordChecker:
    def __init__(self, admin_user: str, admin_hash: str) -> None:
        self._user = admin_user.encode()
        self._hash = admin_hash
        self._dummy = ""
        self._executor = ThreadPoolExecutor(max_workers=WORKERS, thread_name_prefix="dashboard-scrypt",
                                            initializer=_lowest_priority)
        self._in_flight = 0

    async def start(self) -> None:
        if self._hash:  # the dummy costs one scrypt, off the loop like the rest
            self._dummy = await self._run(hash_password, secrets.token_urlsafe(16), *scrypt_parameters(self._hash))

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)

    async def check(self, user: str, password: str) -> bool:
        """Whether user and password are the local admin's; raises Busy when too many checks wait."""
        if not self._hash:
            return False  # no local account at all: nothing to find out, nothing to compute
        known = hmac.compare_digest(user.encode("utf-8", "surrogatepass"), self._user)
        matches = await self._run(verify_password, password, self._hash if known else self._dummy)
        return known and matches

    async def _run(self, function, *args):
        if self._in_flight >= MAX_WAITING:
            raise Busy
        loop = asyncio.get_running_loop()
        self._in_flight += 1
        job = self._executor.submit(function, *args)
        # Counted until the thread is done with it, even if the request that asked went away.
        job.add_done_callback(lambda _: self._finished(loop))
        return await asyncio.wrap_future(job)

    def _finished(self, loop: asyncio.AbstractEventLoop) -> None:
        def done() -> None:
            self._in_flight -= 1

        with contextlib.suppress(RuntimeError):  # the loop closed while a check still ran: nothing to count
            loop.call_soon_threadsafe(done)
