"""Configuration: defaults, then AUTHAPP_* environment variables, then create_app's mapping."""

from __future__ import annotations

import base64
import binascii
import math
import os
import re
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields, replace
from datetime import timedelta
from pathlib import Path
from typing import Any, Literal, cast, get_args

Environment = Literal["production", "development", "testing"]
SameSite = Literal["Lax", "Strict"]
LogFormat = Literal["text", "json"]
Registration = Literal["open", "closed"]

ENV_PREFIX = "AUTHAPP_"
MIN_SECRET_BYTES = 32
SECRET_KEY_FILE = "secret_key"  # noqa: S105 (a file name, not a secret)
ENCRYPTION_KEY_FILE = "encryption_key"
GENERATE_ENCRYPTION_KEY = (
    'python3 -c "from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())"'
)

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}
_PERIODS = {"second": 1, "minute": 60, "hour": 3600, "day": 86400}
# host:port, the host a name, an IPv4 address or a bracketed IPv6 one: what `authapp serve` binds.
_BIND_RE = re.compile(r"^(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+):(\d{1,5})$")
_RATE_RE = re.compile(r"^\s*(\d+)\s*/\s*(\d+)?\s*(second|minute|hour|day)s?\s*$")


# Fernet keys, made and checked here as cryptography does, without importing it: it costs each
# worker some 8.5 MiB, and only encrypting or decrypting needs it (infra/encryption.py, issue 20).


def new_encryption_key() -> str:
    """A new random Fernet key (32 bytes, url-safe base64), as Fernet.generate_key() makes."""
    return base64.urlsafe_b64encode(os.urandom(32)).decode()


def check_encryption_key(key: str) -> None:
    """ValueError unless `key` is a Fernet key: what Fernet(key) checks (url-safe base64,
    decoded as leniently as it does, to 32 bytes)."""
    try:
        decoded = base64.urlsafe_b64decode(key)
    except binascii.Error as error:  # a ValueError, as Fernet raises
        raise ValueError("Fernet key must be 32 url-safe base64-encoded bytes.") from error
    if len(decoded) != 32:
        raise ValueError("Fernet key must be 32 url-safe base64-encoded bytes.")


class ConfigError(Exception):
    """A setting is missing or wrong; the message is one line for the operator."""


@dataclass(frozen=True)
class RateSpec:
    """A limit such as "10/minute" or "5/15 minutes": `count` requests per `period`."""

    count: int
    period: timedelta

    @classmethod
    def parse(cls, text: str) -> RateSpec:
        match = _RATE_RE.match(text)
        if match is None or int(match[1]) < 1 or (match[2] is not None and int(match[2]) < 1):
            raise ValueError(f"{text!r} is not a rate like '10/minute' or '5/15 minutes'")
        multiple = int(match[2] or 1)
        return cls(int(match[1]), timedelta(seconds=multiple * _PERIODS[match[3]]))

    def __str__(self) -> str:
        return f"{self.count}/{int(self.period.total_seconds())} seconds"


@dataclass(frozen=True)
class Settings:
    """Every setting of authapp; each is read from AUTHAPP_<NAME> (see the README's table)."""

    env: Environment = "production"
    # Feature switches: capabilities whose routes, pages and OpenAPI entries vanish when off.
    registration: Registration = "open"
    api_tokens: bool = True
    pages: bool = True
    secret_key: str | None = None
    secret_key_fallbacks: tuple[str, ...] = ()
    # Fernet keys for secrets at rest (authenticator apps'): the first encrypts, all decrypt.
    encryption_keys: tuple[str, ...] = ()
    database_url: str | None = None
    instance_path: str = "instance"
    db_pool_min_size: int = 1
    db_pool_max_size: int = 10
    db_pool_timeout: float = 5.0
    db_command_timeout: float = 10.0
    cookie_secure: bool | None = None
    cookie_samesite: SameSite = "Lax"
    session_lifetime: int = 12 * 3600
    remember_lifetime: int = 30 * 86400
    session_idle_timeout: int = 3600
    remember_idle_timeout: int = 14 * 86400
    freshness: int = 15 * 60
    token_lifetime_days: int = 30
    token_max_lifetime_days: int = 365
    revoke_tokens_on_password_change: bool = True
    password_min_length: int = 12
    argon2_time_cost: int = 2
    argon2_memory_cost: int = 19456
    argon2_parallelism: int = 1
    hash_workers: int = 0
    max_body_size: int = 64 * 1024
    body_timeout: float = 10.0
    rate_limit_enabled: bool = True
    login_rate_limit_ip: RateSpec = RateSpec(10, timedelta(minutes=1))
    hash_rate_limit_ip: RateSpec = RateSpec(60, timedelta(minutes=1))
    login_rate_limit_account: RateSpec = RateSpec(5, timedelta(minutes=15))
    login_rate_limit_device: RateSpec = RateSpec(5, timedelta(minutes=15))
    register_rate_limit_ip: RateSpec = RateSpec(10, timedelta(hours=1))
    write_rate_limit: RateSpec = RateSpec(30, timedelta(minutes=1))
    mail_rate_limit_ip: RateSpec = RateSpec(10, timedelta(hours=1))
    mail_rate_limit_account: RateSpec = RateSpec(10, timedelta(hours=1))
    mail_rate_limit_client_account: RateSpec = RateSpec(3, timedelta(hours=1))
    device_cookie_lifetime: int = 180 * 86400
    csrf_time_limit: int = 3600
    redis_url: str | None = None
    smtp_url: str | None = None
    mail_from: str = "authapp <no-reply@localhost>"
    mail_retry_delay: float = 2.0
    base_url: str | None = None
    bind: str = "127.0.0.1:8000"
    require_verified_email: bool = False
    verify_email_lifetime: int = 24 * 3600
    reset_password_lifetime: int = 3600
    change_email_lifetime: int = 24 * 3600
    trusted_proxy_hops: int = 0
    cors_origins: tuple[str, ...] = ()
    hsts_max_age: int = 2 * 365 * 86400
    log_level: str = "INFO"
    log_format: str | None = None
    lockout_threshold: int = 10
    lockout_delay: int = 60
    lockout_max_delay: int = 3600
    security_event_retention_days: int = 90
    extra_migrations: str | None = None
    mfa_required: bool = False
    mfa_issuer: str = "authapp"

    @property
    def secure_cookies(self) -> bool:
        """Secure cookies everywhere but development, unless set explicitly."""
        if self.cookie_secure is None:
            return self.env != "development"
        return self.cookie_secure

    @property
    def session_cookie_name(self) -> str:
        # The __Host- prefix makes browsers insist on Secure, Path=/ and no Domain.
        return "__Host-authapp_session" if self.secure_cookies else "authapp_session"

    @property
    def mfa_cookie_name(self) -> str:
        # The sign-in waiting for its second factor (a reference to a server-side row).
        return "__Host-authapp_mfa" if self.secure_cookies else "authapp_mfa"

    @property
    def csrf_cookie_name(self) -> str:
        return "__Host-authapp_csrf" if self.secure_cookies else "authapp_csrf"

    @property
    def log_style(self) -> LogFormat:
        """JSON lines for log collectors in production; readable text while developing."""
        if self.log_format is None:
            return "json" if self.env == "production" else "text"
        return cast(LogFormat, self.log_format)

    @property
    def hash_thread_count(self) -> int:
        return self.hash_workers or os.cpu_count() or 1


def load_settings(
    overrides: Mapping[str, Any] | None = None, environ: Mapping[str, str] | None = None
) -> Settings:
    """Build the settings from defaults, the environment and `overrides`, then validate them."""
    environ = os.environ if environ is None else environ
    known = {field.name: field for field in fields(Settings)}
    values: dict[str, Any] = {}
    for name in known:
        raw = environ.get(ENV_PREFIX + name.upper())
        if raw is not None:
            values[name] = _coerce(str(known[name].type), raw, ENV_PREFIX + name.upper())
    for key, value in (overrides or {}).items():
        name = key.lower().removeprefix(ENV_PREFIX.lower())
        if name not in known:
            raise ConfigError(f"unknown setting {key!r}")
        values[name] = (
            _coerce(str(known[name].type), value, key) if isinstance(value, str) else value
        )
    settings = Settings(**values)
    _validate(settings)
    return settings


def parse_bind(address: str) -> tuple[str, int]:
    """The host (without brackets) and the port of an address like 127.0.0.1:8000 or [::1]:8000."""
    match = _BIND_RE.match(address)
    if match is None or not 1 <= int(match[1]) <= 65535:
        raise ValueError(
            f"{address!r} is not a host and a port, like 127.0.0.1:8000, 0.0.0.0:8000 or [::1]:8000"
        )
    return address.rpartition(":")[0].strip("[]"), int(match[1])


def _coerce(kind: str, raw: str, source: str) -> Any:
    """Parse `raw` as the annotated type `kind` of a setting (annotations are strings here)."""
    try:
        if kind in ("bool", "bool | None"):
            lowered = raw.strip().lower()
            if lowered not in _TRUE | _FALSE:
                raise ValueError(f"{raw!r} is not a boolean (use true or false)")
            return lowered in _TRUE
        if kind == "int":
            return int(raw)
        if kind == "float":
            return float(raw)
        if kind == "RateSpec":
            return RateSpec.parse(raw)
        if kind == "tuple[str, ...]":
            return tuple(part.strip() for part in raw.split(",") if part.strip())
        if kind == "str | None":
            return raw or None
    except ValueError as error:
        raise ConfigError(f"{source}: {error}") from None
    return raw


def _validate(settings: Settings) -> None:
    if settings.env not in get_args(Environment):
        raise ConfigError(
            f"AUTHAPP_ENV must be one of production, development, testing (got {settings.env!r})"
        )
    if settings.registration not in get_args(Registration):
        raise ConfigError("AUTHAPP_REGISTRATION must be open or closed")
    if settings.cookie_samesite not in get_args(SameSite):
        raise ConfigError("AUTHAPP_COOKIE_SAMESITE must be Lax or Strict")
    if settings.env == "production" and not settings.secret_key:
        raise ConfigError(
            "AUTHAPP_SECRET_KEY is required in production "
            '(generate one with: python3 -c "import secrets; print(secrets.token_urlsafe(48))")'
        )
    for key in (settings.secret_key, *settings.secret_key_fallbacks):
        if key is not None and len(key.encode()) < MIN_SECRET_BYTES:
            raise ConfigError(f"AUTHAPP_SECRET_KEY must be at least {MIN_SECRET_BYTES} bytes long")
    if settings.env == "production" and not settings.database_url:
        raise ConfigError("AUTHAPP_DATABASE_URL is required in production")
    if settings.env == "production" and not settings.smtp_url:
        raise ConfigError(
            "AUTHAPP_SMTP_URL is required in production (mail carries verification and reset links)"
        )
    if settings.env == "production" and not settings.base_url:
        raise ConfigError(
            "AUTHAPP_BASE_URL is required in production (the links in mail start with it)"
        )
    if settings.env == "production" and not settings.encryption_keys:
        # Always, not once a user turns on two-factor sign-in: a missing key is found at deploy.
        raise ConfigError(
            "AUTHAPP_ENCRYPTION_KEYS is required in production (it encrypts authenticator "
            f"secrets; generate a key with: {GENERATE_ENCRYPTION_KEY})"
        )
    for position, key in enumerate(settings.encryption_keys, 1):
        try:
            check_encryption_key(key)
        except ValueError:  # the message never repeats the key
            raise ConfigError(
                f"AUTHAPP_ENCRYPTION_KEYS: key {position} is not a Fernet key (32 url-safe "
                f"base64-encoded bytes); generate one with: {GENERATE_ENCRYPTION_KEY}"
            ) from None
    if settings.base_url and not re.match(r"^https?://[^/?#\s]+/?$", settings.base_url):
        raise ConfigError("AUTHAPP_BASE_URL must look like https://auth.example.com")
    try:
        parse_bind(settings.bind)
    except ValueError as error:
        raise ConfigError(f"AUTHAPP_BIND: {error}") from None
    if not 8 <= settings.password_min_length <= 1024:
        raise ConfigError("AUTHAPP_PASSWORD_MIN_LENGTH must be between 8 and 1024")
    positive = {
        "AUTHAPP_SESSION_LIFETIME": settings.session_lifetime,
        "AUTHAPP_REMEMBER_LIFETIME": settings.remember_lifetime,
        "AUTHAPP_SESSION_IDLE_TIMEOUT": settings.session_idle_timeout,
        "AUTHAPP_REMEMBER_IDLE_TIMEOUT": settings.remember_idle_timeout,
        "AUTHAPP_FRESHNESS": settings.freshness,
        "AUTHAPP_TOKEN_LIFETIME_DAYS": settings.token_lifetime_days,
        "AUTHAPP_DB_POOL_MAX_SIZE": settings.db_pool_max_size,
        "AUTHAPP_DB_POOL_TIMEOUT": settings.db_pool_timeout,
        "AUTHAPP_DB_COMMAND_TIMEOUT": settings.db_command_timeout,
        "AUTHAPP_MAX_BODY_SIZE": settings.max_body_size,
        "AUTHAPP_BODY_TIMEOUT": settings.body_timeout,
        "AUTHAPP_CSRF_TIME_LIMIT": settings.csrf_time_limit,
        "AUTHAPP_VERIFY_EMAIL_LIFETIME": settings.verify_email_lifetime,
        "AUTHAPP_RESET_PASSWORD_LIFETIME": settings.reset_password_lifetime,
        "AUTHAPP_CHANGE_EMAIL_LIFETIME": settings.change_email_lifetime,
        "AUTHAPP_ARGON2_TIME_COST": settings.argon2_time_cost,
        "AUTHAPP_ARGON2_PARALLELISM": settings.argon2_parallelism,
        "AUTHAPP_LOCKOUT_THRESHOLD": settings.lockout_threshold,
        "AUTHAPP_LOCKOUT_DELAY": settings.lockout_delay,
        "AUTHAPP_SECURITY_EVENT_RETENTION_DAYS": settings.security_event_retention_days,
        "AUTHAPP_DEVICE_COOKIE_LIFETIME": settings.device_cookie_lifetime,
    }
    for name, value in positive.items():
        if not 0 < value < math.inf:  # nan and inf too: either would switch a timeout off
            raise ConfigError(f"{name} must be positive and finite")
    if not 0 <= settings.db_pool_min_size <= settings.db_pool_max_size:
        raise ConfigError("AUTHAPP_DB_POOL_MIN_SIZE must be between 0 and AUTHAPP_DB_POOL_MAX_SIZE")
    if settings.argon2_memory_cost < 19456:
        raise ConfigError("AUTHAPP_ARGON2_MEMORY_COST must be at least 19456 KiB (OWASP minimum)")
    if settings.token_lifetime_days > settings.token_max_lifetime_days:
        raise ConfigError(
            "AUTHAPP_TOKEN_LIFETIME_DAYS cannot exceed AUTHAPP_TOKEN_MAX_LIFETIME_DAYS"
        )
    if settings.mail_retry_delay < 0:
        raise ConfigError("AUTHAPP_MAIL_RETRY_DELAY cannot be negative")
    for origin in settings.cors_origins:
        if not re.match(r"^https?://[^/?#\s*]+$", origin):
            raise ConfigError(
                f"AUTHAPP_CORS_ORIGINS: {origin!r} is not an origin like https://app.example.com "
                "(a scheme and a host, no path, no wildcard)"
            )
    if settings.hsts_max_age < 0:
        raise ConfigError("AUTHAPP_HSTS_MAX_AGE cannot be negative")
    if settings.log_format is not None and settings.log_format not in get_args(LogFormat):
        raise ConfigError("AUTHAPP_LOG_FORMAT must be text or json")
    if settings.lockout_max_delay < settings.lockout_delay:
        raise ConfigError("AUTHAPP_LOCKOUT_MAX_DELAY cannot be less than AUTHAPP_LOCKOUT_DELAY")
    if (
        settings.extra_migrations is not None
        and not (Path(settings.extra_migrations) / "0.py").is_file()
    ):
        raise ConfigError(
            "AUTHAPP_EXTRA_MIGRATIONS must name a folder of migrations starting with 0.py "
            f"(got {settings.extra_migrations!r})"
        )
    if settings.trusted_proxy_hops < 0 or settings.hash_workers < 0:
        raise ConfigError("AUTHAPP_TRUSTED_PROXY_HOPS and AUTHAPP_HASH_WORKERS cannot be negative")


def with_development_secret(settings: Settings, instance_path: Path) -> Settings:
    """In development, keep a generated secret in the instance folder: sessions survive restarts."""
    if settings.secret_key or settings.env != "development":
        return settings
    secret = _kept_in_instance(instance_path, SECRET_KEY_FILE, lambda: secrets.token_urlsafe(48))
    return replace(settings, secret_key=secret)


def with_development_encryption_key(settings: Settings, instance_path: Path) -> Settings:
    """In development, keep a generated encryption key in the instance folder: authenticator
    secrets stored yesterday still decrypt today."""
    if settings.encryption_keys or settings.env != "development":
        return settings
    key = _kept_in_instance(instance_path, ENCRYPTION_KEY_FILE, new_encryption_key)
    try:
        check_encryption_key(key)
    except ValueError:
        raise ConfigError(
            f"{instance_path / ENCRYPTION_KEY_FILE} is not a Fernet key (was it edited?); "
            "set AUTHAPP_ENCRYPTION_KEYS, or delete the file to have a new key generated"
        ) from None
    return replace(settings, encryption_keys=(key,))


def _kept_in_instance(instance_path: Path, name: str, generate: Callable[[], str]) -> str:
    """The secret in the instance folder's file `name` (mode 0600), generated the first time."""
    instance_path.mkdir(parents=True, exist_ok=True)
    path = instance_path / name
    if not path.exists():
        # Write a private temporary file, then link it into place: concurrent workers agree on one.
        temporary = instance_path / f".{name}.{os.getpid()}"
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w") as file:
            file.write(generate())
        try:
            os.link(temporary, path)
        except FileExistsError:
            pass
        finally:
            temporary.unlink()
    return path.read_text().strip()


def development_instance(environ: Mapping[str, str]) -> Path | None:
    """The data folder of `make run`'s embedded PostgreSQL, when `authapp` commands should run
    in development to reach it: neither AUTHAPP_ENV nor AUTHAPP_DATABASE_URL is set and the
    instance folder holds an initialized one. Otherwise None, and production's default (and its
    refusals) stand: a production setup always names its database.
    """
    if environ.get(ENV_PREFIX + "ENV") or environ.get(ENV_PREFIX + "DATABASE_URL"):
        return None
    instance = Path(environ.get(ENV_PREFIX + "INSTANCE_PATH") or Settings.instance_path)
    pgdata = instance / "pgdata"
    return pgdata if (pgdata / "PG_VERSION").is_file() else None
