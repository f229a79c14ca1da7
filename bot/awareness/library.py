"""The content library: anti-fraud tips tagged by fraud type and audience, read from a TOML file."""

from __future__ import annotations

from pathlib import Path

from bot.config import read_toml
from domain.awareness import AUDIENCES, Item, Library

# The fraud types the center's platform names in instructions (fraud_type), plus 通用 for tips
# that fit every type. Items of other types are refused so that a typo cannot hide an item from
# trend-driven selection.
FRAUD_TYPES = (
    "刷单返利", "虚假投资理财", "虚假网络贷款", "冒充电商物流客服", "冒充公检法", "虚假征信",
    "网络游戏虚假交易", "网络婚恋交友", "冒充领导熟人", "虚假购物服务", "冒充军警购物", "共享屏幕", "通用",
)
MAX_TITLE = 30  # characters
MAX_BODY = 160  # characters: one phone screen with the title and the closing line


class LibraryError(ValueError):
    """The library file is inconsistent; the message names the item and key."""




def load_library(path: str | Path) -> Library:
    raw = read_toml(Path(path), "awareness library", LibraryError)
    items = []
    seen: set[str] = set()
    for n, entry in enumerate(raw.get("items", [])):
        where = f"items[{n}]"
        item = Item(
            id=_text(entry, "id", where, 32),
            fraud_type=_text(entry, "fraud_type", where, 20),
            audiences=tuple(entry.get("audiences", ())),
            title=_text(entry, "title", where, MAX_TITLE),
            body=_text(entry, "body", where, MAX_BODY),
            footer=entry.get("footer", True),
        )
        if item.id in seen:
            raise LibraryError(f"{where}.id {item.id!r} is used twice")
        seen.add(item.id)
        if item.fraud_type not in FRAUD_TYPES:
            raise LibraryError(f"{where}.fraud_type {item.fraud_type!r} is not one of {', '.join(FRAUD_TYPES)}")
        if not item.audiences or any(a not in AUDIENCES for a in item.audiences):
            raise LibraryError(f"{where}.audiences must be a non-empty list of {', '.join(AUDIENCES)}")
        if not isinstance(item.footer, bool):
            raise LibraryError(f"{where}.footer must be true or false")
        items.append(item)
    if not items:
        raise LibraryError(f"{path}: no [[items]]")
    return Library(items)


def _text(entry: dict, key: str, where: str, limit: int) -> str:
    value = entry.get(key)
    if not isinstance(value, str) or not value.strip():
        raise LibraryError(f"{where}.{key} is required and must be a non-empty string")
    if len(value) > limit:
        raise LibraryError(f"{where}.{key} is {len(value)} characters; at most {limit}")
    return value.strip()
