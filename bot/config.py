"""Configuration: one schema (pydantic) for the TOML file; bad values are refused at start-up.

Every section is a frozen model that forbids unknown keys, so a typo is named with the nearest valid key
("[delivery] max_attempt — did you mean max_attempts?"). Defaults live here and only here;
config.example.toml documents each key (tests/test_config_schema.py holds the two together).
Durations accept "90s", "5m", "2h", "1d" or seconds; paths are relative to the config file's folder.
"""

from __future__ import annotations

import difflib
import ipaddress
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    InstanceOf,
    Strict,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from bot.awareness.settings import AwarenessSettings, parse_awareness
from domain.policy import DEFAULT_POLICIES, Policy, parse_duration, parse_policies

REAL_WECOM_API = "https://qyapi.weixin.qq.com/cgi-bin/"
REAL_OAUTH_AUTHORIZE = "https://open.weixin.qq.com/connect/oauth2/authorize"
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


class ConfigError(ValueError):
    """A configuration key is missing or wrong; the message names the key (one line per problem)."""


def _duration(value: Any) -> Any:
    return parse_duration(value, "", lambda _: ValueError(
        'must be a duration such as "90s", "5m", "2h", "1d" or seconds'))


def _time_of_day(value: Any) -> Any:
    if isinstance(value, str):
        hours, sep, minutes = value.partition(":")
        if sep and hours.isdigit() and minutes.isdigit() and len(minutes) == 2 and int(hours) < 24 \
                and int(minutes) < 60:
            return int(hours) * 3600 + int(minutes) * 60
    raise ValueError(f"must be a time of day as HH:MM, got {value!r}")


def _weekday(value: Any) -> Any:
    if isinstance(value, str) and value.lower() in WEEKDAYS:
        return WEEKDAYS.index(value.lower())
    raise ValueError(f"must be one of {', '.join(WEEKDAYS)}")


# TOML has types: a number where text belongs (or text where a number does) is refused, not converted.
Int = Annotated[int, Strict()]
Str = Annotated[str, Strict()]
Bool = Annotated[bool, Strict()]
Duration = Annotated[int, Strict(), BeforeValidator(_duration)]
TimeOfDay = Annotated[int, Strict(), BeforeValidator(_time_of_day)]
Positive = Annotated[int, Strict(), Field(gt=0)]
PositiveSeconds = Annotated[float, Strict(), Field(gt=0)]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _resolve(info: ValidationInfo, path: Path) -> Path:
    base_dir = (info.context or {}).get("base_dir", Path())
    return (path if path.is_absolute() else base_dir / path).resolve()


class ServerSettings(_Section):
    host: Str = "127.0.0.1"
    port: Int = Field(8080, ge=0, le=65535, description="must be a TCP port (0-65535)")
    public_url: Str = ""  # how people reach the bot (dashboard links); defaults to http://host:port
    # Peers (IP addresses or CIDR networks) whose X-Forwarded-For/-Proto/-Host headers are believed;
    # from anyone else those headers are ignored.
    trusted_proxies: tuple[Str, ...] = ()
    # Slow and idle clients (bot/server.py, docs/deployment.md).
    header_timeout: PositiveSeconds = 10.0  # seconds from a request's first byte to the end of its headers
    body_timeout: PositiveSeconds = 30.0  # seconds to receive a whole request body (else 408)
    keepalive_timeout: PositiveSeconds = 75.0  # an idle connection is closed after this long without a request
    max_connections: Positive = 1000  # open client connections; at the cap the longest-idle one makes room

    @field_validator("public_url")
    @classmethod
    def _url(cls, value: str) -> str:
        if value and not value.startswith(("https://", "http://")):
            raise ValueError("must be an http(s) URL such as https://quanzu.example.gov.cn")
        return value.rstrip("/")

    @field_validator("trusted_proxies")
    @classmethod
    def _networks(cls, value: tuple[Str, ...]) -> tuple[Str, ...]:
        for proxy in value:
            try:
                ipaddress.ip_network(proxy, strict=False)
            except ValueError as err:
                raise ValueError(f"{proxy!r} is not an IP address or network") from err
        return value


class DatabaseSettings(_Section):
    path: Path = Field(Path("data/quanzu.sqlite3"), validate_default=True)
    synchronous: Literal["FULL", "NORMAL", "EXTRA", "OFF"] = "FULL"  # FULL: a 202 survives power loss
    url: Str = ""  # postgresql://user:password@host:5432/db: PostgreSQL instead of the SQLite file at `path`
    pool_size: Positive = 10  # PostgreSQL connections per instance

    @field_validator("path", mode="before")
    @classmethod
    def _path(cls, value: Any, info: ValidationInfo) -> Any:
        return _resolve(info, Path(value)) if isinstance(value, str | Path) else value

    @field_validator("synchronous", mode="before")
    @classmethod
    def _upper(cls, value: Any, info: ValidationInfo) -> Any:
        value = value.upper() if isinstance(value, str) else value
        if (info.context or {}).get("from_file") and value == "OFF":
            raise ValueError("must be FULL, NORMAL or EXTRA")  # OFF is for benchmarks building throwaway data
        return value

    @field_validator("url")
    @classmethod
    def _postgres(cls, value: str) -> str:
        if value and not value.startswith(("postgresql://", "postgres://")):
            raise ValueError("must be a postgresql:// URL (or empty for the SQLite file at database.path)")
        return value


class ClusterSettings(_Section):
    """Several instances on one PostgreSQL database (ignored with SQLite, which runs one process)."""

    heartbeat_interval: PositiveSeconds = 2.0  # seconds between an instance's "still alive" (and lease renewals)
    dead_after: PositiveSeconds = 15.0  # no heartbeat for this long: its claimed messages and lease are taken over
    poll_interval: PositiveSeconds = 1.0  # how often the sender looks for messages other instances queued or left

    @model_validator(mode="after")
    def _three_heartbeats(self) -> ClusterSettings:
        if self.dead_after < 3 * self.heartbeat_interval:
            raise ValueError("cluster.dead_after must be at least three heartbeat_intervals")
        return self


class WeComSettings(_Section):
    corp_id: Str
    corp_secret: Str
    agent_id: Int
    token: Str = ""
    encoding_aes_key: Str = Field("", validate_default=True)  # required: the 43 characters of the app's key
    api_base: Str = REAL_WECOM_API
    request_timeout: PositiveSeconds = 10.0
    # Seconds a callback's timestamp may be off; 0 = no check. WeCom retries a callback three times
    # within about 20 s, so a shorter window would refuse its own retries.
    callback_max_age: Int = Field(0, ge=0)

    @field_validator("encoding_aes_key")
    @classmethod
    def _aes_key(cls, value: str, info: ValidationInfo) -> str:
        if len(value) != 43 and (value or (info.context or {}).get("from_file")):  # code may build a client only
            raise ValueError("must be exactly 43 characters (WeCom's EncodingAESKey)")
        return value

    @field_validator("api_base")
    @classmethod
    def _slash(cls, value: str) -> str:
        return value if value.endswith("/") else value + "/"

    @field_validator("callback_max_age")
    @classmethod
    def _retries(cls, value: int) -> int:
        if 0 < value < 60:
            raise ValueError("must be 0 (no check) or at least 60 seconds, to let WeCom's retries through")
        return value


class ApiSettings(_Section):
    tokens: tuple[Str, ...]
    max_body_bytes: Positive = 1024 * 1024
    max_batch: Positive = 100

    @field_validator("tokens")
    @classmethod
    def _tokens(cls, value: tuple[Str, ...]) -> tuple[Str, ...]:
        if not value or not all(len(t) >= 8 for t in value):
            raise ValueError("must be a non-empty list of strings of at least 8 characters")
        return value


class DirectorySettings(_Section):
    path: Path

    @field_validator("path", mode="before")
    @classmethod
    def _path(cls, value: Any, info: ValidationInfo) -> Any:
        return _resolve(info, Path(value)) if isinstance(value, str | Path) else value


class DeliverySettings(_Section):
    max_attempts: Positive = 8
    backoff_base: PositiveSeconds = 1.0  # seconds; doubles per attempt
    backoff_max: PositiveSeconds = 60.0
    concurrency: Positive = 16
    # WeCom's own guard against a re-send of the same card: at most 4 hours (message/send).
    duplicate_check_interval: Int = Field(1800, ge=1, le=14400)


class EscalationSettings(_Section):
    sweep_interval: PositiveSeconds = 5.0  # seconds between looks for deadlines that fell due
    roster_gap_warning: Duration = 12 * 3600  # warn a station's leader this long before a gap in its duty roster


class LoggingSettings(_Section):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    format: Literal["json", "text"] = "json"

    @field_validator("level", mode="before")
    @classmethod
    def _upper(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value


class BulletinSettings(_Section):
    enabled: Bool = True
    daily_time: TimeOfDay = 8 * 3600 + 30 * 60  # seconds after midnight (Asia/Shanghai): yesterday's 日通报
    weekly_day: Annotated[int, BeforeValidator(_weekday)] = 0  # 0 = Monday: the previous seven days' 周研判
    weekly_time: TimeOfDay = 9 * 3600
    recipients: tuple[Annotated[Str, Field(min_length=1)], ...] = ()  # group codes; empty: the center's group
    catch_up: Duration = 12 * 3600  # a bulletin missed while the bot was down is still sent this long after
    chart: Bool = True
    overdue_limit: Positive = 10  # overdue instructions listed in the message; the rest are on the dashboard
    max_messages: Positive = 4  # markdown parts per group at most; beyond that the bulletin links to the dashboard


class DashboardSettings(_Section):
    enabled: Bool = True
    # The key that signs session cookies: session_secret, else the file session_secret_file (made with a
    # random key, mode 0600, at first start), else dashboard-session.key beside the SQLite database file.
    # Never in the database: a backup must not let anyone mint a session.
    session_secret: Str = ""
    session_secret_file: Path | None = None
    session_max_age: Duration = 12 * 3600
    # Failed password logins allowed per client address and per account name in login_window (seconds).
    login_attempts_per_address: Positive = 20
    login_attempts_per_account: Positive = 10
    login_window: Annotated[Duration, Field(gt=0)] = 15 * 60
    admin_user: Str = "admin"
    admin_password_hash: Str = ""  # `.venv/bin/python bot.py dashboard hash-password`; empty: no local login
    oauth_authorize_url: Str = REAL_OAUTH_AUTHORIZE
    page_size: Positive = 200
    export_max_rows: Positive = 100_000

    @field_validator("session_secret")
    @classmethod
    def _secret(cls, value: str) -> str:
        if value and len(value) < 32:
            raise ValueError("must be at least 32 characters (or empty for a key file)")
        return value

    @field_validator("session_secret_file", mode="before")
    @classmethod
    def _secret_file(cls, value: Any, info: ValidationInfo) -> Any:
        if value == "":
            return None
        return _resolve(info, Path(value)) if isinstance(value, str) else value

    @field_validator("admin_password_hash")
    @classmethod
    def _hash(cls, value: str) -> str:
        if value and not value.startswith("scrypt$"):
            raise ValueError("must come from `.venv/bin/python bot.py dashboard hash-password`")
        return value

    @field_validator("oauth_authorize_url")
    @classmethod
    def _authorize(cls, value: str) -> str:
        if not value.startswith(("https://", "http://")):
            raise ValueError("must be an http(s) URL")
        return value

    @model_validator(mode="after")
    def _one_secret(self) -> DashboardSettings:
        if self.session_secret and self.session_secret_file:
            raise ValueError("set session_secret or session_secret_file, not both")
        return self


def _policies(value: Any) -> Any:
    if isinstance(value, dict) and all(isinstance(v, Policy) for v in value.values()) and value:
        return value
    return parse_policies(value, ValueError)


class Settings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    wecom: WeComSettings
    api: ApiSettings
    directory: DirectorySettings
    server: ServerSettings = ServerSettings()
    database: DatabaseSettings = DatabaseSettings()
    delivery: DeliverySettings = DeliverySettings()
    logging: LoggingSettings = LoggingSettings()
    escalation: EscalationSettings = EscalationSettings()
    cluster: ClusterSettings = ClusterSettings()
    policies: Annotated[dict[str, InstanceOf[Policy]], BeforeValidator(_policies)] = Field(
        default_factory=lambda: dict(DEFAULT_POLICIES), alias="policy")
    awareness: InstanceOf[AwarenessSettings] = AwarenessSettings()
    bulletin: BulletinSettings = BulletinSettings()
    dashboard: DashboardSettings = DashboardSettings()

    @model_validator(mode="before")
    @classmethod
    def _every_section(cls, raw: Any) -> Any:
        """Absent sections are validated too, so that their paths resolve against the config's folder."""
        if not isinstance(raw, dict):
            return raw
        return {**{name: {} for name in ("server", "database", "delivery", "logging", "escalation", "cluster",
                                         "awareness", "bulletin", "dashboard")}, **raw}

    @field_validator("awareness", mode="before")
    @classmethod
    def _awareness(cls, value: Any, info: ValidationInfo) -> Any:
        if isinstance(value, AwarenessSettings):
            return value
        return parse_awareness(value, (info.context or {}).get("base_dir", Path()))

    @property
    def public_url(self) -> str:
        return self.server.public_url or f"http://{self.server.host}:{self.server.port}"


def load_settings(path: str | Path) -> Settings:
    """Read and validate a config file; paths in it are relative to the file's folder."""
    path = Path(path)
    return parse_settings(read_toml(path, "config", ConfigError), base_dir=path.resolve().parent)


def read_toml(path: Path, what: str, error: type[Exception]) -> dict[str, Any]:
    """A TOML file's content; a missing or malformed file raises `error` naming the file."""
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as err:
        raise error(f"{what} file not found: {path}") from err
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as err:
        raise error(f"{path}: not valid TOML: {err}") from err


def parse_settings(raw: dict[str, Any], base_dir: Path = Path()) -> Settings:
    """Turn a parsed TOML document into Settings; a ConfigError lists every wrong key, one per line."""
    try:
        settings = Settings.model_validate(raw, context={"base_dir": base_dir, "from_file": True})
    except ValidationError as err:
        raise ConfigError("\n".join(_describe(e) for e in err.errors())) from None
    _refuse_placeholders(settings)
    return settings


def _describe(error: Any) -> str:
    """One line naming the key: 'delivery.max_attempts must be …', '[delivery] max_attempt — did you mean …?'."""
    loc = ["policy" if part == "policies" else str(part) for part in error["loc"] if not isinstance(part, int)]
    key = ".".join(loc)
    kind = error["type"]
    if kind == "extra_forbidden":
        *section, name = loc
        model = _model_at(section)
        fields = [f.alias or n for n, f in model.model_fields.items()] if model else []
        close = difflib.get_close_matches(name, fields, n=1, cutoff=0.7)
        hint = f" — did you mean {close[0]}?" if close else ""
        if not section:
            return f"unknown section [{name}]{hint}"
        return f"[{'.'.join(section)}] {name}: unknown key{hint}"
    if kind == "missing":
        return f"{key} is required"
    if kind in _EXPECTED:
        return f"{key} must be {_EXPECTED[kind]}, got {error.get('input')!r}"
    if kind in ("greater_than", "greater_than_equal") and error.get("ctx", {}).get("gt") == 0:
        return f"{key} must be positive"
    model = _model_at(loc[:-1])
    field = model.model_fields.get(loc[-1]) if model and loc else None
    if field is not None and field.description:
        return f"{key} {field.description}"
    message = str(error["msg"]).removeprefix("Value error, ").replace("Input should be", "must be")
    if message.startswith(key):
        return message
    return f"{key} {message}" if message.startswith(("must", "is ")) else f"{key}: {message}"


_EXPECTED = {"int_type": "int", "float_type": "a number", "string_type": "str", "bool_type": "true or false",
             "tuple_type": "a list", "model_type": "a table", "dict_type": "a table",
             "model_attributes_type": "a table"}


def _model_at(section: list[str]) -> type[BaseModel] | None:
    model: type[BaseModel] = Settings
    for part in section:
        field = model.model_fields.get("policies" if part == "policy" else part)
        annotation = getattr(field, "annotation", None)
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return None
        model = annotation
    return model


# The example values of config.example.toml: a config still holding one was copied but not filled in.
_EXAMPLE_VALUES = {"ww0123456789abcdef", "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"}


def _refuse_placeholders(settings: Settings) -> None:
    """Refuse the secrets, keys and ids copied unchanged from config.example.toml, naming each key."""
    wecom = settings.wecom
    values = [("wecom.corp_id", wecom.corp_id), ("wecom.corp_secret", wecom.corp_secret),
              ("wecom.token", wecom.token), ("wecom.encoding_aes_key", wecom.encoding_aes_key)]
    values += [("api.tokens", t) for t in settings.api.tokens]
    keys = [key for key, value in values if value in _EXAMPLE_VALUES or value.startswith("replace-with")]
    if keys:
        raise ConfigError(f"{', '.join(dict.fromkeys(keys))} still hold the placeholder from config.example.toml: "
                          "put your corp's values there")
