"""The aiohttp application: WeCom's API under /cgi-bin/, test controls and the chat view under /_sim/."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable

import aiohttp
from aiohttp import web

from . import chatview, control, oauth_page
from .apis import ENDPOINTS
from .keys import SIMULATOR_KEY
from .simulator import Simulator


def create_simulator_app(sim: Simulator) -> web.Application:
    """Build the simulator's web app around `sim`."""
    app = web.Application()
    app[SIMULATOR_KEY] = sim
    for api, endpoint in ENDPOINTS.items():
        app.router.add_route(endpoint.method, f"/cgi-bin/{api}", _api_view(api))
    control.add_routes(app)
    oauth_page.add_routes(app)
    chatview.add_routes(app)
    app.cleanup_ctx.append(_callback_session)
    return app


def _api_view(api: str) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    async def view(request: web.Request) -> web.StreamResponse:
        if ENDPOINTS[api].multipart and request.content_type == "multipart/form-data":
            form = await request.post()
            files = {name: (f.filename, f.content_type, f.file.read()) for name, f in form.items()
                     if isinstance(f, web.FileField)}
            answer = request.app[SIMULATOR_KEY].call(api, request.query, None, remote=request.remote, files=files)
        else:
            raw = await request.read() if request.method == "POST" else None
            answer = request.app[SIMULATOR_KEY].call(api, request.query, raw, remote=request.remote)
        if answer.payload is None:
            return web.Response(status=answer.status, text=answer.text)
        return web.json_response(answer.payload, status=answer.status)

    return view


async def _callback_session(app: web.Application) -> AsyncIterator[None]:
    # One client session for all callbacks of this app, closed with it.
    sim = app[SIMULATOR_KEY]
    async with aiohttp.ClientSession() as session:
        sim.attach_session(session)
        yield
        sim.attach_session(None)
