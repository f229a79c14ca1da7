"""The delivery worker: sends outbox rows to WeCom, at most once per row as WeCom sees it.

The database is the queue. An in-memory event only wakes the worker early (with other instances on
the same database it also looks every [cluster] poll_interval); on start it rebuilds the rate-limit
windows from the send history. Rows a stopped process had claimed are taken back by bot/cluster.py.
Order: most urgent risk first, then oldest. A new instruction's messages skip the queue's round trip:
intake stores them already claimed for this process, and `take` starts them as soon as they are
committed (unless they must wait, when they go back to the queue).

An outage of WeCom (unreachable, 5xx, errcode -1) spends no attempts: the breaker in bot/outage.py holds
the queue and probes with one message at a time; when WeCom answers again the backlog goes out in queue
order and the center's group gets one notice for the whole outage. Rate-limit answers (45009, 45033)
never make a message fail either: it waits for the window.

A credential or permission error (wrong secret, IP not trusted, 48002 …) is not the message's fault
either, and no retry cures it: the same breaker, tripped at once, pauses what it affects (every channel
with an access token, or the one channel a permission covers; robots keep working), probes it now and
then with one message, keeps the rest due, tells the center's group once when its own channel still
works, and shows the reason in /healthz. Once the setting is fixed (and the bot restarted if it was in
the config file) everything goes out in queue order.

A card update (purpose card_update, bot/cards.py) calls message/update_template_card with the response_code
its action claimed. Codes work once: if WeCom says the code is used or expired (60140) the update is dropped —
not retried, no alarm (the card keeps its 刷新 button) — unless an earlier attempt of the same row may have
spent it, which counts as done. No card update is reported to the center's group as a failed delivery.

Exactly-once: a row is claimed (state 'sending', committed) before its HTTP call and marked sent
after. A crash in between leaves the row claimed; it is re-sent byte for byte, and for personal
cards WeCom's duplicate check (and the card's unique task_id) keeps the person from seeing it twice.
A claim only succeeds on a row still pending, so of several instances reading the same queue exactly
one sends each row.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

from bot.config import DeliverySettings
from bot.dispatch import DispatchPlanner
from bot.metrics import Metrics
from bot.outage import NOTICE_AFTER, Breaker, Recovery, is_outage_failure
from bot.ratelimit import SendLimiter
from bot.render import Renderer
from bot.wecom import WeComClient, WeComError, WeComRejected, WeComRetryable, WeComTokenError
from bot.wecom.client import invalid_users
from bot.wecom.errors import TOKEN_CHANNELS, WeComRateLimited, operator_advice, pause_scope
from domain.cards import UPDATE_PURPOSE
from domain.directory import ChatGroup, Directory
from domain.models import RISK_LABELS, OutboxRow
from storage import Storage

_LOGGER = logging.getLogger(__name__)
_FETCH = 200
_PURPOSE_LABELS = {
    "station_notice": "派出所群通知",
    "assignee_card": "个人任务卡片",
    "fallback_notice": "中心人工指派通知",
    "failure_notice": "推送失败通知",
    "awareness": "宣防推送",
    "outage_notice": "企业微信中断通知",
    "credential_notice": "企业微信配置错误通知",
    UPDATE_PURPOSE: "卡片状态更新",
}
# Failures of these are not reported row by row: a failure notice would report itself, and
# awareness pushes are reported once per campaign run by bot/awareness.
_NOT_REPORTED_PER_ROW = frozenset({"failure_notice", "outage_notice", "credential_notice", "awareness",
                                   UPDATE_PURPOSE})
_TASK_ID_EXISTS = 42014
_CODE_UNUSABLE = 60140  # a response_code used or expired
_CONCURRENCY_LIMIT = 45033
# While paused for a credential or permission error: first probe after 30 s, then at most every 5 minutes
# (many wrong-secret calls from one IP get it blocked for an hour).
_PAUSE_PROBE = (30.0, 300.0)
# Held messages are looked at again this often whatever the probe interval, so that after a restart with the
# setting fixed (the pause is in memory) they go out within this long.
_HELD_LOOK = 15.0
_IDLE_LOOK = 5.0  # longest sleep of the sender between two looks at the queue


class DeliveryWorker:
    """Background sender of due outbox rows, with retries, limits and failure reporting."""

    def __init__(self, storage: Storage, client: WeComClient, settings: DeliverySettings, metrics: Metrics,
                 renderer: Renderer, planner: Callable[[], DispatchPlanner],
                 clock: Callable[[], float] = time.time, limiter: SendLimiter | None = None,
                 poll_interval: float | None = None) -> None:
        self._storage = storage
        self._client = client
        self._settings = settings
        self._metrics = metrics
        self._renderer = renderer
        self._planner = planner
        self._clock = clock
        self._limiter = limiter or SendLimiter()
        self._poll_interval = poll_interval
        self._wakeup = asyncio.Event()
        self._inflight: set[asyncio.Task[None]] = set()
        # `concurrency` bounds the WeCom calls in flight; recording results in the database happens
        # outside that bound, so more rows than that may be claimed and in progress at once.
        self._http_slots = asyncio.Semaphore(settings.concurrency)
        self._max_inflight = settings.concurrency * 4
        self._loop_task: asyncio.Task[None] | None = None
        self._breaker = Breaker(settings.backoff_base, min(settings.backoff_max, 15.0))
        self._returned: list[tuple[int, float]] = []  # taken at intake, not sent: back to the queue, due then
        self._backlog = False  # the last look at the queue found more due than it could start
        # Paused by a credential or permission error, per scope ("token" or a channel): breaker, reason, rows held.
        self._paused: dict[str, Breaker] = {}
        self._pause_reasons: dict[str, str] = {}
        self._held: dict[str, set[int]] = {}

    @property
    def paused_reasons(self) -> list[str]:
        """Why sending is paused (Chinese, one line per credential or permission problem); empty when it is not."""
        return list(self._pause_reasons.values())

    def _pause_of(self, channel: str) -> tuple[str, Breaker] | None:
        """The pause that holds messages of this channel, if any."""
        if channel not in TOKEN_CHANNELS:
            return None
        for scope in ("token", channel):
            if scope in self._paused:
                return scope, self._paused[scope]
        return None

    @property
    def outage_since(self) -> float | None:
        """When WeCom stopped answering, while the worker holds the queue for it; None when it answers."""
        return self._breaker.open_since

    async def start(self) -> None:
        for at, keys in await self._storage.recent_attempts(self._clock() - 86400):
            self._limiter.record(keys, at)
        self._loop_task = asyncio.create_task(self._run(), name="outbox-worker")

    async def stop(self, grace: float = 5.0) -> None:
        if self._loop_task:
            self._loop_task.cancel()
            # Bounded: shutting down must never hang on the loop, whatever it was awaiting.
            await asyncio.wait({self._loop_task}, timeout=grace)
        if self._inflight:
            # Let in-flight sends record their result; anything cut off stays claimed for the next start.
            await asyncio.wait(self._inflight, timeout=grace)
            for task in self._inflight:
                task.cancel()
        if self._returned:
            await self._storage.unclaim(self._returned)
            self._returned = []

    def wake(self) -> None:
        self._wakeup.set()

    def take(self, rows: Sequence[OutboxRow]) -> None:
        """Rows claimed for this process as intake stored them: start them now, unless they must wait —
        for WeCom (an outage, a rate limit), for a free slot, or behind a queue already waiting, whose
        order they then join."""
        now = self._clock()
        for row in sorted(rows, key=lambda r: (r.priority, r.id)):
            at = self._limiter.earliest(row.rate_keys, now)
            if self._pause_of(row.channel) or self._breaker.is_open or self._backlog \
                    or len(self._inflight) >= self._max_inflight or at > now:
                self._returned.append((row.id, max(at, now)))
            else:
                self._limiter.record(row.rate_keys, now)
                self._start(row, now)
        if self._returned:
            self.wake()

    def _start(self, row: OutboxRow, claimed_at: float) -> None:
        task = asyncio.create_task(self._deliver(row, claimed_at), name=f"deliver-{row.id}")
        self._inflight.add(task)
        task.add_done_callback(self._send_done)

    async def _run(self) -> None:
        while True:
            try:
                busy = await self._pump()
                if not busy:
                    await self._sleep()
            except asyncio.CancelledError:
                raise
            except Exception:
                _LOGGER.exception("outbox worker iteration failed; retrying in 1 s")
                await asyncio.sleep(1.0)

    async def _pump(self) -> bool:
        """Claim and start what may go now; True if it did anything (so look again at once)."""
        self._wakeup.clear()
        if self._returned:
            returned, self._returned = self._returned, []
            await self._storage.unclaim(returned)
        free = self._max_inflight - len(self._inflight)
        if free <= 0:
            self._backlog = True  # what is due waits for a slot: the next finished send looks again
            return False
        now = self._clock()
        if self._breaker.is_open:
            # WeCom is down: one message at a time probes it; the rest stay due, in order, in the database.
            if self._inflight or not self._breaker.may_probe(now):
                return False
            free = 1
        # Only as many as may start now: the rows carry their bodies, and this runs whenever a slot frees
        # up while messages wait.
        rows = await self._storage.due_outbox(now, min(free, _FETCH))
        self._backlog = len(rows) == min(free, _FETCH)
        deferrals: list[tuple[int, float]] = []
        claims: list[OutboxRow] = []
        for row in rows:
            if len(claims) >= free:
                break
            paused = self._pause_of(row.channel)
            if paused is not None and not paused[1].may_probe(now):
                # Held for a credential or permission error: due again soon (a probe may go by then).
                deferrals.append((row.id, _held_until(paused[1], now)))
                self._held.setdefault(paused[0], set()).add(row.id)
                continue
            at = self._limiter.earliest(row.rate_keys, now)
            if at > now:
                deferrals.append((row.id, at))
                continue
            self._limiter.record(row.rate_keys, now)
            claims.append(row)
        await self._storage.defer(deferrals)
        claimed = await self._storage.claim([r.id for r in claims], now)
        for row in claims:
            if row.id in claimed:  # else another instance took it first
                self._start(_claimed(row), now)
        return bool(claims or deferrals)

    def _send_done(self, task: asyncio.Task[None]) -> None:
        self._inflight.discard(task)
        # A finished send frees a slot: look at the queue again if something waits for one, or WeCom is
        # being probed; a queue with nothing due is not read after every send. (A failed send wakes the
        # worker once its failure is recorded: when the queue is next due has changed.)
        if self._backlog or self._breaker.is_open:
            self._wakeup.set()

    async def _sleep(self) -> None:
        timeout = None
        if self._breaker.is_open:
            timeout = max(0.0, self._breaker.next_probe_at - self._clock())
        elif len(self._inflight) < self._max_inflight:
            next_due = await self._storage.next_due_at()
            if next_due is not None:
                timeout = max(0.0, next_due - self._clock())
        if self._poll_interval is not None:
            timeout = self._poll_interval if timeout is None else min(timeout, self._poll_interval)
        # Messages made due by another process (`bot.py outbox retry`) are seen within this, even when idle.
        timeout = _IDLE_LOOK if timeout is None else min(timeout, _IDLE_LOOK)
        # asyncio.timeout, not wait_for: on Python 3.11 wait_for can swallow a cancellation that lands
        # as its timeout fires, and stop() would then wait for this loop forever.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await self._wakeup.wait()

    async def _deliver(self, row: OutboxRow, claimed_at: float) -> None:
        error: WeComError | None = None
        try:
            async with self._http_slots:
                payload, note = await self._send(row)
        except WeComError as err:
            error = err
        except Exception as err:
            _LOGGER.exception("unexpected error sending outbox row %d", row.id)
            error = WeComRetryable(None, f"{type(err).__name__}: {err}")
        finally:
            if error is not None and pause_scope(error, row.channel):
                self._limiter.release(row.rate_keys, claimed_at)  # refused before anything was delivered
            else:
                # The call may have reached WeCom whatever its outcome: count it when it finished.
                self._limiter.settle(row.rate_keys, claimed_at, self._clock())
        if error is None or not is_outage_failure(error):
            recovery = self._breaker.answered(self._clock())  # WeCom answered, whatever it said
            if recovery is not None:
                await self._recovered(recovery)
            await self._resume_if_fixed(row, error)
        if error is None:
            await self._delivered(row, payload, note)
        else:
            await self._failed_attempt(row, error)

    async def _send(self, row: OutboxRow) -> tuple[dict[str, Any], str | None]:
        """Make the WeCom call; returns WeCom's answer and a note for the trace, raises WeComError."""
        try:
            if row.purpose == UPDATE_PURPOSE:
                payload = await self._client.update_template_card(row.body)
            elif row.channel == "app":
                payload = await self._client.send_message(row.body)
                if row.address.lower() in [u.lower() for u in invalid_users(payload)]:
                    raise WeComRejected(None, f"企业微信不认识用户 {row.address}（invaliduser）")
            elif row.channel == "appchat":
                payload = await self._client.send_appchat(row.body)
            elif row.channel == "customer_group":
                # Creates a task the sending staff member confirms in WeCom; bot/awareness follows it up.
                payload = await self._client.add_msg_template(row.body)
            else:
                payload = await self._client.send_webhook(row.address, row.body)
        except WeComRejected as err:
            if err.errcode == _TASK_ID_EXISTS and row.task_id and row.attempts > 1:
                # An earlier attempt of this very row reached WeCom: the card is there already.
                return {}, "卡片 task_id 已存在，前次推送已送达"
            if err.errcode == _CODE_UNUSABLE and row.purpose == UPDATE_PURPOSE and row.attempts > 1:
                # An earlier attempt of this very row reached WeCom and spent the code: the card is updated.
                return {}, "response_code 已被前次尝试用掉，卡片已更新"
            raise
        return payload, None

    async def _delivered(self, row: OutboxRow, payload: dict[str, Any], note: str | None) -> None:
        now = self._clock()
        # msgid allows a recall; a card's response_code allows updating it through the API.
        await self._storage.mark_sent(row, now, payload.get("msgid"), payload.get("response_code"), note)
        self._metrics.messages_sent.labels(row.channel, row.purpose).inc()
        self._metrics.delivery_latency.labels(row.purpose).observe(max(0.0, now - row.created_at))
        _LOGGER.info("delivered", extra={"outbox_id": row.id, "purpose": row.purpose, "to": row.label,
                                         "instruction_id": row.instruction_id, "attempts": row.attempts})

    async def _failed_attempt(self, row: OutboxRow, err: WeComError) -> None:
        try:
            await self._record_failure(row, err)
        finally:
            self._wakeup.set()  # recorded: the queue is next due at another time now

    async def _record_failure(self, row: OutboxRow, err: WeComError) -> None:
        now = self._clock()
        kind = type(err).__name__
        self._metrics.send_errors.labels(kind).inc()
        error = f"{kind} {err}"
        scope = pause_scope(err, row.channel)
        if scope is not None:
            await self._pause(scope, row, err, error, now)
            return
        if is_outage_failure(err):
            if self._breaker.failure(row.id, now):
                _LOGGER.error("WeCom unreachable; holding the queue and probing until it answers",
                              extra={"since": self._breaker.open_since, "error": error})
            if self._breaker.is_open:
                # Not this message's fault: no attempt is held against it, and it stays due, in order.
                await self._storage.mark_retry(row.id, now, error)
                return
        # A rate limit is not the message's fault either: it waits for the window, however often.
        rate_limited = isinstance(err, WeComRateLimited) or err.errcode == _CONCURRENCY_LIMIT
        retryable = isinstance(err, WeComRetryable | WeComTokenError)
        if row.purpose == UPDATE_PURPOSE and await self._storage.card_update_superseded(row):
            retryable = rate_limited = False  # a retry would show an older state over the newer update
        if rate_limited or (retryable and row.attempts < self._settings.max_attempts):
            delay = getattr(err, "retry_after", None) or min(
                self._settings.backoff_base * 2 ** (min(row.attempts, 30) - 1), self._settings.backoff_max
            )
            _LOGGER.warning("send failed, retrying", extra={"outbox_id": row.id, "error": error,
                                                           "attempts": row.attempts, "retry_in": delay})
            await self._storage.mark_retry(row.id, now + delay, error)
            return
        if row.purpose == UPDATE_PURPOSE:
            # The card stays as it was, with its 刷新 button: not a failed delivery of the instruction.
            log = _LOGGER.info if err.errcode == _CODE_UNUSABLE else _LOGGER.error
            log("card update dropped", extra={"outbox_id": row.id, "to": row.label, "error": error,
                                              "attempts": row.attempts})
            await self._storage.mark_dropped(row, now, error)
            return
        _LOGGER.error("send failed for good", extra={"outbox_id": row.id, "purpose": row.purpose,
                                                     "to": row.label, "error": error, "attempts": row.attempts})
        await self._storage.mark_failed(row, now, error)
        self._metrics.messages_failed.labels(row.channel, row.purpose).inc()
        if row.purpose not in _NOT_REPORTED_PER_ROW:
            await self._report_failure(row, error, now)

    async def _pause(self, scope: str, row: OutboxRow, err: WeComError, error: str, now: float) -> None:
        """Hold everything this credential or permission error affects; the message stays due."""
        breaker = self._paused.setdefault(scope, Breaker(*_PAUSE_PROBE))
        opened = breaker.trip(now)
        self._held.setdefault(scope, set()).add(row.id)
        # As if never attempted (WeCom delivered nothing; a restart must not count it against a send limit),
        # with the error kept for the trace.
        await self._storage.unclaim([(row.id, _held_until(breaker, now))])
        await self._storage.mark_retry(row.id, _held_until(breaker, now), error)
        if not opened:
            return
        reason = operator_advice(err, row.channel)
        self._pause_reasons[scope] = reason
        _LOGGER.error("WeCom refused the app's credentials or permission; pausing, messages stay due",
                      extra={"scope": scope, "errcode": err.errcode, "fix": reason})
        group = self._center_group("a credential error")
        if group is None:
            return
        if self._pause_of(group.kind) is not None:
            _LOGGER.error("the center's group is paused too; it cannot be told", extra={"scope": scope})
            return
        content = self._renderer.text("wecom/credential_notice.md.j2", reason=reason, errcode=err.errcode, at=now)
        await self._storage.enqueue(None, [self._planner().group_markdown(group, content, "credential_notice", 0)],
                                    now)
        self.wake()

    async def _resume_if_fixed(self, row: OutboxRow, error: WeComError | None) -> None:
        """A call of a paused channel got through (or failed for another reason): the setting was fixed."""
        paused = self._pause_of(row.channel)
        if paused is None or (error is not None and pause_scope(error, row.channel) == paused[0]):
            return
        scope, breaker = paused
        now = self._clock()
        breaker.answered(now)
        del self._paused[scope]
        self._pause_reasons.pop(scope, None)
        held = self._held.pop(scope, set())
        _LOGGER.warning("WeCom accepts the app's credentials again; sending what was held",
                        extra={"scope": scope, "held": len(held)})
        await self._storage.defer([(row_id, now) for row_id in held if row_id != row.id])
        self.wake()

    async def _recovered(self, recovery: Recovery) -> None:
        """WeCom answers again: log it, and tell the center's group once if the outage was long."""
        counts = await self._storage.outbox_counts()
        waiting = counts.get("pending", 0) + counts.get("sending", 0)
        _LOGGER.warning("WeCom answers again; sending the backlog in queue order",
                        extra={"outage_seconds": round(recovery.seconds, 1), "waiting": waiting})
        if recovery.seconds < NOTICE_AFTER:
            return
        group = self._center_group("an outage")
        if group is None:
            return
        planner = self._planner()
        content = self._renderer.text("wecom/outage_notice.md.j2", since=recovery.since, until=recovery.until,
                                      seconds=recovery.seconds, waiting=waiting)
        await self._storage.enqueue(None, [planner.group_markdown(group, content, "outage_notice", priority=0)],
                                    recovery.until)
        self.wake()

    def _center_group(self, what: str) -> ChatGroup | None:
        directory: Directory = self._planner().directory
        group = directory.group(directory.fallback_group)
        if group is None:
            _LOGGER.error("no center fallback group configured to report %s", what)
        return group

    async def _report_failure(self, row: OutboxRow, error: str, now: float) -> None:
        planner = self._planner()
        group = self._center_group("a failed delivery")
        if group is None:
            return
        instruction = await self._storage.get_instruction(row.instruction_id) if row.instruction_id else None
        context: dict[str, Any] = {
            "i": instruction,
            "recipient": row.label,
            "purpose_label": _PURPOSE_LABELS.get(row.purpose, row.purpose),
            "error": error,
            "attempts": row.attempts,
            "risk_label": RISK_LABELS[instruction.risk_level] if instruction else "",
        }
        content = self._renderer.text("wecom/delivery_failed.md.j2", **context)
        message = planner.group_markdown(group, content, "failure_notice", priority=0)
        await self._storage.enqueue(row.instruction_id, [message], now)
        self.wake()


def _held_until(breaker: Breaker, now: float) -> float:
    return min(breaker.next_probe_at, now + _HELD_LOOK)


def _claimed(row: OutboxRow) -> OutboxRow:
    """The row as claim() left it: one more attempt."""
    return replace(row, state="sending", attempts=row.attempts + 1)
