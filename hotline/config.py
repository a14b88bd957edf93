"""Configuration from environment variables, with an optional TOML file underneath.

Precedence: environment > ``--config`` file > defaults. Every value is validated at
start-up, and a bad one raises :class:`ConfigError` naming the variable, so a typo in a
deployment fails loudly instead of half-working.

TOML keys are the variable names without the ``HOTLINE_`` prefix, in lower case, either
at top level or under a ``[hotline]`` table::

    database_url = "postgresql+asyncpg://hotline@db/hotline"
    mqtt_prefix = "hotline/v1"
"""

from __future__ import annotations

import base64
import os
import socket
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote, urlsplit

from hotline.core.targets import AmiTarget, MqttTarget
from hotline.core.vocab import Region, values
from hotline.errors import ConfigError
from hotline.storage.redisconn import SENTINEL_SCHEME, parse_sentinel_url

DEFAULT_MQTT_URL = "mqtt://127.0.0.1:1883"
# Public on purpose: lets the demo and its simulators agree with no set-up. Never for production.
DEV_WEBHOOK_SECRET = "whsec_ZGV2LW9ubHktc2VjcmV0LWRvLW5vdC11c2UtaW4tcHJvZA=="  # noqa: S105


def default_client_id() -> str:
    """``hotline-{hostname}``, reduced to characters every broker accepts in a client id."""
    host = "".join(c if c.isalnum() or c in "-_." else "-" for c in socket.gethostname())[:40]
    return f"hotline-{host or 'backend'}"


@dataclass(frozen=True, slots=True, kw_only=True)
class Settings:
    database_url: str = "sqlite+aiosqlite:///hotline.db"
    redis_url: str = "redis://127.0.0.1:6379/0"
    redis_prefix: str = "hotline"
    mqtt: MqttTarget = field(
        default_factory=lambda: MqttTarget("127.0.0.1", 1883, tls=False, username=None, password=None)
    )
    mqtt_url: str = "mqtt://127.0.0.1:1883"
    mqtt_prefix: str = "hotline/v1"
    # Unique per host and stable across restarts: the persistent session is keyed by it.
    mqtt_client_id: str = field(default_factory=default_client_id)
    mqtt_receive_maximum: int = 100
    mqtt_session_expiry_s: int = 86_400
    mqtt_shared_group: str | None = None
    callback_number: str = "12349"
    heartbeat_misses: int = 3
    offline_incident_after_s: int = 1800
    lw_grace_s: int = 30
    ami: AmiTarget | None = None
    ami_queue: str = "12349"
    # Originate templates: {number} is the number to call, {extension} an operator's.
    ami_dial: str = "PJSIP/{number}@pstn"
    ami_operator_channel: str = "PJSIP/{extension}"
    ami_alarm_callback: bool = True
    ami_stale_s: float = 600.0
    # Among several instances one holds the AMI role; another takes it within this many seconds.
    ami_failover_s: float = 5.0
    # Names this process in the AMI lease, /readyz and the logs (default: client id and PID).
    instance_id: str | None = None
    phone_area_code: str = "0574"
    http_host: str = "127.0.0.1"
    http_port: int = 8080
    webhook_secrets: tuple[str, ...] = (DEV_WEBHOOK_SECRET,)
    webhook_secret_is_default: bool = True
    log_level: str = "INFO"
    merge_window_s: int = 600
    emergency_number: str | None = "120"
    emergency_webhook_url: str | None = None
    sms_gateway_url: str | None = None
    sms_gateway_token: str | None = None
    public_url: str | None = None
    link_secret: str | None = None
    timer_sweep_s: float = 1.0
    reach_minutes: int = 15
    min_provider_rating: float = 2.0
    emergency_call_deadline_s: float = 120.0
    device_event_rate: float = 10.0
    device_event_burst: int = 100
    # A console message that does not match its model raises instead of being logged (tests).
    strict_messages: bool = False
    # The service loop (docs/service-loop.md).
    region: str = "yuyao"
    checkin_radius_m: float = 300.0
    no_show_minutes: float = 30.0
    order_offer_s: float = 600.0
    followup_hours: float = 48.0
    complaint_days: float = 7.0
    review_bottom_pct: float = 5.0
    unanswered_alert: int = 3
    campaign_tick_s: float = 2.0
    # The console's session cookie gets Secure; set it behind a TLS-terminating proxy.
    cookie_secure: bool = False
    # How long `hotline serve` may take to stop after SIGTERM before it exits anyway.
    shutdown_timeout_s: float = 10.0
    # Where the broker's passwd and ACL are kept in step with the registry (docs/operations.md).
    broker_auth_dir: str | None = None
    broker_auth_sync_s: float = 30.0

    @property
    def base_url(self) -> str:
        """Where links in messages point: HOTLINE_PUBLIC_URL, else this server's own address."""
        return self.public_url or f"http://{self.http_host}:{self.http_port}"


_KEYS = (
    "database_url",
    "redis_url",
    "redis_prefix",
    "mqtt_url",
    "mqtt_prefix",
    "mqtt_client_id",
    "mqtt_receive_maximum",
    "mqtt_session_expiry",
    "mqtt_shared_group",
    "callback_number",
    "heartbeat_misses",
    "offline_incident_after",
    "lw_grace",
    "ami_url",
    "ami_queue",
    "ami_dial",
    "ami_operator_channel",
    "ami_alarm_callback",
    "ami_stale_s",
    "ami_failover_s",
    "instance_id",
    "broker_auth_dir",
    "broker_auth_sync_s",
    "phone_area_code",
    "http_host",
    "http_port",
    "webhook_secret",
    "log_level",
    "merge_window",
    "emergency_number",
    "emergency_webhook_url",
    "sms_gateway_url",
    "sms_gateway_token",
    "public_url",
    "link_secret",
    "timer_sweep",
    "reach_minutes",
    "min_provider_rating",
    "device_event_rate",
    "device_event_burst",
    "emergency_call_deadline",
    "strict_messages",
    "region",
    "checkin_radius_m",
    "no_show_minutes",
    "order_offer_s",
    "followup_hours",
    "complaint_days",
    "review_bottom_pct",
    "unanswered_alert",
    "campaign_tick_s",
    "cookie_secure",
    "shutdown_timeout",
)


def _var(key: str) -> str:
    return "HOTLINE_" + key.upper()


def load_settings(env: Mapping[str, str] | None = None, config_path: str | Path | None = None) -> Settings:
    """Build :class:`Settings` from ``env`` (default ``os.environ``) and an optional TOML file."""
    env = os.environ if env is None else env
    raw: dict[str, str] = {}
    if config_path is not None:
        raw.update(_read_toml(Path(config_path)))
    for key in _KEYS:
        if _var(key) in env:
            raw[key] = env[_var(key)]

    kwargs: dict[str, object] = {}
    if "database_url" in raw:
        kwargs["database_url"] = _database_url(raw["database_url"])
    if "redis_url" in raw:
        kwargs["redis_url"] = _redis_url(raw["redis_url"])
    if "redis_prefix" in raw:
        kwargs["redis_prefix"] = _identifier("redis_prefix", raw["redis_prefix"])
    mqtt_url = raw.get("mqtt_url", DEFAULT_MQTT_URL)
    kwargs["mqtt_url"] = mqtt_url
    kwargs["mqtt"] = _mqtt_target(mqtt_url)
    if "mqtt_prefix" in raw:
        kwargs["mqtt_prefix"] = _mqtt_prefix(raw["mqtt_prefix"])
    if "mqtt_client_id" in raw:
        kwargs["mqtt_client_id"] = _identifier("mqtt_client_id", raw["mqtt_client_id"])
    if "mqtt_receive_maximum" in raw:
        kwargs["mqtt_receive_maximum"] = _int("mqtt_receive_maximum", raw["mqtt_receive_maximum"], 1, 65535)
    if "mqtt_session_expiry" in raw:
        kwargs["mqtt_session_expiry_s"] = _int("mqtt_session_expiry", raw["mqtt_session_expiry"], 0, 2**32 - 1)
    if raw.get("mqtt_shared_group"):
        kwargs["mqtt_shared_group"] = _identifier("mqtt_shared_group", raw["mqtt_shared_group"])
    if "callback_number" in raw:
        number = raw["callback_number"].strip()
        if not number.lstrip("+").isdigit() or not 3 <= len(number) <= 20:
            raise ConfigError(f"{_var('callback_number')} must be a phone number such as 12349, got {number!r}")
        kwargs["callback_number"] = number
    if "heartbeat_misses" in raw:
        kwargs["heartbeat_misses"] = _int("heartbeat_misses", raw["heartbeat_misses"], 1, 100)
    if "offline_incident_after" in raw:
        kwargs["offline_incident_after_s"] = _int("offline_incident_after", raw["offline_incident_after"], 0, 7 * 86400)
    if "lw_grace" in raw:
        kwargs["lw_grace_s"] = _int("lw_grace", raw["lw_grace"], 0, 3600)
    if raw.get("ami_url"):
        kwargs["ami"] = _ami_target(raw["ami_url"])
    if "ami_queue" in raw:
        kwargs["ami_queue"] = _identifier("ami_queue", raw["ami_queue"])
    for key, slot in (("ami_dial", "{number}"), ("ami_operator_channel", "{extension}")):
        if key in raw:
            if slot not in raw[key] or "\n" in raw[key] or raw[key].count("{") != 1:
                raise ConfigError(f"{_var(key)} must be a channel template containing {slot}, got {raw[key]!r}")
            kwargs[key] = raw[key].strip()
    for key in ("ami_alarm_callback", "strict_messages", "cookie_secure"):
        if key in raw:
            flag = raw[key].strip().lower()
            if flag not in {"true", "false", "1", "0", "yes", "no"}:
                raise ConfigError(f"{_var(key)} must be true or false, got {raw[key]!r}")
            kwargs[key] = flag in {"true", "1", "yes"}
    if "phone_area_code" in raw:
        code = raw["phone_area_code"].strip()
        if not (code.startswith("0") and code.isdigit() and 3 <= len(code) <= 4):
            raise ConfigError(f"{_var('phone_area_code')} must be an area code such as 0574, got {code!r}")
        kwargs["phone_area_code"] = code
    if "http_host" in raw:
        if not raw["http_host"].strip():
            raise ConfigError(f"{_var('http_host')} must not be empty")
        kwargs["http_host"] = raw["http_host"].strip()
    if "http_port" in raw:
        kwargs["http_port"] = _int("http_port", raw["http_port"], 0, 65535)
    if raw.get("webhook_secret"):
        kwargs["webhook_secrets"] = _webhook_secrets(raw["webhook_secret"])
        kwargs["webhook_secret_is_default"] = False
    if "log_level" in raw:
        level = raw["log_level"].upper()
        if level not in {"DEBUG", "INFO", "WARNING", "ERROR"}:
            raise ConfigError(f"{_var('log_level')} must be DEBUG, INFO, WARNING or ERROR, got {raw['log_level']!r}")
        kwargs["log_level"] = level
    if "ami_stale_s" in raw:
        kwargs["ami_stale_s"] = _float("ami_stale_s", raw["ami_stale_s"], 1.0, 7 * 86_400.0, "seconds")
    if "ami_failover_s" in raw:
        kwargs["ami_failover_s"] = _float("ami_failover_s", raw["ami_failover_s"], 1.0, 300.0, "seconds")
    if raw.get("instance_id", "").strip():
        kwargs["instance_id"] = raw["instance_id"].strip()[:100]
    if raw.get("broker_auth_dir", "").strip():
        target = kwargs["mqtt"]
        assert isinstance(target, MqttTarget)
        if not target.username or not target.password:
            raise ConfigError(
                f"{_var('broker_auth_dir')} needs the backend's own broker user in {_var('mqtt_url')} "
                "(mqtt://hotline-backend:SECRET@host:1884)"
            )
        kwargs["broker_auth_dir"] = raw["broker_auth_dir"].strip()
    if "broker_auth_sync_s" in raw:
        kwargs["broker_auth_sync_s"] = _float("broker_auth_sync_s", raw["broker_auth_sync_s"], 1.0, 3600.0, "seconds")
    if "shutdown_timeout" in raw:
        kwargs["shutdown_timeout_s"] = _float("shutdown_timeout", raw["shutdown_timeout"], 0.5, 600.0, "seconds")
    _dispatch(raw, kwargs)
    _care(raw, kwargs)
    return Settings(**kwargs)  # type: ignore[arg-type]


# key: (lowest, highest, unit) of the service loop's numbers.
_CARE_NUMBERS = {
    "checkin_radius_m": (10.0, 50_000.0, "metres"),
    "no_show_minutes": (1.0, 1440.0, "minutes"),
    "order_offer_s": (5.0, 86_400.0, "seconds"),
    "followup_hours": (0.01, 720.0, "hours"),
    "complaint_days": (0.001, 365.0, "days"),
    "review_bottom_pct": (0.1, 100.0, "percent"),
    "campaign_tick_s": (0.05, 60.0, "seconds"),
}


def _care(raw: dict[str, str], kwargs: dict[str, object]) -> None:
    """The service loop's settings."""
    if "region" in raw:
        region = raw["region"].strip()
        if region not in values(Region):
            raise ConfigError(f"{_var('region')} must be one of {', '.join(values(Region))}, got {region!r}")
        kwargs["region"] = region
    for key, (low, high, unit) in _CARE_NUMBERS.items():
        if key in raw:
            kwargs[key] = _float(key, raw[key], low, high, unit)
    if "unanswered_alert" in raw:
        kwargs["unanswered_alert"] = _int("unanswered_alert", raw["unanswered_alert"], 1, 100)


def _dispatch(raw: dict[str, str], kwargs: dict[str, object]) -> None:
    """The dispatch and notification settings."""
    if "merge_window" in raw:
        kwargs["merge_window_s"] = _int("merge_window", raw["merge_window"], 0, 86_400)
    if "emergency_number" in raw:
        number = raw["emergency_number"].strip()
        if number and not (number.lstrip("+").isdigit() and 3 <= len(number) <= 20):
            raise ConfigError(
                f"{_var('emergency_number')} must be a phone number such as 120, or empty, got {number!r}"
            )
        kwargs["emergency_number"] = number or None
    for key in ("emergency_webhook_url", "sms_gateway_url", "public_url"):
        if raw.get(key):
            value = raw[key].strip()
            parts = urlsplit(value)
            if parts.scheme not in {"http", "https"} or not parts.hostname:
                raise ConfigError(f"{_var(key)} must be an http(s) URL, got {value!r}")
            kwargs[key] = value.rstrip("/") if key == "public_url" else value
    if raw.get("sms_gateway_token"):
        kwargs["sms_gateway_token"] = raw["sms_gateway_token"].strip()
    if raw.get("link_secret"):
        if len(raw["link_secret"].strip()) < 16:
            raise ConfigError(f"{_var('link_secret')} must be at least 16 characters")
        kwargs["link_secret"] = raw["link_secret"].strip()
    if "timer_sweep" in raw:
        kwargs["timer_sweep_s"] = _float("timer_sweep", raw["timer_sweep"], 0.05, 60, "seconds")
    if "reach_minutes" in raw:
        kwargs["reach_minutes"] = _int("reach_minutes", raw["reach_minutes"], 1, 240)
    if "emergency_call_deadline" in raw:
        kwargs["emergency_call_deadline_s"] = _float(
            "emergency_call_deadline", raw["emergency_call_deadline"], 1, 3600, "seconds"
        )
    if "device_event_rate" in raw:
        kwargs["device_event_rate"] = _float(
            "device_event_rate", raw["device_event_rate"], 0.01, 10_000, "events a second"
        )
    if "device_event_burst" in raw:
        kwargs["device_event_burst"] = _int("device_event_burst", raw["device_event_burst"], 1, 100_000)
    if "min_provider_rating" in raw:
        kwargs["min_provider_rating"] = _float("min_provider_rating", raw["min_provider_rating"], 0, 5)


def _read_toml(path: Path) -> dict[str, str]:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ConfigError(f"--config file {path} does not exist") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"--config file {path} is not valid TOML: {exc}") from exc
    table = data.get("hotline", data)
    if not isinstance(table, dict):
        raise ConfigError(f"--config file {path}: [hotline] must be a table")
    out: dict[str, str] = {}
    for key, value in table.items():
        if key not in _KEYS:
            raise ConfigError(f"--config file {path}: unknown key {key!r} (known: {', '.join(_KEYS)})")
        out[key] = str(value)
    return out


def _int(key: str, value: str, low: int, high: int) -> int:
    try:
        number = int(str(value).strip())
    except ValueError as exc:
        raise ConfigError(f"{_var(key)} must be an integer, got {value!r}") from exc
    if not low <= number <= high:
        raise ConfigError(f"{_var(key)} must be between {low} and {high}, got {number}")
    return number


def _float(key: str, value: str, low: float, high: float, unit: str = "") -> float:
    try:
        number = float(str(value).strip())
    except ValueError as exc:
        raise ConfigError(f"{_var(key)} must be a number{' of ' + unit if unit else ''}, got {value!r}") from exc
    if not low <= number <= high:
        raise ConfigError(f"{_var(key)} must be between {low:g} and {high:g}{' ' + unit if unit else ''}, got {number}")
    return number


def _identifier(key: str, value: str) -> str:
    value = value.strip()
    if not value or (any(c in value for c in " #+/\x00") and key != "redis_prefix"):
        raise ConfigError(f"{_var(key)} must be a non-empty name without spaces, '#', '+' or '/'")
    return value


def _database_url(value: str) -> str:
    value = value.strip()
    scheme = value.split("://", 1)[0] if "://" in value else ""
    if scheme in {"postgresql", "postgres"}:
        # A plain libpq-style URL is what users paste; we only speak asyncpg.
        return "postgresql+asyncpg://" + value.split("://", 1)[1]
    if scheme not in {"sqlite+aiosqlite", "postgresql+asyncpg"}:
        raise ConfigError(
            f"{_var('database_url')} must start with sqlite+aiosqlite:// or postgresql+asyncpg://, got {value!r}"
        )
    return value


def _redis_url(value: str) -> str:
    value = value.strip()
    if value.startswith(f"{SENTINEL_SCHEME}://"):
        try:
            parse_sentinel_url(value)
        except ConfigError as exc:
            raise ConfigError(f"{_var('redis_url')}: {exc}") from None
        return value
    parts = urlsplit(value)
    if parts.scheme not in {"redis", "rediss", "unix"} or (parts.scheme != "unix" and not parts.hostname):
        raise ConfigError(
            f"{_var('redis_url')} must look like redis://host:port/db or "
            f"redis+sentinel://host:26379,host:26380/mymaster/0, got {value!r}"
        )
    try:
        _ = parts.port
    except ValueError as exc:
        raise ConfigError(f"{_var('redis_url')} has an invalid port: {value!r}") from exc
    return value


def _mqtt_target(value: str) -> MqttTarget:
    parts = urlsplit(value.strip())
    if parts.scheme not in {"mqtt", "mqtts"} or not parts.hostname:
        raise ConfigError(f"{_var('mqtt_url')} must look like mqtt://[user:pass@]host:port, got {value!r}")
    try:
        port = parts.port or (8883 if parts.scheme == "mqtts" else 1883)
    except ValueError as exc:
        raise ConfigError(f"{_var('mqtt_url')} has an invalid port: {value!r}") from exc
    return MqttTarget(
        host=parts.hostname,
        port=port,
        tls=parts.scheme == "mqtts",
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password else None,
    )


def _mqtt_prefix(value: str) -> str:
    value = value.strip()
    if not value or value.startswith("/") or value.endswith("/") or any(c in value for c in "#+\x00 "):
        raise ConfigError(
            f"{_var('mqtt_prefix')} must be a topic prefix like hotline/v1 "
            f"(no wildcards, no leading or trailing '/'), got {value!r}"
        )
    return value


def _ami_target(value: str) -> AmiTarget:
    parts = urlsplit(value.strip())
    try:
        port = parts.port or 5038
    except ValueError as exc:
        raise ConfigError(f"{_var('ami_url')} has an invalid port: {value!r}") from exc
    if parts.scheme != "ami" or not parts.hostname or not parts.username or not parts.password:
        raise ConfigError(f"{_var('ami_url')} must look like ami://user:secret@host:5038, got a value of another shape")
    return AmiTarget(parts.hostname, port, unquote(parts.username), unquote(parts.password))


def _webhook_secrets(value: str) -> tuple[str, ...]:
    """Comma-separated ``whsec_<base64>`` secrets; all of them sign, so receivers can rotate."""
    secrets = tuple(s.strip() for s in value.split(",") if s.strip())
    for secret in secrets:
        if not secret.startswith("whsec_"):
            raise ConfigError(f"{_var('webhook_secret')} entries must start with 'whsec_'")
        try:
            key = base64.b64decode(secret.removeprefix("whsec_"), validate=True)
        except ValueError as exc:
            raise ConfigError(f"{_var('webhook_secret')} entries must be whsec_ followed by base64") from exc
        if len(key) < 16:
            raise ConfigError(f"{_var('webhook_secret')} keys must be at least 16 bytes")
    return secrets
