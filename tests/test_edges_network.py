"""The bot's HTTP edges as a real network treats them: raw HTTP over a socket to the bot started the way
`bot.py run` starts it (bot/server.py), bodies split over many writes with pauses or chunked, clients
that stall or vanish, connections left open by the hundred, and WeCom callbacks that are not UTF-8.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from urllib.parse import quote

import aiohttp
import pytest
from wechatpy.enterprise.crypto import WeChatCrypto

from bot import logs, server
from bot.app import create_app
from tests.helpers import TOKEN, free_port, instruction, wait_state
from wecom_sim.callback_xml import fields, request_envelope, text_message

CRLF = b"\r\n"


@dataclass
class Edge:
    """A bot listening on a real port, and an HTTP client for what is not the subject of a test."""

    port: int
    api: aiohttp.ClientSession
    crypto: WeChatCrypto
    corp_id: str
    agent_id: int

    async def connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        return await asyncio.open_connection("127.0.0.1", self.port)

    async def dispatched(self) -> int:
        """A new instruction, accepted and pushed to WeCom; its id."""
        resp = await self.api.post("/api/v1/instructions", json=instruction(), headers=_auth())
        assert resp.status == 202
        number = (await resp.json())["id"]
        await wait_state(self.api, number, "dispatched")
        return number

    def callback(self, plaintext: str | bytes) -> tuple[str, bytes]:
        """The path with query and the body of `plaintext` signed and encrypted as WeCom sends it."""
        timestamp, nonce = str(int(time.time())), str(secrets.randbelow(10**10))
        sealed = fields(self.crypto.encrypt_message(plaintext, nonce, timestamp))
        query = "&".join(f"{k}={quote(v, safe='')}" for k, v in
                         (("msg_signature", sealed["MsgSignature"]), ("timestamp", timestamp), ("nonce", nonce)))
        body = request_envelope(corp_id=self.corp_id, encrypt=sealed["Encrypt"], agent_id=self.agent_id)
        return f"/wecom/callback?{query}", body.encode()

    def text(self, from_user: str, content: str, msg_id: int | None) -> str:
        xml = text_message(corp_id=self.corp_id, from_user=from_user, create_time=int(time.time()),
                           content=content, msg_id=msg_id or 0, agent_id=self.agent_id)
        return xml if msg_id else xml.replace("<MsgId>0</MsgId>", "")


@pytest.fixture
async def start_edge(sim, sim_server, make_settings) -> AsyncIterator:
    """Start the bot through bot/server.py with short timeouts (and any other [server] keys)."""
    started: list[tuple[aiohttp.ClientSession, object]] = []

    async def start(**server_keys) -> Edge:
        port = free_port()
        keys = {"port": port, "header_timeout": 0.5, "body_timeout": 1.0, "keepalive_timeout": 30.0, **server_keys}
        settings = make_settings(str(sim_server.make_url("")).rstrip("/"), server=keys)
        runner = await server.start(create_app(settings, clock=sim.clock.now), settings.server)
        sim.config.callback_url = f"http://127.0.0.1:{port}/wecom/callback"
        api = aiohttp.ClientSession(base_url=f"http://127.0.0.1:{port}")
        started.append((api, runner))
        c = sim.config
        return Edge(port, api, WeChatCrypto(c.token, c.encoding_aes_key, c.corp_id), c.corp_id, c.agent_id)

    yield start
    for api, runner in started:
        await api.close()
        await runner.cleanup()


@pytest.fixture
async def edge(start_edge) -> Edge:
    return await start_edge()


@pytest.fixture
def fresh_client_warnings(monkeypatch):
    """Warnings of client failures counted from zero (the rate limit is per process)."""
    monkeypatch.setattr(logs, "CLIENT_WARNINGS", logs.ClientWarnings())


def _auth() -> dict[str, str]:
    return {"Authorization": f"Bearer {TOKEN}"}


def _head(method: str, path: str, *headers: str) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1", *headers]
    return (CRLF.join(line.encode() for line in lines)) + CRLF + CRLF


def _pieces(data: bytes, size: int) -> list[bytes]:
    return [data[i:i + size] for i in range(0, len(data), size)]


def _chunked(data: bytes, size: int) -> list[bytes]:
    """`data` in the chunked transfer coding, one chunk per `size` bytes, then the last chunk."""
    return [f"{len(piece):x}".encode() + CRLF + piece + CRLF for piece in _pieces(data, size)] + [b"0" + CRLF + CRLF]


async def _send(writer: asyncio.StreamWriter, parts: list[bytes], pause: float = 0.01) -> None:
    """Each part in its own write, with a pause between: separate TCP segments on the wire."""
    for part in parts:
        writer.write(part)
        await writer.drain()
        await asyncio.sleep(pause)


async def _response(reader: asyncio.StreamReader) -> tuple[int, bytes] | None:
    """The next response's status and body; None when the server closed the connection instead."""
    try:
        head = await reader.readuntil(CRLF + CRLF)
    except (asyncio.IncompleteReadError, ConnectionResetError):
        return None
    status = int(head.split(b" ", 2)[1])
    length = next((int(line.split(b":", 1)[1]) for line in head.split(CRLF)
                   if line.lower().startswith(b"content-length:")), 0)
    return status, await reader.readexactly(length)


async def _exchange(edge: Edge, head: bytes, parts: list[bytes], pause: float = 0.01) -> tuple[int, bytes]:
    reader, writer = await edge.connect()
    try:
        await _send(writer, [head, *parts], pause)
        answer = await _response(reader)
        assert answer is not None, "the server closed the connection without answering"
        return answer
    finally:
        writer.close()


async def _closed_by_server(reader: asyncio.StreamReader, within: float = 10.0) -> bool:
    try:
        return await asyncio.wait_for(reader.read(), within) == b""
    except ConnectionResetError:
        return True


# -- whole bodies, however framed ----------------------------------------------------------------------


async def test_signed_callback_in_small_pieces_or_chunked_is_acted_on(edge):
    for framing in ("segmented", "chunked"):
        number = await edge.dispatched()
        path, body = edge.callback(edge.text("liuhong", f"签收 {number}", secrets.randbits(62)))
        assert len(body) > 300
        if framing == "segmented":
            head = _head("POST", path, "Content-Type: text/xml", f"Content-Length: {len(body)}")
            status, reply = await _exchange(edge, head, _pieces(body, 37))
        else:
            head = _head("POST", path, "Content-Type: text/xml", "Transfer-Encoding: chunked")
            status, reply = await _exchange(edge, head, _chunked(body, 53))
        assert status == 200, (framing, reply)
        assert b"<Encrypt>" in reply  # the passive reply: the command was acted on in the window
        detail = await wait_state(edge.api, number, "acknowledged")
        ack = next(e for e in detail["timeline"] if e["action"] == "ack")
        assert ack["actor"] == "liuhong"


async def test_intake_json_in_small_pieces_or_chunked_is_accepted(edge):
    for framing in ("segmented", "chunked"):
        body = json.dumps(instruction(), ensure_ascii=False).encode()
        if framing == "segmented":
            head = _head("POST", "/api/v1/instructions", f"Authorization: Bearer {TOKEN}",
                         "Content-Type: application/json", f"Content-Length: {len(body)}")
            status, answer = await _exchange(edge, head, _pieces(body, 29))
        else:
            head = _head("POST", "/api/v1/instructions", f"Authorization: Bearer {TOKEN}",
                         "Content-Type: application/json", "Transfer-Encoding: chunked")
            status, answer = await _exchange(edge, head, _chunked(body, 41))
        assert status == 202, (framing, answer)
        assert json.loads(answer)["status"] == "received"


# -- per-route limits ------------------------------------------------------------------------------------


async def _oversized_chunked(edge: Edge, path: str, size: int, *headers: str) -> tuple[int, bytes]:
    """Stream `size` bytes chunked to path, stopping when the server answers (or closes)."""
    reader, writer = await edge.connect()
    try:
        writer.write(_head("POST", path, "Transfer-Encoding: chunked", *headers))
        answer = asyncio.create_task(_response(reader))
        try:
            for part in _chunked(b"x" * size, 16 * 1024)[:-1]:
                if answer.done():
                    break
                writer.write(part)
                await writer.drain()
                await asyncio.sleep(0)
        except (ConnectionResetError, BrokenPipeError):
            pass
        result = await asyncio.wait_for(answer, 10)
        assert result is not None
        return result
    finally:
        writer.close()


async def test_bodies_over_the_routes_limit_are_refused_while_reading(start_edge):
    edge = await start_edge()
    # Chunked, so no length to refuse up front: refused as soon as the cap is crossed.
    status, answer = await _oversized_chunked(edge, "/api/v1/instructions", 3 * 1024 * 1024,
                                              f"Authorization: Bearer {TOKEN}", "Content-Type: application/json")
    assert status == 413 and "请求体过大" in json.loads(answer)["error"]
    status, _ = await _oversized_chunked(edge, edge.callback("<xml/>")[0], 256 * 1024, "Content-Type: text/xml")
    assert status == 413
    status, answer = await _oversized_chunked(edge, "/dashboard/login", 64 * 1024,
                                              "Content-Type: application/x-www-form-urlencoded")
    assert status == 413 and "请求体过大" in json.loads(answer)["error"]
    # A declared length over the route's cap is refused before a byte of body is sent.
    for path, declared in (("/dashboard/login", 9000), ("/wecom/callback", 65537), ("/healthz", 5000)):
        status, answer = await _exchange(edge, _head("POST", path, f"Content-Length: {declared}"), [])
        assert status == 413, path
    # Within its cap a form is read whole: the login page answers the form, not the size.
    form = _head("POST", "/dashboard/login", "Content-Type: application/x-www-form-urlencoded", "Content-Length: 7000")
    status, _ = await _exchange(edge, form, _pieces(b"u=" + b"a" * 6998, 1000))
    assert status not in (408, 413) and status < 500


# -- slow and idle clients ------------------------------------------------------------------------------


async def test_headers_trickling_in_are_cut_off_at_the_header_timeout(edge, caplog, fresh_client_warnings):
    reader, writer = await edge.connect()
    closed = asyncio.create_task(_closed_by_server(reader))
    writer.write(b"POST /api/v1/instructions HTTP/1.1\r\nHost: 127.0.0.1\r\n")
    try:
        # keepalive_timeout is 30 s: only the header timeout (0.5 s) can close it during these 10 s.
        for n in range(100):
            if closed.done():
                break
            writer.write(f"X-Slow-{n}: a\r\n".encode())
            await writer.drain()
            await asyncio.sleep(0.1)
    except (ConnectionResetError, BrokenPipeError):
        pass
    assert await closed is True
    writer.close()
    assert any("headers not received in time" in r.getMessage() for r in caplog.records)


async def test_a_stalled_body_is_answered_408(edge, fresh_client_warnings, caplog):
    for path, headers in (
        ("/api/v1/instructions", (f"Authorization: Bearer {TOKEN}", "Content-Type: application/json")),
        ("/dashboard/login", ("Content-Type: application/x-www-form-urlencoded",)),
        (edge.callback("<xml/>")[0], ("Content-Type: text/xml",)),
    ):
        status, answer = await _exchange(edge, _head("POST", path, "Content-Length: 1000", *headers), [b"{" * 10])
        assert status == 408, path
        assert json.loads(answer)["error"] == "请求体接收超时，请检查网络后重试"
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


async def test_intake_and_health_answer_while_hundreds_of_connections_sit_idle(start_edge):
    edge = await start_edge(max_connections=100)
    idle = []
    for n in range(300):
        reader, writer = await edge.connect()
        if n % 2:  # half of them with headers begun and never finished
            writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        idle.append((reader, writer))
    try:
        async with aiohttp.ClientSession() as fresh:  # new connections, as the center's platform would open
            url = f"http://127.0.0.1:{edge.port}"
            for _ in range(5):
                async with fresh.post(f"{url}/api/v1/instructions", json=instruction(), headers=_auth()) as resp:
                    assert resp.status == 202
                async with fresh.get(f"{url}/healthz") as resp:
                    assert resp.status == 200
        # The cap held: the server closed the longest-idle connections to make room.
        still_open = 0
        for reader, _ in idle:
            try:
                gone = await asyncio.wait_for(reader.read(), 0.01) == b""
            except TimeoutError:
                gone = False
            except ConnectionResetError:
                gone = True
            still_open += not gone
        assert still_open <= 100
    finally:
        for _, writer in idle:
            writer.close()


# -- logs under attack ----------------------------------------------------------------------------------


async def test_client_failures_are_warnings_without_traceback(edge, caplog, fresh_client_warnings):
    caplog.set_level(logging.WARNING)
    # A client that goes away in the middle of its body.
    _, writer = await edge.connect()
    await _send(writer, [_head("POST", "/api/v1/instructions", f"Authorization: Bearer {TOKEN}",
                               "Content-Type: application/json", "Content-Length: 5000"), b'{"instruction_no": "'])
    writer.transport.abort()
    # Malformed HTTP: a header line without a colon, a bad chunk size.
    status, _ = await _exchange(edge, b"GET /healthz HTTP/1.1\r\nHost: x\r\nno colon here\r\n\r\n", [])
    assert status == 400
    status, _ = await _exchange(edge, _head("POST", "/api/v1/instructions", f"Authorization: Bearer {TOKEN}",
                                            "Transfer-Encoding: chunked"), [b"zz\r\nabc\r\n0\r\n\r\n"])
    assert 400 <= status < 500  # aiohttp's parser leaves the body waiting: its deadline answers (408)
    # And a forged callback.
    path, body = edge.callback(edge.text("liuhong", "我的任务", 1))
    forged = path.replace("msg_signature=", "msg_signature=0")
    status, _ = await _exchange(edge, _head("POST", forged, f"Content-Length: {len(body)}"), [body])
    assert status == 403

    async def warned() -> list[logging.LogRecord]:
        await asyncio.sleep(0.05)
        return [r for r in caplog.records if r.levelno == logging.WARNING]

    for _ in range(100):
        kinds = {getattr(r, "kind", None) for r in await warned()}
        if {"client_gone", "malformed_http", "callback_403"} <= kinds:
            break
    assert {"client_gone", "malformed_http", "callback_403"} <= kinds, kinds
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert not [r for r in caplog.records if r.exc_info]


async def test_client_failure_warnings_are_rate_limited(edge, caplog, fresh_client_warnings):
    caplog.set_level(logging.WARNING)
    path, body = edge.callback(edge.text("liuhong", "我的任务", 1))
    forged = path.replace("msg_signature=", "msg_signature=0")
    for _ in range(40):
        status, _ = await _exchange(edge, _head("POST", forged, f"Content-Length: {len(body)}"), [body])
        assert status == 403
    refused = [r for r in caplog.records if getattr(r, "kind", None) == "callback_403"]
    assert 1 <= len(refused) <= logs.ClientWarnings().per_window


# -- the callback edge ----------------------------------------------------------------------------------


@pytest.mark.parametrize("declaration", ['encoding="GBK"', 'encoding="UTF-16"', 'encoding="no-such-codec"',
                                         'encoding="latin-1"'])
async def test_callbacks_not_in_utf8_are_refused_with_400(edge, declaration):
    number = await edge.dispatched()
    inner = f'<?xml version="1.0" {declaration}?>' + edge.text("liuhong", f"签收 {number}", 7)
    # The outer envelope, read before the signature is checked.
    path, body = edge.callback(edge.text("liuhong", f"签收 {number}", 8))
    outer = f'<?xml version="1.0" {declaration}?>'.encode() + body
    status, _ = await _exchange(edge, _head("POST", path, f"Content-Length: {len(outer)}"), [outer])
    assert status == 400
    # The same in UTF-16 bytes, as it declares.
    wide = ('<?xml version="1.0" encoding="UTF-16"?>' + body.decode()).encode("utf-16")
    status, _ = await _exchange(edge, _head("POST", path, f"Content-Length: {len(wide)}"), [wide])
    assert status == 400
    # The decrypted message, signed properly, declaring the encoding (and GBK bytes where it says so).
    plaintext = inner.encode("gbk") if "GBK" in declaration else inner
    path, body = edge.callback(plaintext)
    status, _ = await _exchange(edge, _head("POST", path, f"Content-Length: {len(body)}"), [body])
    assert status == 400
    assert (await (await edge.api.get(f"/api/v1/instructions/{number}", headers=_auth())).json())["state"] \
        == "dispatched"


async def test_callbacks_without_msgid_are_deduplicated_by_their_content(edge):
    number = await edge.dispatched()
    first = edge.text("liuhong", "我的任务", None)
    assert "<MsgId>" not in first
    path, body = edge.callback(first)
    status, reply = await _exchange(edge, _head("POST", path, f"Content-Length: {len(body)}"), [body])
    assert status == 200 and b"<Encrypt>" in reply  # acted on: the task list as a passive reply
    # WeCom's retry of the same callback: received, not acted on again.
    status, reply = await _exchange(edge, _head("POST", path, f"Content-Length: {len(body)}"), [body])
    assert status == 200 and reply == b""
    # Another message of the same second without MsgId is its own callback.
    path, body = edge.callback(edge.text("liuhong", f"签收 {number}", None))
    status, reply = await _exchange(edge, _head("POST", path, f"Content-Length: {len(body)}"), [body])
    assert status == 200 and b"<Encrypt>" in reply
    await wait_state(edge.api, number, "acknowledged")
