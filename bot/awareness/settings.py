"""The [awareness] config section and campaign definitions (from the config file or the API).

Kept free of bot.config so that bot.config can import it; errors are AwarenessConfigError (a
ValueError) naming the key, which bot.config turns into its ConfigError.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from apscheduler.triggers.cron import CronTrigger

from bot.scheduler import crontab_trigger
from domain.awareness import CHANNELS, Audience, Campaign

SELECTIONS = ("fixed", "rotation", "trend")
DEFAULT_LIBRARY = Path(__file__).resolve().parent.parent.parent / "templates" / "awareness" / "library.toml"
_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")
_QUIET = re.compile(r"(\d{2}):(\d{2})-(\d{2}):(\d{2})")


class AwarenessConfigError(ValueError):
    """A campaign or [awareness] key is wrong; the message names it."""


def campaign_trigger(campaign: Campaign) -> CronTrigger | None:
    """When a campaign runs by itself; None for one run only by hand."""
    return crontab_trigger(campaign.schedule) if campaign.schedule else None


@dataclass(frozen=True)
class AwarenessSettings:
    check_interval: float = 30.0  # seconds between looks for due campaigns
    grace: float = 3600.0  # a slot missed while the bot was down still runs if at most this late
    trend_days: int = 7
    quiet_hours: str = "21:30-08:00"
    confirm_timeout: float = 3 * 86400.0  # customer-group tasks unconfirmed this long are reported
    library: Path = DEFAULT_LIBRARY
    campaigns: tuple[Campaign, ...] = ()


def parse_awareness(raw: Any, base_dir: Path = Path()) -> AwarenessSettings:
    """The [awareness] section with its [[awareness.campaigns]]."""
    if not isinstance(raw, dict):
        raise AwarenessConfigError("[awareness] must be a table")
    known = {"check_interval", "grace", "trend_days", "quiet_hours", "confirm_timeout", "library", "campaigns"}
    _no_unknown(raw, known, "awareness")
    trend_days = _int(raw, "trend_days", "awareness", 7, minimum=1)
    quiet = _quiet(raw.get("quiet_hours", "21:30-08:00"), "awareness.quiet_hours")
    library = Path(_str(raw, "library", "awareness", str(DEFAULT_LIBRARY)))
    campaigns_raw = raw.get("campaigns", [])
    if not isinstance(campaigns_raw, list):
        raise AwarenessConfigError("[[awareness.campaigns]] must be an array of tables")
    campaigns = []
    for i, c in enumerate(campaigns_raw):
        campaigns.append(parse_campaign(c, f"awareness.campaigns[{i}]", trend_days=trend_days, quiet_hours=quiet))
    names = [c.name for c in campaigns]
    if len(set(names)) != len(names):
        raise AwarenessConfigError("awareness.campaigns: names must be unique")
    return AwarenessSettings(
        check_interval=_number(raw, "check_interval", "awareness", 30.0),
        grace=_number(raw, "grace", "awareness", 3600.0, minimum=0.0),
        trend_days=trend_days,
        quiet_hours=quiet,
        confirm_timeout=_number(raw, "confirm_timeout", "awareness", 3 * 86400.0),
        library=library if library.is_absolute() else (base_dir / library).resolve(),
        campaigns=tuple(campaigns),
    )


def parse_campaign(raw: Any, where: str = "campaign", *, trend_days: int = 7,
                   quiet_hours: str = "21:30-08:00") -> Campaign:
    """One campaign definition; the config's [[awareness.campaigns]] and the API share this."""
    if not isinstance(raw, dict):
        raise AwarenessConfigError(f"{where} must be a table / JSON object")
    known = {"name", "title", "schedule", "selection", "audience", "channels", "item", "fraud_types",
             "trend_days", "quiet_hours", "urgent", "enabled"}
    _no_unknown(raw, known, where)
    name = _str(raw, "name", where)
    if not _NAME.fullmatch(name):
        raise AwarenessConfigError(f"{where}.name must be lower-case letters, digits, - or _ (at most 64)")
    schedule = _str(raw, "schedule", where, "").strip()
    if schedule:
        try:
            crontab_trigger(schedule)
        except ValueError as err:
            raise AwarenessConfigError(f"{where}.schedule is not a crontab expression: {err}") from err
    selection = _str(raw, "selection", where, "rotation")
    if selection not in SELECTIONS:
        raise AwarenessConfigError(f"{where}.selection must be one of {', '.join(SELECTIONS)}")
    item = raw.get("item")
    if selection == "fixed" and not (isinstance(item, str) and item):
        raise AwarenessConfigError(f"{where}.item is required for selection = \"fixed\"")
    if item is not None and not isinstance(item, str):
        raise AwarenessConfigError(f"{where}.item must be a string")
    audience_raw = raw.get("audience", {})
    if not isinstance(audience_raw, dict):
        raise AwarenessConfigError(f"{where}.audience must be a table")
    _no_unknown(audience_raw, {"stations", "communities", "tags", "groups"}, f"{where}.audience")
    audience = Audience(**{k: _strings(audience_raw, k, f"{where}.audience") for k in audience_raw})
    channels = _strings(raw, "channels", where) if "channels" in raw else CHANNELS
    if not channels or any(c not in CHANNELS for c in channels):
        raise AwarenessConfigError(f"{where}.channels must be a non-empty list of {', '.join(CHANNELS)}")
    return Campaign(
        name=name,
        title=_str(raw, "title", where, name),
        schedule=schedule,
        selection=selection,
        audience=audience,
        channels=channels,
        item=item,
        fraud_types=_strings(raw, "fraud_types", where),
        trend_days=_int(raw, "trend_days", where, trend_days, minimum=1),
        quiet_hours=_quiet(raw.get("quiet_hours", quiet_hours), f"{where}.quiet_hours"),
        urgent=_bool(raw, "urgent", where, False),
        enabled=_bool(raw, "enabled", where, True),
    )


def quiet_bounds(spec: str) -> tuple[int, int] | None:
    """"22:00-07:30" as minutes of the day (start, end); None for no quiet hours."""
    if not spec:
        return None
    m = _QUIET.fullmatch(spec)
    if m is None:
        raise AwarenessConfigError(f"quiet hours {spec!r} must look like 22:00-07:30")
    h1, m1, h2, m2 = (int(g) for g in m.groups())
    return h1 * 60 + m1, h2 * 60 + m2


def _quiet(value: Any, key: str) -> str:
    if not isinstance(value, str):
        raise AwarenessConfigError(f"{key} must be a string like \"22:00-07:30\" or \"\"")
    value = value.strip()
    bounds = quiet_bounds(value) if value else None
    if bounds and (max(bounds) >= 24 * 60 or bounds[0] == bounds[1]):
        raise AwarenessConfigError(f"{key} must be two different times of day, like \"22:00-07:30\"")
    return value


def _no_unknown(raw: dict[str, Any], known: set[str], where: str) -> None:
    for key in raw:
        if key not in known:
            raise AwarenessConfigError(f"{where}: unknown key {key!r}")


def _str(raw: dict[str, Any], key: str, where: str, default: str | None = None) -> str:
    if key not in raw:
        if default is None:
            raise AwarenessConfigError(f"{where}.{key} is required")
        return default
    value = raw[key]
    if not isinstance(value, str) or (default is None and not value.strip()):
        raise AwarenessConfigError(f"{where}.{key} must be a non-empty string")
    return value.strip()


def _strings(raw: dict[str, Any], key: str, where: str) -> tuple[str, ...]:
    value = raw.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise AwarenessConfigError(f"{where}.{key} must be a list of strings")
    return tuple(value)


def _bool(raw: dict[str, Any], key: str, where: str, default: bool) -> bool:
    value = raw.get(key, default)
    if not isinstance(value, bool):
        raise AwarenessConfigError(f"{where}.{key} must be true or false")
    return value


def _int(raw: dict[str, Any], key: str, where: str, default: int, minimum: int = 0) -> int:
    value = raw.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise AwarenessConfigError(f"{where}.{key} must be an integer of at least {minimum}")
    return value


def _number(raw: dict[str, Any], key: str, where: str, default: float, minimum: float = 0.001) -> float:
    value = raw.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or value < minimum:
        raise AwarenessConfigError(f"{where}.{key} must be a number of at least {minimum}")
    return float(value)
