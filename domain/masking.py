"""Masking of personal data for anything read beyond the people who act on an instruction.

`mask_*` turn one known value into what a group may read (唐某, 138****8000). `redact` finds personal
data in free text (the center's summary and fraud type, staff notes): the resident's own name, phone,
ID number and address in any spelling it recognises, and any mobile, landline, ID or bank card number.
`group_view` is an instruction as a group may read it, and `group_context` applies both to everything
a group template is given (bot/render.py does that for every template in GROUP_TEMPLATES).
docs/personal-data.md says who sees what.
"""

from __future__ import annotations

import re
from dataclasses import replace
from typing import Any

from domain.models import Instruction, Target

# Two-character surnames: for these the given name is what follows the first two characters.
_COMPOUND_SURNAMES = frozenset(re.findall(
    "..", "欧阳司马上官诸葛东方皇甫尉迟公孙慕容长孙宇文司徒夏侯轩辕令狐钟离端木独孤南宫西门"
          "百里呼延澹台公冶宗政濮阳淳于单于太叔申屠闻人赫连万俟拓跋第五"))
NAME_MARK = "某"
ADDRESS_MARK = "（地址略）"
# Full-width digits and signs, as Chinese input methods often type them, read as ASCII before matching.
_HALF_WIDTH = str.maketrans("０１２３４５６７８９＋", "0123456789+")
# What people put between the digits of one number: spaces, hyphens, dots (at most three in a row).
_SEP = r"[\s\-.－—]{0,3}"
_ID_NUMBER = re.compile(rf"(?<!\d)\d{{6}}{_SEP}\d{{8}}{_SEP}\d{{3}}[\dXx](?![\dXx])")
_OLD_ID_NUMBER = re.compile(r"(?<!\d)\d{15}(?!\d)")
_BANK_CARD = re.compile(rf"(?<!\d)\d(?:{_SEP}\d){{15,18}}(?!\d)")
_MOBILE = re.compile(rf"(?<![\d+])(?:(?:\+|00)?86{_SEP})?1[3-9]\d(?:{_SEP}\d){{8}}(?!\d)")
_LANDLINE = re.compile(rf"(?<!\d)(?:[(（]0\d{{2,3}}[)）]|0\d{{2,3}}){_SEP}[2-9]\d{{2,3}}{_SEP}\d{{4}}(?!\d)")
# One number as written, separators and all (the resident's own phone or ID number is looked for in it).
_NUMBER_RUN = re.compile(rf"(?<![\d+])(?:\+|00)?\d(?:{_SEP}[\dXx])*")
# Building, unit and room numbers (3栋2单元501室, 88号3单元): two or more in a row.
_DOOR = re.compile(r"(?<!\d)(?:\d+(?:-\d+)?\s*(?:号楼|栋|幢|座|单元|层|楼|室|号|户)\s*){2,}")
# Where an address turns from the district to the street: what follows one of these is the door.
_ADDRESS_PART = re.compile(r"社区|小区|街道|[省市区县镇乡村路街巷弄里]")


def mask_name(name: str) -> str:
    """Keep the surname: 唐小明 → 唐某. Two-character compound surnames are not guessed at."""
    name = name.strip()
    if not name:
        return ""
    return f"{name[0]}{NAME_MARK}"


def mask_phone(phone: str) -> str:
    """138****8000 for mobiles; landlines keep their last four digits. Already masked stays as it is."""
    if "*" in phone:
        return phone
    digits = "".join(ch for ch in phone if ch.isdigit())
    if len(digits) == 11:
        return f"{digits[:3]}****{digits[-4:]}"
    if len(digits) > 4:
        return "*" * (len(digits) - 4) + digits[-4:]
    return "****"


def mask_id_number(id_number: str) -> str:
    """Resident ID: keep the first six (region) and the last four characters."""
    id_number = "".join(id_number.split())
    if len(id_number) <= 10:
        return "*" * len(id_number)
    return id_number[:6] + "*" * (len(id_number) - 10) + id_number[-4:]


def mask_card_number(number: str) -> str:
    """A bank card: its last four digits."""
    digits = "".join(ch for ch in number if ch.isdigit())
    return "****" + digits[-4:]


def redact(text: str | None, target: Any = None) -> str:
    """Free text made fit for a group: the resident's (target's) name, given name, phone, ID number and
    address, and every mobile, landline, resident ID and bank card number in it, masked."""
    if not text:
        return text or ""
    text = text.translate(_HALF_WIDTH)
    if target is not None:
        text = _redact_own(text, target)
    text = _ID_NUMBER.sub(lambda m: mask_id_number(_digits_x(m.group())), text)
    text = _OLD_ID_NUMBER.sub(lambda m: mask_id_number(m.group()), text)
    text = _BANK_CARD.sub(lambda m: mask_card_number(m.group()), text)
    text = _MOBILE.sub(lambda m: mask_phone(_national(m.group())), text)
    text = _LANDLINE.sub(lambda m: mask_phone(m.group()), text)
    return _DOOR.sub("**", text)


def group_view(i: Instruction) -> Instruction:
    """The instruction as a group chat may read it: the resident masked, the free text redacted."""
    t = i.target
    return replace(
        i,
        summary=redact(i.summary, t),
        fraud_type=redact(i.fraud_type, t),
        warning_type=redact(i.warning_type, t),
        outcome_note=redact(i.outcome_note, t) if i.outcome_note else i.outcome_note,
        target=Target(name=mask_name(t.name), phone=mask_phone(t.phone),
                      id_number=mask_id_number(t.id_number) if t.id_number else None, address=None, age=t.age),
    )


def group_context(context: dict[str, Any]) -> dict[str, Any]:
    """What a group template is given: the instruction `i` as its group view, every other text redacted
    against the instruction's resident (error texts, notes, anything a caller passes)."""
    i = context.get("i")
    target = i.target if isinstance(i, Instruction) else None
    return {key: group_view(value) if isinstance(value, Instruction)
            else redact(value, target) if isinstance(value, str) else value
            for key, value in context.items()}


def _redact_own(text: str, target: Any) -> str:
    """The resident's own values, also spelled with spaces or hyphens in them. Precompiled patterns only:
    a pattern per resident would cost milliseconds per instruction to compile."""
    own_numbers = []
    id_number = "".join((getattr(target, "id_number", None) or "").split()).upper()
    if len(id_number) >= 15:
        own_numbers.append((id_number, mask_id_number(id_number)))
    phone = "".join(ch for ch in getattr(target, "phone", None) or "" if ch.isdigit())
    phone = phone.removeprefix("00" if len(phone) == 15 else "").removeprefix("86" if len(phone) >= 13 else "")
    if len(phone) >= 7:
        own_numbers.append((phone, mask_phone(phone)))
    if own_numbers:
        def mask_own(m: re.Match[str]) -> str:
            digits = _digits_x(m.group())
            return next((mask for value, mask in own_numbers if value in digits), m.group())

        text = _NUMBER_RUN.sub(mask_own, text)
    address = (getattr(target, "address", None) or "").strip()
    if len(address) >= 4:
        tails = [address[m.end():] for m in _ADDRESS_PART.finditer(address)]
        for part in [address, *tails]:
            if len(part) >= 4 and (part == address or any(ch.isdigit() for ch in part)):
                text = _replace_spelled(text, part, ADDRESS_MARK)
    name = (getattr(target, "name", None) or "").strip()
    if len(name) >= 2:
        text = _replace_spelled(text, name, mask_name(name))
        for given in _given_names(name):
            text = _replace_spelled(text, given, NAME_MARK * 2)
    return text


def _replace_spelled(text: str, value: str, mask: str) -> str:
    """value in text replaced by mask, also where it is written with spaces between its characters or in
    another case (a pattern is compiled only then, which is rare)."""
    text = text.replace(value, mask)
    squeezed = "".join(value.split()).lower()
    if squeezed in "".join(text.split()).lower():
        text = re.sub(r"\s*".join(re.escape(ch) for ch in squeezed), mask, text, flags=re.IGNORECASE)
    return text


def _given_names(name: str) -> list[str]:
    """Parts of a name that identify the person on their own, where unambiguous (two characters or more):
    晓燕 of 唐晓燕, 娜娜 of 欧阳娜娜, each part of 买买提·艾力."""
    parts = [p for p in re.split(r"[·•・.．\s]+", name) if p]
    if len(parts) > 1:
        return [p for p in parts if sum(ch.isalpha() for ch in p) >= 2]
    surname = 2 if name[:2] in _COMPOUND_SURNAMES else 1
    given = name[surname:]
    return [given] if len(given) >= 2 and not given.isascii() else []


def _digits_x(value: str) -> str:
    return "".join(ch for ch in value if ch.isdigit() or ch in "Xx").upper()


def _national(value: str) -> str:
    """A mobile without its +86 / 0086 / 86 prefix."""
    digits = "".join(ch for ch in value if ch.isdigit())
    return digits[-11:]
