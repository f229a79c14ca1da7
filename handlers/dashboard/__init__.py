"""The command-center dashboard (server-rendered pages under /dashboard)."""

from aiohttp import web

from handlers.dashboard import base, login, views


def setup(app: web.Application) -> None:
    base.setup(app, login.routes, views.routes)


__all__ = ["setup"]
