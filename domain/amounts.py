"""Money as people type it in chat: 10万, 3.5万元, 100000, 十万, 一万五, 2千, 1.2亿."""

from __future__ import annotations

import re

_DIGITS = {"零": 0, "〇": 0, "一": 1, "二": 2, "两": 2, "三": 3, "四": 4, "五": 5, "六": 6, "七": 7, "八": 8, "九": 9,
           **{str(d): d for d in range(10)}}
_SMALL_UNITS = {"十": 10, "拾": 10, "百": 100, "佰": 100, "千": 1000, "仟": 1000}
_BIG_UNITS = {"万": 10_000, "亿": 100_000_000}
_ARABIC = re.compile(r"^(\d+(?:\.\d+)?)([十百千万亿]*)$")
_CURRENCY = ("人民币", "元整", "块钱", "元", "块")


class AmountError(ValueError):
    """The text is not an amount of money."""


def parse_amount(text: str) -> float:
    """Yuan from a typed amount; raises AmountError with a Chinese message."""
    raw = text
    text = text.strip().replace(",", "").replace("，", "").replace(" ", "")
    for word in ("挽损", "挽回", "止付", "被骗", "损失", "金额", "约"):
        text = text.removeprefix(word)
    for suffix in _CURRENCY:
        text = text.removesuffix(suffix)
    if not text:
        raise AmountError(f"无法识别金额：{raw}")
    match = _ARABIC.match(text)
    if match:
        value = float(match.group(1))
        for unit in match.group(2):
            value *= {**_SMALL_UNITS, **_BIG_UNITS}[unit]
        return value
    return float(_chinese_number(text, raw))


def _chinese_number(text: str, raw: str) -> int:
    """十万 → 100000, 一万五 → 15000, 三千二百 → 3200, 两亿 → 200000000."""
    total = 0  # completed 万/亿 sections
    section = 0  # the part below the current big unit
    digit: int | None = None
    last_unit = 1
    for ch in text:
        if ch in ("零", "〇"):
            last_unit = 10  # 一百零五: what follows a zero counts in ones
        elif ch in _DIGITS:
            digit = _DIGITS[ch]
        elif ch in _SMALL_UNITS:
            last_unit = _SMALL_UNITS[ch]
            section += (1 if digit is None else digit) * last_unit  # 十 alone means 10
            digit = None
        elif ch in _BIG_UNITS:
            big = _BIG_UNITS[ch]
            section += digit or 0
            total = (total + section) * big if big > total else total + section * big
            section, digit, last_unit = 0, None, big
        else:
            raise AmountError(f"无法识别金额：{raw}")
    if digit is not None:
        # 一万五 = 15000: a trailing digit counts in the unit below the last one used
        section += digit * (last_unit // 10 if last_unit >= 10 else 1)
    return total + section
