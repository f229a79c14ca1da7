"""config.example.toml and the configuration schema (bot/config.py) hold together, and a mistyped key is named."""

from __future__ import annotations

import re

import pytest
from pydantic import BaseModel

from bot.config import ConfigError, Settings, parse_settings
from domain.policy import DEFAULT_POLICIES
from tests.helpers import ROOT

_KEY = re.compile(r"^(?:# )?([a-z_]+) = ", re.MULTILINE)
_HEADER = re.compile(r"^\[([a-z_.]+)\]\s*$", re.MULTILINE)
_MINIMAL = {
    "wecom": {"corp_id": "ww1", "corp_secret": "s", "agent_id": 1,
              "encoding_aes_key": "QuanzuDemoEncodingAesKey0123456789abcdefgh0"},
    "api": {"tokens": ["a-long-token"]},
    "directory": {"path": "d.toml"},
}


def _documented() -> dict[str, set[str]]:
    """Each [section] of config.example.toml with the keys it shows, set or commented out."""
    text = (ROOT / "config.example.toml").read_text(encoding="utf-8")
    headers = list(_HEADER.finditer(text))
    sections: dict[str, set[str]] = {}
    for n, header in enumerate(headers):
        end = headers[n + 1].start() if n + 1 < len(headers) else len(text)
        # An example campaign's keys are not the section's own.
        body = text[header.end():end].split("\n# [[awareness.campaigns]]", 1)[0]
        sections[header.group(1)] = set(_KEY.findall(body))
    return sections


def _schema() -> dict[str, set[str]]:
    sections = {}
    for name, field in Settings.model_fields.items():
        if isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel):
            sections[name] = set(field.annotation.model_fields)
    for risk in DEFAULT_POLICIES:
        sections[f"policy.{risk}"] = {f for f in DEFAULT_POLICIES[risk].__dataclass_fields__ if f != "risk"}
    sections["awareness"] = {"check_interval", "grace", "trend_days", "quiet_hours", "confirm_timeout", "library"}
    return sections


def test_every_key_of_the_schema_is_documented_in_the_example_and_none_is_stale():
    documented, schema = _documented(), _schema()
    assert set(documented) == set(schema), "sections of config.example.toml differ from the schema's"
    for section, keys in schema.items():
        assert documented[section] == keys, (section, "undocumented:", keys - documented[section],
                                              "stale:", documented[section] - keys)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"delivery": {"max_attempt": 3}}, "[delivery] max_attempt: unknown key — did you mean max_attempts?"),
        ({"delivry": {}}, "unknown section [delivry] — did you mean delivery?"),
        ({"server": {"hots": "0.0.0.0"}}, "[server] hots: unknown key — did you mean host?"),
        ({"delivery": {"duplicate_check_interval": 20000}}, "delivery.duplicate_check_interval must be less than"),
        ({"wecom": {**_MINIMAL["wecom"], "callback_max_age": 5}}, "wecom.callback_max_age must be 0 (no check) or"),
        ({"wecom": {**_MINIMAL["wecom"], "callback_max_age": -1}}, "wecom.callback_max_age must be greater than"),
        ({"server": {"port": "80"}}, "server.port must be int, got '80'"),
        ({"server": {"header_timeout": True}}, "server.header_timeout must be a number, got True"),
        ({"bulletin": {"daily_time": "25:00"}}, "bulletin.daily_time must be a time of day as HH:MM"),
        ({"cluster": {"dead_after": 1}}, "cluster.dead_after must be at least three heartbeat_intervals"),
        ({"logging": {"level": "trace"}}, "logging.level must be"),
        ({"server": {"trusted_proxies": ["10.0.0.0/33"]}}, "server.trusted_proxies"),
        ({"policy": {"high": {"ack_within": "soon"}}}, "policy.high.ack_within must be a duration"),
    ],
)
def test_a_wrong_key_or_value_is_named_with_its_path(change, message):
    with pytest.raises(ConfigError) as refused:
        parse_settings({**_MINIMAL, **change})
    assert message in str(refused.value)


def test_every_problem_is_listed_at_once():
    with pytest.raises(ConfigError) as refused:
        parse_settings({**_MINIMAL, "delivery": {"max_attempt": 3, "concurrency": 0}, "server": {"port": -1}})
    lines = str(refused.value).splitlines()
    assert len(lines) == 3, lines
