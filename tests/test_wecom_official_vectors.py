"""Tencent's own callback sample vectors, byte for byte, through the callback endpoint of a running bot.

Everything else proves the callback path against the simulator's encryption; these prove it against
Tencent's. The values are the published example of the WXBizMsgCrypt samples that 企业微信 links from
加解密库下载与返回码 (https://developer.work.weixin.qq.com/document/path/90307; the scheme itself is
加解密方案说明, …/path/90968). They are copied as data from two mirrors of those samples, which agree:

- github.com/sbzhu/weworkapi_golang, sample.go at 1799804a7c8d0522340156665852571c4e4c309b (2021-05-25)
- github.com/sbzhu/weworkapi_php, callback/Sample.php at 7ae14f2da1a9eab2e6edf834466b02a8be1582fa (2020-11-26)

(both replaced the values by placeholders in 2025, hence the pinned commits). The bot is `bot.py run`
configured with the sample's Token, EncodingAESKey and CorpID, and callback_max_age = 0: the samples
were signed in 2014.
"""

from __future__ import annotations

import asyncio
import json
import signal
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from defusedxml.ElementTree import fromstring
from wechatpy.enterprise.crypto import WeChatCrypto
from yarl import URL

from bot.demo import seed_simulator
from bot.directory import load_directory_file
from tests.helpers import DISTRICT, TOKEN, free_port, start_bot_process
from wecom_sim import Simulator, SimulatorConfig, create_simulator_app

# The sample app's settings (sample.go: token, encodingAeskey, receiverId).
SAMPLE_TOKEN = "QDG6eK"
SAMPLE_AES_KEY = "jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C"
SAMPLE_CORP_ID = "wx5823bf96d3bd56c7"
SAMPLE_AGENT_ID = 218  # the POST example's <AgentID>

# 使用示例一：验证回调URL — the GET exactly as the sample shows it on the wire (echostr percent-encoded).
VERIFY_QUERY = ("msg_signature=5c45ff5e21c57e6ad56bac8758b79b1d9ac89fd3&timestamp=1409659589&nonce=263014780"
                "&echostr=P9nAzCzyDtyTWESHep1vC5X9xho%2FqYX3Zpb4yKa9SKld1DsH3Iyt3tP3zNdtp%2B4RPcs8TgAE7OaBO%2BFZ"
                "XvnaqQ%3D%3D")
VERIFY_ECHO = b"1616140317555161061"

# 使用示例二：对用户回复的消息解密 — the POST's query and body (sample.go's reqData, byte for byte).
MESSAGE_QUERY = "msg_signature=477715d11cdb4164915debcba66cb864d751f3e6&timestamp=1409659813&nonce=1372623149"
MESSAGE_BODY = (
    b"<xml><ToUserName><![CDATA[wx5823bf96d3bd56c7]]></ToUserName><Encrypt><![CDATA[RypEvHKD8QQKFhvQ6QleEB4J58tiPdvo"
    b"+rtK1I9qca6aM/wvqnLSV5zEPeusUiX5L5X/0lWfrf0QADHHhGd3QczcdCUpj911L3vg3W/sYYvuJTs3TUUkSUXxaccAS0qhxchrRYt66wiS"
    b"pGLYL42aM6A8dTT+6k4aSknmPj48kzJs8qLjvd4Xgpue06DOdnLxAUHzM6+kDZ+HMZfJYuR+LtwGc2hgf5gsijff0ekUNXZiqATP7PF5mZxZ3"
    b"Izoun1s4zG4LUMnvw2r+KqCKIw+3IQH03v+BCA9nMELNqbSf6tiWSrXJB3LAVGUcallcrw8V2t9EL4EhzJWrQUax5wLVMNS0+rUPA3k22Nc"
    b"x4XXZS9o0MBH27Bo6BpNelZpS+/uh9KsNlY6bHCmJU9p8g7m3fVKn28H3KDYA5Pl/T8Z1ptDAVe0lXdQ2YoyyH2uyPIGHBZZIs2pDBS8R07"
    b"+qN+E7Q==]]></Encrypt><AgentID><![CDATA[218]]></AgentID></xml>"
)
# What it decrypts to, per the samples: a text "hello" from user "mycreate" (not in our directory).
SAMPLE_SENDER = "mycreate"
SAMPLE_CONTENT = "hello"


@pytest.fixture
async def sample_bot(tmp_path: Path, aiohttp_server, db_toml) -> AsyncIterator[tuple[str, Path]]:
    """`bot.py run` set up as the sample app, its WeCom API a simulator of the sample corp; (url, log)."""
    sim = Simulator(SimulatorConfig(corp_id=SAMPLE_CORP_ID, corp_secret="sample-corp-app-secret",
                                    agent_id=SAMPLE_AGENT_ID, token=SAMPLE_TOKEN, encoding_aes_key=SAMPLE_AES_KEY))
    seed_simulator(sim, load_directory_file(DISTRICT))
    sim_url = str((await aiohttp_server(create_simulator_app(sim))).make_url("")).rstrip("/")
    port = free_port()
    config = tmp_path / "sample.toml"
    config.write_text(f"""
[server]
port = {port}
[database]
{db_toml}
[wecom]
corp_id = "{SAMPLE_CORP_ID}"
corp_secret = "sample-corp-app-secret"
agent_id = {SAMPLE_AGENT_ID}
token = "{SAMPLE_TOKEN}"
encoding_aes_key = "{SAMPLE_AES_KEY}"
api_base = "{sim_url}/cgi-bin/"
callback_max_age = 0
[api]
tokens = [{json.dumps(TOKEN)}]
[directory]
path = {json.dumps(str(DISTRICT))}
[bulletin]
enabled = false
[logging]
format = "text"
""", encoding="utf-8")
    log = tmp_path / "bot.log"
    proc = await start_bot_process(config, log, port)
    try:
        yield f"http://127.0.0.1:{port}", log
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(proc.wait(), 15)
        except TimeoutError:
            proc.kill()
            await proc.wait()


def wire(base: str, query: str) -> URL:
    """The callback URL with `query` sent exactly as written (no re-encoding of %2F, %2B, %3D)."""
    return URL(f"{base}/wecom/callback?{query}", encoded=True)


async def test_tencent_url_verification_answers_the_samples_plaintext(sample_bot):
    base, _ = sample_bot
    async with aiohttp.ClientSession() as http, http.get(wire(base, VERIFY_QUERY)) as resp:
        assert resp.status == 200
        assert await resp.read() == VERIFY_ECHO  # bare: no quotes, BOM or newline
    tampered = VERIFY_QUERY.replace("5c45ff5e", "5c45ff5f")
    async with aiohttp.ClientSession() as http, http.get(wire(base, tampered)) as resp:
        assert resp.status == 403 and VERIFY_ECHO not in await resp.read()


async def test_tencent_encrypted_message_is_decrypted_and_answered_once(sample_bot):
    base, log = sample_bot
    headers = {"Content-Type": "text/xml"}
    async with aiohttp.ClientSession() as http:
        async with http.post(wire(base, MESSAGE_QUERY), data=MESSAGE_BODY, headers=headers) as resp:
            assert resp.status == 200
            envelope = await resp.read()
        # The passive reply is sealed for the sample app: open it as WeCom would, with the sample's keys.
        reply = fromstring(envelope)
        plain = WeChatCrypto(SAMPLE_TOKEN, SAMPLE_AES_KEY, SAMPLE_CORP_ID).decrypt_message(
            {"Encrypt": reply.findtext("Encrypt")}, reply.findtext("MsgSignature"), reply.findtext("TimeStamp"),
            reply.findtext("Nonce"))
        answer = fromstring(plain)
        assert answer.findtext("ToUserName") == SAMPLE_SENDER
        assert answer.findtext("FromUserName") == SAMPLE_CORP_ID
        assert answer.findtext("MsgType") == "text"
        assert f"“{SAMPLE_CONTENT}”" in answer.findtext("Content")  # an unknown command: the help text

        async def in_pieces():  # WeCom's retry of the same message, this time with chunked encoding
            for start in range(0, len(MESSAGE_BODY), 100):
                yield MESSAGE_BODY[start:start + 100]

        async with http.post(wire(base, MESSAGE_QUERY), data=in_pieces(), headers=headers) as resp:
            assert resp.status == 200 and await resp.read() == b""  # a duplicate (same MsgId): received, no reply

        forged = MESSAGE_QUERY.replace("477715d1", "477715d2")
        async with http.post(wire(base, forged), data=MESSAGE_BODY, headers=headers) as resp:
            assert resp.status == 403
        swapped = MESSAGE_BODY.replace(b"RypEvHKD", b"RypEvHKE")  # one bit of ciphertext: signature breaks
        async with http.post(wire(base, MESSAGE_QUERY), data=swapped, headers=headers) as resp:
            assert resp.status == 403
    text = log.read_text(encoding="utf-8")
    assert "Traceback" not in text and "duplicate callback ignored" in text
    assert SAMPLE_CONTENT not in text  # nothing a person typed goes to the log
