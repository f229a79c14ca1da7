"""The services of one running bot, built and stopped as a pair, and the keys handlers find them under.

bot/app.py puts them into the web application; handlers read them through SERVICES, SETTINGS and CLOCK,
which live here so that the edges import the services and never the factory that imports the edges.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

import aiohttp
from aiohttp import web

from bot.actions import Actions
from bot.awareness.service import AWARENESS, AwarenessService
from bot.cluster import Cluster
from bot.commands import Commands
from bot.config import Settings
from bot.directory import load_directory_file
from bot.dispatch import DispatchPlanner
from bot.escalation import Escalations
from bot.inbox import Inbox
from bot.intake import IntakeService
from bot.metrics import Metrics
from bot.outbox import DeliveryWorker
from bot.render import Renderer
from bot.reports.bulletin import Bulletins
from bot.scheduler import Scheduler
from bot.wecom import WeComClient
from bot.wecom.callbacks import CallbackCrypto
from bot.wecom.check import SELF_CHECK, SelfCheck
from domain.directory import Directory
from storage import Storage, open_storage

_LOGGER = logging.getLogger(__name__)


@dataclass
class Services:
    """Everything a handler may need, built once per app."""

    settings: Settings
    clock: Callable[[], float]
    storage: Storage
    metrics: Metrics
    renderer: Renderer
    wecom: WeComClient
    planner: DispatchPlanner
    worker: DeliveryWorker
    intake: IntakeService
    actions: Actions
    inbox: Inbox
    callback_crypto: CallbackCrypto
    scheduler: Scheduler
    escalations: Escalations
    bulletins: Bulletins
    cluster: Cluster

    @property
    def directory(self) -> Directory:
        return self.planner.directory


SETTINGS = web.AppKey("settings", Settings)
CLOCK = web.AppKey("clock", Callable[[], float])
SERVICES = web.AppKey("services", Services)


async def services_context(app: web.Application) -> AsyncIterator[None]:
    """The services of `app` for as long as it runs (aiohttp cleanup_ctx)."""
    settings = app[SETTINGS]
    clock = app[CLOCK]
    # Fail fast on a broken directory file, before touching the database.
    directory_file = load_directory_file(settings.directory.path)
    storage = await open_storage(settings.database)
    session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=64))
    worker: DeliveryWorker | None = None
    cluster: Cluster | None = None
    try:
        await storage.replace_directory(directory_file)
        directory = await storage.load_directory()
        metrics = Metrics()
        renderer = Renderer()
        wecom = WeComClient(session, settings.wecom, clock)
        salt = await storage.meta("instance_salt") or "qz"
        planner = DispatchPlanner(directory, renderer, settings.wecom.agent_id, f"qz{salt}",
                                  settings.delivery.duplicate_check_interval, settings.policies)

        def current_planner() -> DispatchPlanner:
            # Looked up on each use, so that a reloaded directory (a new planner) takes effect at once.
            return app[SERVICES].planner

        worker = DeliveryWorker(storage, wecom, settings.delivery, metrics, renderer, current_planner, clock,
                                poll_interval=settings.cluster.poll_interval if storage.shared else None)
        cluster = Cluster(storage, settings.cluster, worker.wake)
        scheduler = Scheduler(cluster.leads)
        intake = IntakeService(storage, current_planner, worker.take, metrics, clock)
        actions = Actions(storage, current_planner, renderer, clock, worker.wake)
        inbox = Inbox(storage, actions, Commands(actions, renderer), current_planner, clock, worker.wake)
        escalations = Escalations(storage, current_planner, renderer, clock, worker.wake, settings.escalation)
        crypto = CallbackCrypto(settings.wecom.token, settings.wecom.encoding_aes_key, settings.wecom.corp_id,
                                settings.wecom.callback_max_age)
        bulletins = Bulletins(storage, current_planner, renderer, wecom, clock, settings.bulletin, settings.public_url,
                              worker.wake)
        services = Services(settings, clock, storage, metrics, renderer, wecom, planner, worker, intake, actions,
                            inbox, crypto, scheduler, escalations, bulletins=bulletins, cluster=cluster)
        app[SERVICES] = services
        await escalations.refresh_roster(force=True)  # before the first instruction is routed
        app[AWARENESS] = AwarenessService(settings, storage, wecom, renderer, current_planner, clock, worker.wake)
        await app[AWARENESS].start(list(directory_file.resident_groups.values()))
        scheduler.every(settings.awareness.check_interval, app[AWARENESS].tick, "awareness")
        await cluster.start()  # before the worker: takes back what a stopped process had claimed
        await worker.start()
        # Is WeCom set up right? Logged, and /healthz says "degraded" with the reasons while it is not.
        app[SELF_CHECK] = SelfCheck(wecom, directory_file)
        await app[SELF_CHECK].run(bound=settings.wecom.request_timeout)
        scheduler.every(SelfCheck.RECHECK, app[SELF_CHECK].recheck, "wecom-self-check")
        resumed = await inbox.resume()
        if resumed:
            _LOGGER.warning("finished %d callbacks stored before the last shutdown", resumed)
        scheduler.every(settings.escalation.sweep_interval, escalations.sweep, "deadline-sweep")
        await bulletins.start(scheduler)
        scheduler.start()
        _LOGGER.info("quanzu started", extra={
            "stations": len(directory.stations), "grids": len(directory.grids), "people": len(directory.people),
            "database": "postgresql" if storage.shared else str(settings.database.path),
            "instance": storage.instance_id, "wecom_api": settings.wecom.api_base,
        })
        yield
    finally:
        if SERVICES in app:
            app[SERVICES].scheduler.stop()
            await app[SERVICES].inbox.stop()
        if worker is not None:
            await worker.stop()
        if cluster is not None:
            await cluster.stop()
        await session.close()
        await storage.close()
