"""HTTP edges of the bot, all registered here."""

from __future__ import annotations

from aiohttp import web

from bot.services import SETTINGS
from handlers import callback, campaigns, dashboard, directory, health, intake, openapi, roster
from handlers.auth import api_token
from handlers.errors import error_middleware
from handlers.limits import body_limits


def setup_routes(app: web.Application) -> None:
    """The routes, and inside error_middleware (given at the app's creation) each route's body limits and
    the API's bearer token."""
    app.middlewares.append(body_limits)
    app.middlewares.append(api_token)
    app.router.add_routes(intake.routes)
    app.router.add_routes(directory.routes)
    app.router.add_routes(health.routes)
    app.router.add_routes(callback.routes)
    app.router.add_routes(roster.routes)
    app.router.add_routes(campaigns.routes)
    app.router.add_routes(openapi.routes)
    if app[SETTINGS].dashboard.enabled:
        dashboard.setup(app)


__all__ = ["error_middleware", "setup_routes"]
