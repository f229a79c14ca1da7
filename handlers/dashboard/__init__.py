"""The command-center dashboard (server-rendered pages under /dashboard)."""

from handlers.dashboard.views import setup

__all__ = ["setup"]
