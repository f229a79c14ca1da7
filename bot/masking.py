"""Masking of personal data for anything shown in group chats (唐某, 138****8000)."""

from __future__ import annotations

import re
from typing import Any


def mask_name(name: str) -> str:
    """Keep the surname: 唐小明 → 唐某. Two-character compound surnames are not guessed at."""
    name = name.strip()
    if not name:
        return ""
    return f"{name[0]}某"


def mask_phone(phone: str) -> str:
    """138****8000 for mobiles; landlines keep their last four digits."""
    digits = "".join(ch for ch in phone if ch.isdigit())
    if len(digits) == 11:
        return f"{digits[:3]}****{digits[-4:]}"
    if len(digits) > 4:
        return "*" * (len(digits) - 4) + digits[-4:]
    return "****"


def mask_id_number(id_number: str) -> str:
    """Resident ID: keep the first six (region) and the last four characters."""
    id_number = id_number.strip()
    if len(id_number) <= 10:
        return "*" * len(id_number)
    return id_number[:6] + "*" * (len(id_number) - 10) + id_number[-4:]


_MOBILE = re.compile(r"(?<!\d)1[3-9]\d{9}(?!\d)")
_ID_NUMBER = re.compile(r"(?<![0-9A-Za-z])\d{17}[\dXx](?![0-9A-Za-z])")


def redact(text: str, target: Any) -> str:
    """Free text written by staff, made fit for a group chat: the resident's name, phone and ID number as
    they would be masked, and any other mobile or resident ID number in it masked too."""
    for value, mask in ((getattr(target, "id_number", None), mask_id_number), (getattr(target, "phone", None),
                                                                              mask_phone)):
        if value:
            text = text.replace(value, mask(value))
    name = (getattr(target, "name", None) or "").strip()
    if len(name) >= 2:
        text = text.replace(name, mask_name(name))
    text = _ID_NUMBER.sub(lambda m: mask_id_number(m.group()), text)
    return _MOBILE.sub(lambda m: mask_phone(m.group()), text)
