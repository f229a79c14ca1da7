"""Masking of personal data for anything shown in group chats (唐某, 138****8000)."""

from __future__ import annotations


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
