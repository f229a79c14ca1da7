"""Plaintext callback XML as WeCom writes it, and passive replies as WeCom reads them."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from xml.etree.ElementTree import Element, ParseError

from defusedxml import DefusedXmlException
from defusedxml.ElementTree import fromstring

_INT_FIELDS = frozenset({"desc_color", "style", "type", "mode"})
_BOOL_FIELDS = frozenset({"is_checked", "disable"})
# Names whose snake_case form differs from the JSON card key.
_RENAMES = {"CheckBox": "checkbox", "KeyName": "keyname", "UserId": "userid", "AppId": "appid", "PagePath": "pagepath"}
_CAMEL_RE = re.compile(r"(?<!^)(?=[A-Z])")


def cdata(value: object) -> str:
    """Wrap `value` in CDATA, splitting any "]]>" so the section stays well-formed."""
    return "<![CDATA[" + str(value).replace("]]>", "]]]]><![CDATA[>") + "]]>"


def text_message(*, corp_id: str, from_user: str, create_time: int, content: str, msg_id: int, agent_id: int) -> str:
    """Build the plaintext of a text message callback (section 7.5)."""
    return (
        f"<xml><ToUserName>{cdata(corp_id)}</ToUserName><FromUserName>{cdata(from_user)}</FromUserName>"
        f"<CreateTime>{create_time}</CreateTime><MsgType>{cdata('text')}</MsgType>"
        f"<Content>{cdata(content)}</Content><MsgId>{msg_id}</MsgId><AgentID>{agent_id}</AgentID></xml>"
    )


def card_event(
    *,
    corp_id: str,
    from_user: str,
    create_time: int,
    event: str,
    event_key: str,
    task_id: str,
    card_type: str,
    response_code: str,
    agent_id: int,
    selected_items: Iterable[Mapping[str, object]] = (),
) -> str:
    """Build the plaintext of a template_card_event or template_card_menu_event (section 7.6)."""
    items = "".join(
        f"<SelectedItem><QuestionKey>{cdata(item['question_key'])}</QuestionKey><OptionIds>"
        + "".join(f"<OptionId>{cdata(option)}</OptionId>" for option in item.get("option_ids", ()))
        + "</OptionIds></SelectedItem>"
        for item in selected_items
    )
    selected = f"<SelectedItems>{items}</SelectedItems>" if items else ""
    return (
        f"<xml><ToUserName>{cdata(corp_id)}</ToUserName><FromUserName>{cdata(from_user)}</FromUserName>"
        f"<CreateTime>{create_time}</CreateTime><MsgType>{cdata('event')}</MsgType>"
        f"<Event>{cdata(event)}</Event><EventKey>{cdata(event_key)}</EventKey>"
        f"<TaskId>{cdata(task_id)}</TaskId><CardType>{cdata(card_type)}</CardType>"
        f"<ResponseCode>{cdata(response_code)}</ResponseCode><AgentID>{agent_id}</AgentID>{selected}</xml>"
    )


def request_envelope(*, corp_id: str, encrypt: str, agent_id: int) -> str:
    """Build the encrypted POST body WeCom sends to the callback URL (section 7.2)."""
    return (
        f"<xml><ToUserName>{cdata(corp_id)}</ToUserName><Encrypt>{cdata(encrypt)}</Encrypt>"
        f"<AgentID>{cdata(agent_id)}</AgentID></xml>"
    )


def fields(xml: str) -> dict[str, str]:
    """Return the text of each top-level element of a flat XML message; ValueError if malformed."""
    return {child.tag: (child.text or "") for child in _parse(xml)}


@dataclass(frozen=True)
class PassiveUpdate:
    """A card change asked for in a passive reply: greyed buttons or a whole new card."""

    replace_name: str | None = None
    card: dict | None = None


def passive_update(reply_xml: str) -> PassiveUpdate | None:
    """Read a passive reply; return the card change it asks for, or None for other replies."""
    root = _parse(reply_xml)
    msg_type = (root.findtext("MsgType") or "").strip()
    if msg_type == "update_button":
        return PassiveUpdate(replace_name=root.findtext("Button/ReplaceName") or "")
    if msg_type == "update_template_card":
        card = root.find("TemplateCard")
        if card is None:
            raise ValueError("update_template_card reply without TemplateCard")
        return PassiveUpdate(card=template_card_from_xml(card))
    return None


def passive_text(reply_xml: str) -> str | None:
    """Return the Content of a passive text reply, None for other replies; ValueError if malformed."""
    root = _parse(reply_xml)
    if (root.findtext("MsgType") or "").strip() != "text":
        return None
    return root.findtext("Content") or ""


def template_card_from_xml(element: Element) -> dict:
    """Turn the CamelCase XML card of a passive reply back into the JSON card shape."""
    card: dict = {}
    for child in element:
        key = _snake(child.tag)
        value = template_card_from_xml(child) if len(child) else _scalar(key, child.text or "")
        if key.endswith("_list"):
            card.setdefault(key, []).append(value)
        else:
            card[key] = value
    return card


def _scalar(key: str, text: str) -> object:
    text = text.strip()
    if key in _INT_FIELDS and text.lstrip("-").isdigit():
        return int(text)
    if key in _BOOL_FIELDS:
        return text.lower() in ("1", "true")
    return text


def _snake(tag: str) -> str:
    return _RENAMES.get(tag) or _CAMEL_RE.sub("_", tag).lower()


def _parse(xml: str) -> Element:
    try:
        return fromstring(xml)
    except (ParseError, DefusedXmlException) as err:
        raise ValueError(f"malformed XML: {err}") from err
