"""The aiohttp application factory: the edges (handlers/) over the services (bot/services.py).

The composition root: the one module of bot/ that imports handlers/, which in turn import only the
services and their keys.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from aiohttp import web

from bot.config import Settings
from bot.services import CLOCK, SERVICES, SETTINGS, Services, services_context
from handlers import error_middleware, setup_routes

__all__ = ["CLOCK", "SERVICES", "SETTINGS", "Services", "create_app"]


def create_app(settings: Settings, clock: Callable[[], float] = time.time) -> web.Application:
    """Build the bot's web application; the database and the sender start when it starts."""
    app = web.Application(client_max_size=settings.api.max_body_bytes, middlewares=[error_middleware])
    app[SETTINGS] = settings
    app[CLOCK] = clock
    app.cleanup_ctx.append(services_context)
    setup_routes(app)
    return app


