"""Configuration: read a TOML file into typed settings and refuse bad values at start-up."""

from __future__ import annotations

import ipaddress
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bot.awareness.settings import AwarenessSettings, parse_awareness
from bot.policy import DEFAULT_POLICIES, Policy, parse_duration, parse_policies

REAL_WECOM_API = "https://qyapi.weixin.qq.com/cgi-bin/"


class ConfigError(ValueError):
    """A configuration key is missing or wrong; the message names the key."""


@dataclass(frozen=True)
class ServerSettings:
    host: str = "127.0.0.1"
    port: int = 8080
    public_url: str = ""  # how people reach the bot (dashboard links); defaults to http://host:port
    # Peers (IP addresses or CIDR networks) whose X-Forwarded-For/-Proto/-Host headers are believed;
    # from anyone else those headers are ignored.
    trusted_proxies: tuple[str, ...] = ()
    # Slow and idle clients (bot/server.py, docs/deployment.md).
    header_timeout: float = 10.0  # seconds from a request's first byte to the end of its headers
    body_timeout: float = 30.0  # seconds to receive a whole request body (else 408)
    keepalive_timeout: float = 75.0  # an idle connection is closed after this long without a request
    max_connections: int = 1000  # open client connections; at the cap the longest-idle one makes room


@dataclass(frozen=True)
class DatabaseSettings:
    path: Path = Path("data/quanzu.sqlite3")
    synchronous: str = "FULL"  # FULL: a 202 means the row survives power loss, not just a crash
    url: str = ""  # postgresql://user:password@host:5432/db: PostgreSQL instead of the SQLite file at `path`
    pool_size: int = 10  # PostgreSQL connections per instance


@dataclass(frozen=True)
class ClusterSettings:
    """Several instances on one PostgreSQL database (ignored with SQLite, which runs one process)."""

    heartbeat_interval: float = 2.0  # seconds between an instance's "still alive" (and lease renewals)
    dead_after: float = 15.0  # no heartbeat for this long: its claimed messages and its lease are taken over
    poll_interval: float = 1.0  # how often the sender looks for messages other instances queued or left


@dataclass(frozen=True)
class WeComSettings:
    corp_id: str
    corp_secret: str
    agent_id: int
    token: str = ""
    encoding_aes_key: str = ""
    api_base: str = REAL_WECOM_API
    request_timeout: float = 10.0
    callback_max_age: int = 0  # seconds a callback's timestamp may be off; 0 = no check


@dataclass(frozen=True)
class ApiSettings:
    tokens: tuple[str, ...]
    max_body_bytes: int = 1024 * 1024
    max_batch: int = 100


@dataclass(frozen=True)
class DirectorySettings:
    path: Path


@dataclass(frozen=True)
class DeliverySettings:
    max_attempts: int = 8
    backoff_base: float = 1.0  # seconds; doubles per attempt
    backoff_max: float = 60.0
    concurrency: int = 16
    duplicate_check_interval: int = 1800  # WeCom's own guard against a re-send of the same card


@dataclass(frozen=True)
class EscalationSettings:
    sweep_interval: float = 5.0  # seconds between looks for deadlines that fell due
    roster_gap_warning: int = 12 * 3600  # warn a station's leader this long before a gap in its duty roster


@dataclass(frozen=True)
class LoggingSettings:
    level: str = "INFO"
    format: str = "json"  # json | text


@dataclass(frozen=True)
class BulletinSettings:
    enabled: bool = True
    daily_time: int = 8 * 3600 + 30 * 60  # seconds after midnight (Asia/Shanghai): yesterday's 日通报
    weekly_day: int = 0  # 0 = Monday: the previous seven days' 周研判
    weekly_time: int = 9 * 3600
    recipients: tuple[str, ...] = ()  # group codes; empty: the center's command (fallback) group
    catch_up: int = 12 * 3600  # a bulletin missed while the bot was down is still sent this long after its time
    chart: bool = True
    overdue_limit: int = 10  # overdue instructions listed in the message; the rest are on the dashboard
    max_messages: int = 4  # markdown parts per group at most; beyond that the bulletin links to the dashboard


REAL_OAUTH_AUTHORIZE = "https://open.weixin.qq.com/connect/oauth2/authorize"


@dataclass(frozen=True)
class DashboardSettings:
    enabled: bool = True
    # The key that signs session cookies: session_secret, else the file session_secret_file (made with a
    # random key, mode 0600, at first start), else dashboard-session.key beside the SQLite database file.
    # Never in the database: a backup must not let anyone mint a session.
    session_secret: str = ""
    session_secret_file: Path | None = None
    session_max_age: int = 12 * 3600
    # Failed password logins allowed per client address and per account name in login_window (seconds).
    login_attempts_per_address: int = 20
    login_attempts_per_account: int = 10
    login_window: int = 15 * 60
    admin_user: str = "admin"
    admin_password_hash: str = ""  # `python bot.py dashboard hash-password`; empty: no local login
    oauth_authorize_url: str = REAL_OAUTH_AUTHORIZE
    page_size: int = 200
    export_max_rows: int = 100_000


@dataclass(frozen=True)
class Settings:
    wecom: WeComSettings
    api: ApiSettings
    directory: DirectorySettings
    server: ServerSettings = field(default_factory=ServerSettings)
    database: DatabaseSettings = field(default_factory=DatabaseSettings)
    delivery: DeliverySettings = field(default_factory=DeliverySettings)
    logging: LoggingSettings = field(default_factory=LoggingSettings)
    escalation: EscalationSettings = field(default_factory=EscalationSettings)
    cluster: ClusterSettings = field(default_factory=ClusterSettings)
    policies: dict[str, Policy] = field(default_factory=lambda: dict(DEFAULT_POLICIES))
    awareness: AwarenessSettings = field(default_factory=AwarenessSettings)
    bulletin: BulletinSettings = field(default_factory=BulletinSettings)
    dashboard: DashboardSettings = field(default_factory=DashboardSettings)

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
    """Turn a parsed TOML document into Settings, naming the first wrong key."""
    known = {"server", "database", "wecom", "api", "directory", "delivery", "logging", "escalation", "policy",
             "awareness", "bulletin", "dashboard", "cluster"}
    for section in raw:
        if section not in known:
            raise ConfigError(f"unknown section [{section}]")

    server = _section(raw, "server")
    database = _section(raw, "database")
    wecom = _section(raw, "wecom")
    api = _section(raw, "api")
    directory = _section(raw, "directory")
    delivery = _section(raw, "delivery")
    logging_ = _section(raw, "logging")
    escalation = _section(raw, "escalation")

    db_path = Path(_get(database, "database.path", str, "data/quanzu.sqlite3"))
    sync = _get(database, "database.synchronous", str, "FULL").upper()
    if sync not in {"FULL", "NORMAL", "EXTRA"}:
        raise ConfigError("database.synchronous must be FULL, NORMAL or EXTRA")
    db_url = _get(database, "database.url", str, "")
    if db_url and not db_url.startswith(("postgresql://", "postgres://")):
        raise ConfigError("database.url must be a postgresql:// URL (or empty for the SQLite file at database.path)")

    api_base = _get(wecom, "wecom.api_base", str, REAL_WECOM_API)
    if not api_base.endswith("/"):
        api_base += "/"


    wecom_settings = WeComSettings(
        corp_id=_get(wecom, "wecom.corp_id", str),
        corp_secret=_get(wecom, "wecom.corp_secret", str),
        agent_id=_get(wecom, "wecom.agent_id", int),
        token=_get(wecom, "wecom.token", str, ""),
        encoding_aes_key=_aes_key(_get(wecom, "wecom.encoding_aes_key", str, "")),
        api_base=api_base,
        request_timeout=float(_get(wecom, "wecom.request_timeout", (int, float), 10.0)),
        callback_max_age=_get(wecom, "wecom.callback_max_age", int, 0),
    )
    tokens = _get(api, "api.tokens", list, None)
    if not tokens or not all(isinstance(t, str) and len(t) >= 8 for t in tokens):
        raise ConfigError("api.tokens must be a non-empty list of strings of at least 8 characters")
    _refuse_placeholders(wecom_settings, tokens)

    level = _get(logging_, "logging.level", str, "INFO").upper()
    if level not in {"DEBUG", "INFO", "WARNING", "ERROR"}:
        raise ConfigError("logging.level must be DEBUG, INFO, WARNING or ERROR")
    fmt = _get(logging_, "logging.format", str, "json")
    if fmt not in {"json", "text"}:
        raise ConfigError("logging.format must be json or text")

    return Settings(
        server=_server(server),
        database=DatabaseSettings(
            path=_resolve(base_dir, db_path), synchronous=sync, url=db_url,
            pool_size=_positive(_get(database, "database.pool_size", int, 10), "database.pool_size"),
        ),
        cluster=_cluster(_section(raw, "cluster")),
        wecom=wecom_settings,
        api=ApiSettings(
            tokens=tuple(tokens),
            max_body_bytes=_positive(_get(api, "api.max_body_bytes", int, 1024 * 1024), "api.max_body_bytes"),
            max_batch=_positive(_get(api, "api.max_batch", int, 100), "api.max_batch"),
        ),
        directory=DirectorySettings(path=_resolve(base_dir, Path(_get(directory, "directory.path", str)))),
        delivery=DeliverySettings(
            max_attempts=_positive(_get(delivery, "delivery.max_attempts", int, 8), "delivery.max_attempts"),
            backoff_base=float(_get(delivery, "delivery.backoff_base", (int, float), 1.0)),
            backoff_max=float(_get(delivery, "delivery.backoff_max", (int, float), 60.0)),
            concurrency=_positive(_get(delivery, "delivery.concurrency", int, 16), "delivery.concurrency"),
            duplicate_check_interval=_get(delivery, "delivery.duplicate_check_interval", int, 1800),
        ),
        logging=LoggingSettings(level=level, format=fmt),
        escalation=EscalationSettings(
            sweep_interval=_positive(float(_get(escalation, "escalation.sweep_interval", (int, float), 5.0)),
                                     "escalation.sweep_interval"),
            roster_gap_warning=parse_duration(escalation.get("roster_gap_warning", "12h"),
                                              "escalation.roster_gap_warning", ConfigError),
        ),
        policies=parse_policies(_section(raw, "policy"), ConfigError),
        awareness=_awareness(raw, base_dir),
        bulletin=_bulletin(_section(raw, "bulletin")),
        dashboard=_dashboard(_section(raw, "dashboard"), base_dir),
    )


def _server(server: dict[str, Any]) -> ServerSettings:
    proxies = _get(server, "server.trusted_proxies", list, [])
    for proxy in proxies:
        try:
            ipaddress.ip_network(proxy, strict=False)
        except (TypeError, ValueError) as err:
            raise ConfigError(f"server.trusted_proxies: {proxy!r} is not an IP address or network") from err
    return ServerSettings(
        host=_get(server, "server.host", str, "127.0.0.1"),
        port=_port(_get(server, "server.port", int, 8080), "server.port"),
        public_url=_get(server, "server.public_url", str, "").rstrip("/"),
        trusted_proxies=tuple(proxies),
        **{name: _positive(float(_get(server, f"server.{name}", (int, float), default)), f"server.{name}")
           for name, default in (("header_timeout", 10.0), ("body_timeout", 30.0), ("keepalive_timeout", 75.0))},
        max_connections=_positive(_get(server, "server.max_connections", int, 1000), "server.max_connections"),
    )


def _cluster(raw: dict[str, Any]) -> ClusterSettings:
    values = {
        name: _positive(float(_get(raw, f"cluster.{name}", (int, float), default)), f"cluster.{name}")
        for name, default in (("heartbeat_interval", 2.0), ("dead_after", 15.0), ("poll_interval", 1.0))
    }
    if values["dead_after"] < 3 * values["heartbeat_interval"]:
        raise ConfigError("cluster.dead_after must be at least three heartbeat_intervals")
    return ClusterSettings(**values)


WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def _bulletin(raw: dict[str, Any]) -> BulletinSettings:
    recipients = _get(raw, "bulletin.recipients", list, [])
    if not all(isinstance(r, str) and r for r in recipients):
        raise ConfigError("bulletin.recipients must be a list of group codes")
    weekly_day = _get(raw, "bulletin.weekly_day", str, "mon").lower()
    if weekly_day not in WEEKDAYS:
        raise ConfigError(f"bulletin.weekly_day must be one of {', '.join(WEEKDAYS)}")
    return BulletinSettings(
        enabled=_flag(raw, "bulletin.enabled", True),
        daily_time=_time_of_day(_get(raw, "bulletin.daily_time", str, "08:30"), "bulletin.daily_time"),
        weekly_day=WEEKDAYS.index(weekly_day),
        weekly_time=_time_of_day(_get(raw, "bulletin.weekly_time", str, "09:00"), "bulletin.weekly_time"),
        recipients=tuple(recipients),
        catch_up=parse_duration(raw.get("catch_up", "12h"), "bulletin.catch_up", ConfigError),
        chart=_flag(raw, "bulletin.chart", True),
        overdue_limit=_positive(_get(raw, "bulletin.overdue_limit", int, 10), "bulletin.overdue_limit"),
        max_messages=_positive(_get(raw, "bulletin.max_messages", int, 4), "bulletin.max_messages"),
    )


def _dashboard(raw: dict[str, Any], base_dir: Path = Path()) -> DashboardSettings:
    secret = _get(raw, "dashboard.session_secret", str, "")
    if secret and len(secret) < 32:
        raise ConfigError("dashboard.session_secret must be at least 32 characters (or empty for a generated one)")
    secret_file = _get(raw, "dashboard.session_secret_file", str, "")
    if secret and secret_file:
        raise ConfigError("set dashboard.session_secret or dashboard.session_secret_file, not both")
    password_hash = _get(raw, "dashboard.admin_password_hash", str, "")
    if password_hash and not password_hash.startswith("scrypt$"):
        raise ConfigError("dashboard.admin_password_hash must come from `python bot.py dashboard hash-password`")
    authorize = _get(raw, "dashboard.oauth_authorize_url", str, REAL_OAUTH_AUTHORIZE)
    if not authorize.startswith(("https://", "http://")):
        raise ConfigError("dashboard.oauth_authorize_url must be an http(s) URL")
    return DashboardSettings(
        enabled=_flag(raw, "dashboard.enabled", True),
        session_secret=secret,
        session_secret_file=_resolve(base_dir, Path(secret_file)) if secret_file else None,
        session_max_age=parse_duration(raw.get("session_max_age", "12h"), "dashboard.session_max_age", ConfigError),
        login_attempts_per_address=_positive(_get(raw, "dashboard.login_attempts_per_address", int, 20),
                                             "dashboard.login_attempts_per_address"),
        login_attempts_per_account=_positive(_get(raw, "dashboard.login_attempts_per_account", int, 10),
                                             "dashboard.login_attempts_per_account"),
        login_window=_positive(parse_duration(raw.get("login_window", "15m"), "dashboard.login_window", ConfigError),
                               "dashboard.login_window"),
        admin_user=_get(raw, "dashboard.admin_user", str, "admin"),
        admin_password_hash=password_hash,
        oauth_authorize_url=authorize,
        page_size=_positive(_get(raw, "dashboard.page_size", int, 200), "dashboard.page_size"),
        export_max_rows=_positive(_get(raw, "dashboard.export_max_rows", int, 100_000), "dashboard.export_max_rows"),
    )


def _flag(section: dict[str, Any], key: str, default: bool) -> bool:
    value = section.get(key.rsplit(".", 1)[1], default)
    if not isinstance(value, bool):
        raise ConfigError(f"{key} must be true or false, got {value!r}")
    return value


def _time_of_day(value: str, key: str) -> int:
    hours, sep, minutes = value.partition(":")
    if sep and hours.isdigit() and minutes.isdigit() and len(minutes) == 2 and int(hours) < 24 and int(minutes) < 60:
        return int(hours) * 3600 + int(minutes) * 60
    raise ConfigError(f"{key} must be a time of day as HH:MM, got {value!r}")


_MISSING = object()


def _awareness(raw: dict[str, Any], base_dir: Path) -> AwarenessSettings:
    try:
        return parse_awareness(raw.get("awareness", {}), base_dir)
    except ValueError as err:
        raise ConfigError(str(err)) from err


def _section(raw: dict[str, Any], name: str) -> dict[str, Any]:
    value = raw.get(name, {})
    if not isinstance(value, dict):
        raise ConfigError(f"[{name}] must be a table")
    return value


def _get(section: dict[str, Any], key: str, kind: type | tuple[type, ...], default: Any = _MISSING) -> Any:
    name = key.rsplit(".", 1)[1]
    if name not in section:
        if default is _MISSING:
            raise ConfigError(f"{key} is required")
        return default
    value = section[name]
    if isinstance(value, bool) or not isinstance(value, kind):
        kinds = kind if isinstance(kind, tuple) else (kind,)
        raise ConfigError(f"{key} must be {' or '.join(k.__name__ for k in kinds)}, got {value!r}")
    return value


# The example values of config.example.toml: a config still holding one was copied but not filled in.
_EXAMPLE_VALUES = {"ww0123456789abcdef", "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"}


def _refuse_placeholders(wecom: WeComSettings, tokens: list[str]) -> None:
    """Refuse the secrets, keys and ids copied unchanged from config.example.toml, naming each key."""
    values = [("wecom.corp_id", wecom.corp_id), ("wecom.corp_secret", wecom.corp_secret),
              ("wecom.token", wecom.token), ("wecom.encoding_aes_key", wecom.encoding_aes_key)]
    values += [("api.tokens", t) for t in tokens]
    keys = [key for key, value in values if value in _EXAMPLE_VALUES or value.startswith("replace-with")]
    if keys:
        raise ConfigError(f"{', '.join(dict.fromkeys(keys))} still hold the placeholder from config.example.toml: "
                          "put your corp's values there")


def _aes_key(value: str) -> str:
    if len(value) != 43:
        raise ConfigError("wecom.encoding_aes_key must be exactly 43 characters (WeCom's EncodingAESKey)")
    return value


def _positive(value: Any, key: str) -> Any:
    if value <= 0:
        raise ConfigError(f"{key} must be positive")
    return value


def _port(value: int, key: str) -> int:
    if not 0 <= value <= 65535:
        raise ConfigError(f"{key} must be a TCP port (0-65535)")
    return value


def _resolve(base_dir: Path, path: Path) -> Path:
    return (path if path.is_absolute() else base_dir / path).resolve()
