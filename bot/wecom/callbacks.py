"""WeCom callbacks: verify and decrypt (wechatpy's crypto), parse into typed events, build passive replies.

wechatpy 1.8.18 parses neither template_card_event nor its SelectedItems, and its reply builders know
no update_button, so parsing and those replies live here. All XML is read with defusedxml: no entity
expansion, no external entities; and only as UTF-8, the one encoding WeCom writes. Signatures are checked
here in constant time before wechatpy (which compares with `!=`) sees the message.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from xml.etree.ElementTree import Element

from defusedxml import ElementTree as SafeET
from defusedxml.common import DefusedXmlException
from wechatpy.enterprise.crypto import WeChatCrypto
from wechatpy.enterprise.exceptions import InvalidCorpIdException
from wechatpy.exceptions import InvalidSignatureException


class CallbackRejected(Exception):
    """A callback that must not be processed; status is the HTTP answer."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


@dataclass(frozen=True)
class TextMessage:
    from_user: str
    create_time: int
    content: str
    msg_id: str
    digest: str = ""  # of the decrypted XML: the dedupe key when WeCom gives no MsgId

    @property
    def dedupe_key(self) -> str:
        return f"msg:{self.msg_id}" if self.msg_id else f"sha256:{self.digest}"


@dataclass(frozen=True)
class CardEvent:
    """A click on a template card button, or a card's submit (template_card_event / _menu_event)."""

    from_user: str
    create_time: int
    event: str
    event_key: str
    task_id: str
    card_type: str
    response_code: str
    selected: dict[str, list[str]] = field(default_factory=dict)  # question_key → option ids

    @property
    def dedupe_key(self) -> str:
        return f"card:{self.from_user}:{self.create_time}:{self.task_id}:{self.event_key}"


@dataclass(frozen=True)
class OtherCallback:
    """Anything else (other events, images, …): recorded, not acted on."""

    from_user: str
    create_time: int
    kind: str
    msg_id: str | None
    digest: str = ""  # of the decrypted XML: the dedupe key when WeCom gives no MsgId

    @property
    def dedupe_key(self) -> str:
        return f"msg:{self.msg_id}" if self.msg_id else f"sha256:{self.digest}"


Callback = TextMessage | CardEvent | OtherCallback


class CallbackCrypto:
    """Signature check, decryption and reply encryption for one app's callback settings."""

    def __init__(self, token: str, encoding_aes_key: str, corp_id: str, max_age: int = 0) -> None:
        self._crypto = WeChatCrypto(token, encoding_aes_key, corp_id)
        self.corp_id = corp_id
        self.max_age = max_age  # seconds; 0 = no freshness check (dedupe alone guards replays)

    def verify_url(self, signature: str, timestamp: str, nonce: str, echostr: str) -> str:
        """WeCom's URL verification: the decrypted echostr, to be answered as bare text."""
        self._check_age(timestamp)
        self._check_signature(signature, timestamp, nonce, echostr)
        with _refusing("echostr"):
            plain = self._crypto.check_signature(signature, timestamp, nonce, echostr)
        return _text(plain, "echostr")

    def decrypt(self, body: bytes, signature: str, timestamp: str, nonce: str) -> str:
        """The plaintext XML of a POSTed callback envelope."""
        self._check_age(timestamp)
        envelope = _parse(body)
        encrypted = envelope.findtext("Encrypt")
        if not encrypted:
            raise CallbackRejected(400, "envelope without Encrypt")
        self._check_signature(signature, timestamp, nonce, encrypted)
        with _refusing("body"):
            plain = self._crypto.decrypt_message({"Encrypt": encrypted}, signature, timestamp, nonce)
        return _text(plain, "body")

    def encrypt_reply(self, plaintext_xml: str, nonce: str, timestamp: int | None = None) -> str:
        return self._crypto.encrypt_message(plaintext_xml, nonce, timestamp or int(time.time()))

    def _check_signature(self, signature: str, timestamp: str, nonce: str, encrypted: str) -> None:
        """WeCom's msg_signature: SHA1 of token, timestamp, nonce and Encrypt sorted and joined."""
        parts = sorted([self._crypto.token, timestamp, nonce, encrypted])
        expected = hashlib.sha1("".join(parts).encode("utf-8", "surrogatepass")).hexdigest()
        if not hmac.compare_digest(expected.encode(), signature.encode("utf-8", "surrogatepass")):
            raise CallbackRejected(403, "bad signature")

    def _check_age(self, timestamp: str) -> None:
        if not self.max_age:
            return
        try:
            age = abs(time.time() - int(timestamp))
        except ValueError as err:
            raise CallbackRejected(400, "timestamp is not a number") from err
        if age > self.max_age:
            raise CallbackRejected(403, f"stale timestamp ({int(age)} s old)")


@contextmanager
def _refusing(what: str) -> Iterator[None]:
    """wechatpy's crypto errors as refusals: forged → 403, undecryptable → 400."""
    try:
        yield
    except InvalidSignatureException as err:
        raise CallbackRejected(403, "bad signature") from err
    except InvalidCorpIdException as err:
        raise CallbackRejected(403, "wrong corp id") from err
    except Exception as err:
        raise CallbackRejected(400, f"undecryptable {what}: {type(err).__name__}") from err


def parse_callback(plaintext: str) -> Callback:
    """A decrypted callback as a typed event."""
    data = plaintext.encode("utf-8", "surrogatepass")
    root = _parse(data)
    digest = hashlib.sha256(data).hexdigest()
    from_user = root.findtext("FromUserName") or ""
    try:
        create_time = int(root.findtext("CreateTime") or "0")
    except ValueError as err:
        raise CallbackRejected(400, "CreateTime is not a number") from err
    if not from_user:
        raise CallbackRejected(400, "callback without FromUserName")
    msg_type = (root.findtext("MsgType") or "").lower()
    msg_id = root.findtext("MsgId")
    if msg_type == "text":
        return TextMessage(from_user, create_time, root.findtext("Content") or "", msg_id or "", digest)
    if msg_type == "event":
        event = (root.findtext("Event") or "").lower()
        if event in ("template_card_event", "template_card_menu_event"):
            return CardEvent(
                from_user=from_user,
                create_time=create_time,
                event=event,
                event_key=root.findtext("EventKey") or "",
                task_id=root.findtext("TaskId") or "",
                card_type=root.findtext("CardType") or "",
                response_code=root.findtext("ResponseCode") or "",
                selected=_selected_items(root),
            )
        return OtherCallback(from_user, create_time, event or "event", msg_id, digest)
    return OtherCallback(from_user, create_time, msg_type or "unknown", msg_id, digest)


def _selected_items(root: Element) -> dict[str, list[str]]:
    selected: dict[str, list[str]] = {}
    for item in root.iterfind("SelectedItems/SelectedItem"):
        key = item.findtext("QuestionKey") or ""
        selected[key] = [(o.text or "") for o in item.iterfind("OptionIds/OptionId")]
    return selected


# The encoding an XML declaration names, if any (it is ASCII whatever the document's encoding).
_DECLARED_ENCODING = re.compile(rb"""\A\s*<\?xml[^>]*?\bencoding\s*=\s*["']([^"']*)["']""")


def _parse(data: bytes) -> Element:
    """XML that is UTF-8 throughout, as WeCom writes it; anything else is a 400, whatever it declares."""
    declared = _DECLARED_ENCODING.match(data)
    if declared and declared.group(1).lower() not in (b"utf-8", b"utf8"):
        raise CallbackRejected(400, "XML not in UTF-8")
    try:
        data.decode("utf-8")
        return SafeET.fromstring(data)
    except UnicodeDecodeError as err:
        raise CallbackRejected(400, "XML not in UTF-8") from err
    except (DefusedXmlException, SafeET.ParseError, ValueError, LookupError) as err:
        raise CallbackRejected(400, f"malformed XML: {type(err).__name__}") from err


def _text(plain: bytes | str, what: str) -> str:
    """wechatpy's decrypted bytes as text: UTF-8 or refused."""
    if isinstance(plain, str):
        return plain
    try:
        return plain.decode("utf-8")
    except UnicodeDecodeError as err:
        raise CallbackRejected(400, f"decrypted {what} is not UTF-8") from err


def _cdata(value: str) -> str:
    return "<![CDATA[" + value.replace("]]>", "]]]]><![CDATA[>") + "]]>"


def text_reply(to_user: str, corp_id: str, content: str, now: int) -> str:
    """Plaintext of a passive text reply."""
    return (
        f"<xml><ToUserName>{_cdata(to_user)}</ToUserName><FromUserName>{_cdata(corp_id)}</FromUserName>"
        f"<CreateTime>{now}</CreateTime><MsgType>{_cdata('text')}</MsgType>"
        f"<Content>{_cdata(content)}</Content></xml>"
    )


def update_button_reply(to_user: str, corp_id: str, replace_name: str, now: int) -> str:
    """Plaintext of a passive update_button reply: greys out the clicked card's buttons with this text."""
    return (
        f"<xml><ToUserName>{_cdata(to_user)}</ToUserName><FromUserName>{_cdata(corp_id)}</FromUserName>"
        f"<CreateTime>{now}</CreateTime><MsgType>{_cdata('update_button')}</MsgType>"
        f"<Button><ReplaceName>{_cdata(replace_name)}</ReplaceName></Button></xml>"
    )
