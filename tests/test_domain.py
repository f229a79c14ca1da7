"""Pure domain pieces: masking, formatting, config and directory checks, the send limiter."""

from __future__ import annotations

import pytest

from bot.config import ConfigError, parse_settings
from bot.directory import DirectoryError, load_directory_file, parse_directory
from bot.ratelimit import SendLimiter
from bot.render import fit_bytes, format_yuan
from domain.masking import mask_id_number, mask_name, mask_phone
from tests.helpers import DISTRICT


@pytest.mark.parametrize(("name", "masked"), [("唐小明", "唐某"), ("李娜", "李某"), (" 王 ", "王某"), ("", "")])
def test_mask_name(name, masked):
    assert mask_name(name) == masked


@pytest.mark.parametrize(
    ("phone", "masked"),
    [("13812348000", "138****8000"), ("138-1234-8000", "138****8000"), ("0755-8688 1234", "********1234"),
     ("123", "****")],
)
def test_mask_phone(phone, masked):
    assert mask_phone(phone) == masked


def test_mask_id_number():
    assert mask_id_number("500101195901011234") == "500101********1234"


@pytest.mark.parametrize(
    ("amount", "text"), [(100000, "10万元"), (35000, "3.5万元"), (800, "800元"), (1234.5, "1234.5元"),
                         (123456, "12.35万元")],
)
def test_format_yuan(amount, text):
    assert format_yuan(amount) == text


def test_fit_bytes_cuts_on_a_character_boundary():
    text = "汉" * 1000  # 3000 bytes
    cut = fit_bytes(text, 2048)
    assert len(cut.encode("utf-8")) <= 2048
    assert cut.endswith("（内容过长已截断）")
    assert fit_bytes("短", 2048) == "短"


_MINIMAL = {
    "wecom": {"corp_id": "ww1", "corp_secret": "s", "agent_id": 1,
              "encoding_aes_key": "QuanzuDemoEncodingAesKey0123456789abcdefgh0"},
    "api": {"tokens": ["a-long-token"]},
    "directory": {"path": "d.toml"},
}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"wecom": {"corp_secret": "s", "agent_id": 1}}, "wecom.corp_id is required"),
        ({"wecom": {"corp_id": "ww1", "corp_secret": "s", "agent_id": 1}}, "encoding_aes_key must be exactly 43"),
        ({"wecom": {"corp_id": "ww1", "corp_secret": "s", "agent_id": "1"}}, "wecom.agent_id must be int"),
        ({"api": {"tokens": []}}, "api.tokens must be a non-empty list"),
        ({"api": {"tokens": ["short"]}}, "at least 8 characters"),
        ({"server": {"port": 70000}}, "server.port must be a TCP port"),
        ({"database": {"synchronous": "OFF"}}, "database.synchronous must be"),
        ({"wecom": {"corp_id": "ww1", "corp_secret": "s", "agent_id": 1, "encoding_aes_key": "x"}}, "43"),
        ({"delivery": {"max_attempts": 0}}, "delivery.max_attempts must be positive"),
        ({"bogus": {}}, "unknown section [bogus]"),
        ({"directory": {}}, "directory.path is required"),
    ],
)
def test_config_errors_name_the_key(change, message):
    raw = {**_MINIMAL, **change}
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
        parse_settings(raw)


def test_config_defaults():
    settings = parse_settings(_MINIMAL)
    assert settings.wecom.api_base == "https://qyapi.weixin.qq.com/cgi-bin/"
    assert settings.server.port == 8080
    assert settings.database.synchronous == "FULL"
    assert settings.public_url == "http://127.0.0.1:8080"


def _filled_in_example() -> str:
    """config.example.toml with the placeholders replaced, as an operator fills it in."""
    from tests.helpers import ROOT

    text = (ROOT / "config.example.toml").read_text(encoding="utf-8")
    for placeholder, value in (("ww0123456789abcdef", "wwf00dcafe12345678"),
                               ("abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG", "Q" * 42 + "A"),
                               ("replace-with-the-app-secret", "s3cret-from-the-console"),
                               ("replace-with-callback-token", "CallbackToken42"),
                               ("replace-with-a-long-random-token", "a-long-random-intake-token")):
        assert placeholder in text
        text = text.replace(placeholder, value)
    return text


def test_example_config_parses_once_filled_in_and_refuses_its_placeholders():
    import tomllib

    from bot.config import load_settings
    from tests.helpers import ROOT

    with pytest.raises(ConfigError) as refused:
        load_settings(ROOT / "config.example.toml")
    for key in ("wecom.corp_id", "wecom.corp_secret", "wecom.token", "wecom.encoding_aes_key", "api.tokens"):
        assert key in str(refused.value)
    settings = parse_settings(tomllib.loads(_filled_in_example()))
    assert settings.wecom.agent_id == 1000002


def test_example_config_shows_the_real_defaults():
    """Uncommenting every optional key of config.example.toml changes nothing: it shows the real defaults."""
    import re
    import tomllib

    text = _filled_in_example()
    uncommented = re.sub(r"^# ([a-z_]+ = )", r"\1", text, flags=re.MULTILINE)
    assert uncommented != text
    raw = tomllib.loads(uncommented)
    assert parse_settings(raw) == parse_settings(tomllib.loads(text))


def test_demo_district_is_consistent():
    d = load_directory_file(DISTRICT)
    assert len(d.stations) == 2 and len(d.grids) == 4
    assert [p.userid for p in d.grid_workers("DM-01")] == ["liuhong"]
    assert d.fallback_group == "center-command"


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"grids": [{"code": "G", "name": "n", "station": "S"}]}, "is not a known station"),
        ({"people": [{"userid": "u", "name": "n", "role": "chief"}]}, "role must be one of"),
        ({"people": [{"userid": "u", "name": "n", "role": "grid_worker"}]}, "a grid_worker needs a grid"),
        ({"groups": [{"code": "g", "name": "n", "kind": "email"}]}, "kind must be appchat or webhook"),
        ({"stations": [{"code": "S", "name": "n", "duty_officer": "ghost"}]}, "is not in \\[\\[people\\]\\]"),
        ({"center": {"fallback_group": "nope"}}, "fallback_group 'nope' is not a known group"),
    ],
)
def test_directory_errors(raw, message):
    with pytest.raises(DirectoryError, match=message):
        parse_directory(raw)


def test_limiter_spreads_a_burst_over_windows():
    limiter = SendLimiter({"app": ((30, 60.0), (1000, 3600.0))})
    now = 1000.0
    sent_at = []
    for _ in range(100):
        at = limiter.earliest(["app:u"], now)
        limiter.record(["app:u"], at)
        sent_at.append(at)
    assert sent_at[:30] == [now] * 30
    assert sent_at[30:60] == [now + 60] * 30
    assert sent_at[99] == now + 180
    # no 60-second window holds more than 30 sends
    assert max(sum(1 for t in sent_at if s <= t < s + 60) for s in sent_at) == 30
    assert limiter.earliest(["app:other"], now) == now


def test_limiter_hourly_window():
    limiter = SendLimiter({"app": ((30, 60.0), (1000, 3600.0))})
    t = 0.0
    for _ in range(1000):
        t = limiter.earliest(["app:u"], t)
        limiter.record(["app:u"], t)
    assert limiter.earliest(["app:u"], t) == 3600.0


def test_limiter_counts_a_slow_send_when_it_finished():
    limiter = SendLimiter({"app": ((2, 60.0),)})
    limiter.record(["app:u"], 0.0)
    limiter.record(["app:u"], 0.0)
    assert limiter.earliest(["app:u"], 1.0) == 60.0
    limiter.settle(["app:u"], 0.0, 30.0)  # both calls only got through 30 s after they were claimed
    limiter.settle(["app:u"], 0.0, 30.0)
    assert limiter.earliest(["app:u"], 61.0) == 90.0


def test_directory_check_lists_every_problem_at_once_and_names_typos():
    raw = {
        "stations": [{"code": "S", "name": "一所", "duty_oficer": "u1"}, {"code": "S", "name": "重复"}],
        "grids": [{"code": "G", "name": "网格", "station": "NOPE"}],
        "people": [{"userid": "u1", "name": "甲", "role": "chief"},
                   {"userid": "u2", "name": "乙", "role": "grid_worker"}],
        "center": {"fallback_group": "nope"},
    }
    with pytest.raises(DirectoryError) as refused:
        parse_directory(raw)
    lines = str(refused.value).splitlines()
    assert "stations[0].duty_oficer: unknown key — did you mean duty_officer?" in lines
    assert "stations[1].code 'S' is used twice" in lines
    assert "grids[0].station 'NOPE' is not a known station" in lines
    assert any(line.startswith("people[0].role must be one of") for line in lines)
    assert "people[1]: a grid_worker needs a grid" in lines
    assert "center.fallback_group 'nope' is not a known group code" in lines
    assert len(lines) == 6, lines
