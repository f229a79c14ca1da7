"""Validation of an instruction from the center's platform into a NewInstruction.

Fields this version does not know are kept (in the stored raw JSON), not refused: a newer platform
must never lose an instruction to an older bot.

Errors are a list of {"field", "message"}; messages are Chinese because the center's operators read them.
"""

from __future__ import annotations

import math
import re
from datetime import datetime, timedelta
from typing import Any

from bot.render import SHANGHAI
from domain.models import RISK_LEVELS, NewInstruction, Target

WARNING_TYPES = ("涉诈来电", "资金预警", "涉诈APP", "涉诈短信", "涉诈网址", "其他")
_INSTRUCTION_NO = re.compile(r"^[0-9A-Za-z_\-:.]{1,64}$")
_CODE = re.compile(r"^[0-9A-Za-z_\-]{1,32}$")
_PHONE = re.compile(r"^\+?[0-9\- ]{5,20}$")
_ID_NUMBER = re.compile(r"^[0-9]{17}[0-9Xx]$|^[0-9]{15}$")
# An instruction is about a fraud happening now: issued this century, and not in the future (a day of
# slack for a center whose clock is off). Outside these, the date cannot be rendered or is a mistake.
EARLIEST_ISSUED_AT = datetime(2000, 1, 1, tzinfo=SHANGHAI).timestamp()
ISSUED_AT_FUTURE_SLACK = 86400.0
MAX_UTC_OFFSET = timedelta(hours=14)  # the farthest real time zones (Kiribati +14, Baker Island -12)
MAX_AMOUNT = 10**12  # yuan: more than any fraud; larger numbers are typing or encoding mistakes
MAX_AGE = 150


class _Errors(list):
    def add(self, field: str, message: str) -> None:
        self.append({"field": field, "message": message})


def validate_instruction(obj: Any, now: float) -> tuple[NewInstruction | None, list[dict[str, str]]]:
    """Check one instruction object received at `now`; returns it parsed, or None and every field error found.

    Everything that storing and rendering it could trip over is refused here, before the transaction."""
    errors = _Errors()
    if not isinstance(obj, dict):
        errors.add("", "指令必须是 JSON 对象")
        return None, errors

    instruction_no = _text(obj, "instruction_no", errors, max_len=64)
    if instruction_no and not _INSTRUCTION_NO.match(instruction_no):
        errors.add("instruction_no", "指令编号只能包含字母、数字和 _-:.，长度不超过64")
    issued_at = _timestamp(obj.get("issued_at"), now, errors)
    warning_type = _text(obj, "warning_type", errors, max_len=16)
    if warning_type and warning_type not in WARNING_TYPES:
        errors.add("warning_type", f"预警类型必须是以下之一：{'、'.join(WARNING_TYPES)}")
    fraud_type = _text(obj, "fraud_type", errors, max_len=32)
    risk_level = obj.get("risk_level")
    if risk_level not in RISK_LEVELS:
        errors.add("risk_level", "风险等级必须是 high、medium 或 low")
    summary = _text(obj, "summary", errors, max_len=1000, required=False) or ""
    amount = obj.get("amount_at_risk")
    if amount is not None and not _is_number_within(amount, 0, MAX_AMOUNT):
        errors.add("amount_at_risk", f"涉险金额必须是0到{MAX_AMOUNT}之间的数字（单位：元）")
        amount = None

    target = _target(obj.get("target"), errors)
    station_code, grid_code = _jurisdiction(obj.get("jurisdiction"), errors)

    if errors:
        return None, errors
    return NewInstruction(
        instruction_no=instruction_no, issued_at=issued_at, warning_type=warning_type, fraud_type=fraud_type,
        risk_level=risk_level, target=target, station_code=station_code, grid_code=grid_code, summary=summary,
        amount_at_risk=float(amount) if amount is not None else None, raw=obj,
    ), errors


def _text(obj: dict, key: str, errors: _Errors, *, max_len: int, required: bool = True,
          prefix: str = "") -> str | None:
    value = obj.get(key)
    field = prefix + key
    if value is None or (isinstance(value, str) and not value.strip()):
        if required:
            errors.add(field, "必填")
        return None
    if not isinstance(value, str):
        errors.add(field, "必须是字符串")
        return None
    value = value.strip()
    if len(value) > max_len:
        errors.add(field, f"长度不能超过{max_len}个字符")
        return None
    if any(ord(ch) < 32 and ch not in "\n\t" for ch in value):
        errors.add(field, "不能包含控制字符")
        return None
    return value


def _is_number_within(value: Any, low: float, high: float) -> bool:
    """A JSON number (not a boolean, not NaN/Infinity) in [low, high]; big integers compare exactly, unconverted."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    if isinstance(value, float) and not math.isfinite(value):
        return False
    return low <= value <= high


def _timestamp(value: Any, now: float, errors: _Errors) -> float | None:
    if not isinstance(value, str) or not value.strip():
        errors.add("issued_at", "必填，ISO 8601 时间，例如 2026-11-22T14:03:05+08:00")
        return None
    try:
        if not (value.isascii() and value.isprintable()):  # the C parser would stop at a NUL and accept
            raise ValueError(value)
        parsed = datetime.fromisoformat(value.strip())
    except ValueError:
        errors.add("issued_at", "时间格式错误，应为 ISO 8601，例如 2026-11-22T14:03:05+08:00")
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=SHANGHAI)  # the center's platform speaks Beijing time
    offset = parsed.utcoffset()
    if offset is None or abs(offset) > MAX_UTC_OFFSET:
        errors.add("issued_at", "时区偏移不合理，应在 -14:00 到 +14:00 之间，例如 +08:00")
        return None
    try:
        stamp = parsed.timestamp()
    except (OverflowError, ValueError):  # year 1 or 9999 with an offset beyond the calendar
        stamp = -math.inf
    if not EARLIEST_ISSUED_AT <= stamp <= now + ISSUED_AT_FUTURE_SLACK:
        errors.add("issued_at", "下发时间不合理：不能早于2000年，也不能晚于当前时间一天以上")
        return None
    return stamp


def _target(value: Any, errors: _Errors) -> Target | None:
    if not isinstance(value, dict):
        errors.add("target", "必填，劝阻对象信息（对象）")
        return None
    name = _text(value, "name", errors, max_len=32, prefix="target.")
    phone = _text(value, "phone", errors, max_len=20, prefix="target.")
    if phone and not _PHONE.match(phone):
        errors.add("target.phone", "电话号码格式错误")
    id_number = _text(value, "id_number", errors, max_len=18, required=False, prefix="target.")
    if id_number and not _ID_NUMBER.match(id_number):
        errors.add("target.id_number", "身份证号格式错误（18位，末位可为X）")
    address = _text(value, "address", errors, max_len=200, required=False, prefix="target.")
    age = value.get("age")
    if age is not None and (not isinstance(age, int) or not _is_number_within(age, 0, MAX_AGE)):
        errors.add("target.age", f"年龄必须是0到{MAX_AGE}之间的整数")
    if name is None or phone is None:
        return None
    return Target(name=name, phone=phone, id_number=id_number.upper() if id_number else None, address=address,
                  age=age)


def _jurisdiction(value: Any, errors: _Errors) -> tuple[str | None, str | None]:
    if not isinstance(value, dict):
        errors.add("jurisdiction", "必填，辖区信息 {station, grid}")
        return None, None
    station = _text(value, "station", errors, max_len=32, prefix="jurisdiction.")
    if station and not _CODE.match(station):
        errors.add("jurisdiction.station", "派出所编码只能包含字母、数字、_ 和 -")
    grid = _text(value, "grid", errors, max_len=32, required=False, prefix="jurisdiction.")
    if grid and not _CODE.match(grid):
        errors.add("jurisdiction.grid", "网格编码只能包含字母、数字、_ 和 -")
    return station, grid
