"""Settings: defaults, then AUTHAPP_* environment, then the mapping; refusals in production."""

from __future__ import annotations

import stat
from datetime import timedelta
from pathlib import Path

import pytest

from authapp import resolve_settings
from authapp.config import (
    ConfigError,
    RateSpec,
    Settings,
    load_settings,
    with_development_encryption_key,
    with_development_secret,
)
from authapp.infra.encryption import Encryption
from tests.conftest import ENCRYPTION_KEY

GOOD_SECRET = "s" * 32
OTHER_KEY = "b3RoZXItZW5jcnlwdGlvbi1rZXktMDEyMzQ1Njc4OWE="  # a Fernet key too
SHORT_KEY = "c2hvcnQta2V5LW9mLTMxLWJ5dGVzLTAxMjM0NTY3OA=="  # base64 of 31 bytes


def test_defaults_then_environment_then_mapping() -> None:
    environ = {
        "AUTHAPP_ENV": "development",
        "AUTHAPP_PASSWORD_MIN_LENGTH": "14",
        "AUTHAPP_SESSION_LIFETIME": "600",
    }
    settings = load_settings({"PASSWORD_MIN_LENGTH": 16}, environ=environ)
    assert settings.env == "development"  # from the environment
    assert settings.session_lifetime == 600  # from the environment
    assert settings.password_min_length == 16  # the mapping wins
    assert settings.remember_lifetime == Settings().remember_lifetime  # the default


def test_mapping_accepts_prefixed_and_string_values() -> None:
    settings = load_settings(
        {"AUTHAPP_ENV": "testing", "COOKIE_SECURE": "false", "LOGIN_RATE_LIMIT_IP": "3/hour"},
        environ={},
    )
    assert settings.cookie_secure is False
    assert settings.login_rate_limit_ip == RateSpec(3, timedelta(hours=1))


PRODUCTION = {
    "SECRET_KEY": GOOD_SECRET,
    "DATABASE_URL": "postgresql://db/x",
    "SMTP_URL": "smtps://mail.example.com",
    "BASE_URL": "https://auth.example.com",
    "ENCRYPTION_KEYS": ENCRYPTION_KEY,
}


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({}, "AUTHAPP_SECRET_KEY is required in production"),
        ({"AUTHAPP_SECRET_KEY": "short"}, "at least 32 bytes"),
        ({"AUTHAPP_SECRET_KEY": GOOD_SECRET}, "AUTHAPP_DATABASE_URL is required in production"),
        (
            {"AUTHAPP_SECRET_KEY": GOOD_SECRET, "AUTHAPP_DATABASE_URL": "postgresql://db/x"},
            "AUTHAPP_SMTP_URL is required in production",
        ),
        (
            {
                "AUTHAPP_SECRET_KEY": GOOD_SECRET,
                "AUTHAPP_DATABASE_URL": "postgresql://db/x",
                "AUTHAPP_SMTP_URL": "smtp://mail.example.com",
            },
            "AUTHAPP_BASE_URL is required",
        ),
        ({"AUTHAPP_ENV": "testing", "AUTHAPP_BASE_URL": "auth.example.com"}, "must look like"),
        (
            {"AUTHAPP_ENV": "testing", "AUTHAPP_BASE_URL": "https://x.example/path"},
            "must look like",
        ),
        ({"AUTHAPP_ENV": "testing", "AUTHAPP_RESET_PASSWORD_LIFETIME": "0"}, "must be positive"),
        ({"AUTHAPP_ENV": "testing", "AUTHAPP_MAIL_RETRY_DELAY": "-1"}, "cannot be negative"),
        ({"AUTHAPP_ENV": "testing", "AUTHAPP_BODY_TIMEOUT": "0"}, "BODY_TIMEOUT must be positive"),
        (
            {"AUTHAPP_ENV": "testing", "AUTHAPP_BODY_TIMEOUT": "nan"},
            "BODY_TIMEOUT must be positive",
        ),
        ({"AUTHAPP_ENV": "testing", "AUTHAPP_BODY_TIMEOUT": "inf"}, "and finite"),
        ({"AUTHAPP_ENV": "staging"}, "AUTHAPP_ENV must be one of"),
        ({"AUTHAPP_ENV": "testing", "AUTHAPP_COOKIE_SECURE": "maybe"}, "AUTHAPP_COOKIE_SECURE"),
        ({"AUTHAPP_ENV": "testing", "AUTHAPP_DB_POOL_MAX_SIZE": "ten"}, "AUTHAPP_DB_POOL_MAX_SIZE"),
        ({"AUTHAPP_ENV": "testing", "AUTHAPP_PASSWORD_MIN_LENGTH": "4"}, "between 8 and 1024"),
        ({"AUTHAPP_ENV": "testing", "AUTHAPP_LOGIN_RATE_LIMIT_IP": "lots"}, "is not a rate"),
        ({"AUTHAPP_ENV": "testing", "AUTHAPP_ARGON2_MEMORY_COST": "1024"}, "OWASP minimum"),
        ({"AUTHAPP_ENV": "testing", "AUTHAPP_COOKIE_SAMESITE": "None"}, "Lax or Strict"),
        ({"AUTHAPP_ENV": "testing", "AUTHAPP_SECRET_KEY_FALLBACKS": "old"}, "at least 32 bytes"),
        (
            {
                f"AUTHAPP_{name}": value
                for name, value in PRODUCTION.items()
                if name != "ENCRYPTION_KEYS"
            },
            "AUTHAPP_ENCRYPTION_KEYS is required in production",
        ),
        (
            {"AUTHAPP_ENV": "testing", "AUTHAPP_ENCRYPTION_KEYS": "k" * 44},
            "key 1 is not a Fernet key",
        ),
        (
            {"AUTHAPP_ENV": "testing", "AUTHAPP_ENCRYPTION_KEYS": SHORT_KEY},
            "key 1 is not a Fernet key",
        ),
        (
            {"AUTHAPP_ENV": "testing", "AUTHAPP_ENCRYPTION_KEYS": f"{ENCRYPTION_KEY},not base64!"},
            "key 2 is not a Fernet key",
        ),
    ],
)
def test_bad_settings_are_refused_in_one_line(environ: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError) as error:
        load_settings(environ=environ)
    assert message in str(error.value)
    assert "\n" not in str(error.value)


def test_unknown_mapping_keys_are_refused() -> None:
    with pytest.raises(ConfigError, match="unknown setting 'PASWORD_MIN_LENGTH'"):
        load_settings({"ENV": "testing", "PASWORD_MIN_LENGTH": 20}, environ={})


@pytest.mark.parametrize(
    ("text", "count", "seconds"),
    [
        ("10/minute", 10, 60),
        ("5/15 minutes", 5, 900),
        ("20 / hour", 20, 3600),
        ("1/2days", 1, 172800),
    ],
)
def test_rate_specs(text: str, count: int, seconds: int) -> None:
    assert RateSpec.parse(text) == RateSpec(count, timedelta(seconds=seconds))


@pytest.mark.parametrize("text", ["", "10", "0/minute", "10/0 minutes", "ten/minute", "10/week"])
def test_bad_rate_specs(text: str) -> None:
    with pytest.raises(ValueError, match="is not a rate"):
        RateSpec.parse(text)


def test_cookies_are_secure_outside_development() -> None:
    assert load_settings({"ENV": "testing"}, environ={}).secure_cookies is True
    assert load_settings({"ENV": "development"}, environ={}).secure_cookies is False
    development = load_settings({"ENV": "development"}, environ={})
    assert development.session_cookie_name == "authapp_session"
    production = load_settings(PRODUCTION, environ={})
    assert production.session_cookie_name == "__Host-authapp_session"


def test_development_secret_is_generated_once_and_kept_private(tmp_path: Path) -> None:
    settings = load_settings({"ENV": "development"}, environ={})
    first = with_development_secret(settings, tmp_path / "instance")
    second = with_development_secret(settings, tmp_path / "instance")
    assert first.secret_key is not None
    assert len(first.secret_key) >= 32
    assert first.secret_key == second.secret_key
    mode = stat.S_IMODE((tmp_path / "instance" / "secret_key").stat().st_mode)
    assert mode == 0o600
    assert list((tmp_path / "instance").iterdir()) == [tmp_path / "instance" / "secret_key"]


def test_production_never_generates_a_secret(tmp_path: Path) -> None:
    settings = load_settings({"ENV": "testing"}, environ={})
    assert with_development_secret(settings, tmp_path).secret_key is None
    assert not (tmp_path / "secret_key").exists()


def test_the_readme_documents_every_setting() -> None:
    from dataclasses import fields

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    for field in fields(Settings):
        assert f"| `AUTHAPP_{field.name.upper()}` |" in readme, field.name


def test_encryption_keys_are_a_comma_separated_list_and_a_bad_one_is_never_echoed() -> None:
    environ = {
        "AUTHAPP_ENV": "testing",
        "AUTHAPP_ENCRYPTION_KEYS": f" {OTHER_KEY}, {ENCRYPTION_KEY} ",
    }
    assert load_settings(environ=environ).encryption_keys == (OTHER_KEY, ENCRYPTION_KEY)
    assert load_settings(PRODUCTION, environ={}).encryption_keys == (ENCRYPTION_KEY,)
    leaked = "s3cret-but-not-a-fernet-key"
    with pytest.raises(ConfigError) as error:
        load_settings({"ENV": "testing", "ENCRYPTION_KEYS": f"{OTHER_KEY},{leaked}"}, environ={})
    message = str(error.value)
    assert leaked not in message
    assert OTHER_KEY not in message
    assert message.startswith("AUTHAPP_ENCRYPTION_KEYS: key 2 is not a Fernet key")
    assert message.endswith(
        'python3 -c "from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())"'
    )


def test_development_keeps_one_encryption_key_in_the_instance_folder(tmp_path: Path) -> None:
    config = {"ENV": "development", "DATABASE_URL": "postgresql://db/x",
              "INSTANCE_PATH": str(tmp_path / "instance")}  # fmt: skip
    first = resolve_settings(config)
    second = resolve_settings(config)
    assert len(first.encryption_keys) == 1
    assert first.encryption_keys == second.encryption_keys  # the app restarted: same key
    key_file = tmp_path / "instance" / "encryption_key"
    assert key_file.read_text() == first.encryption_keys[0]
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert sorted(path.name for path in (tmp_path / "instance").iterdir()) == [
        "encryption_key",
        "secret_key",
    ]
    encryption = Encryption(first.encryption_keys)
    assert encryption.decrypt(encryption.encrypt("JBSWY3DPEHPK3PXP")) == "JBSWY3DPEHPK3PXP"
    # Keys set explicitly win, and nothing is generated then.
    explicit = with_development_encryption_key(
        load_settings({"ENV": "development", "ENCRYPTION_KEYS": OTHER_KEY}, environ={}),
        tmp_path / "elsewhere",
    )
    assert explicit.encryption_keys == (OTHER_KEY,)
    assert not (tmp_path / "elsewhere").exists()


def test_an_edited_development_key_file_is_refused_in_one_line(tmp_path: Path) -> None:
    (tmp_path / "encryption_key").write_text("edited by hand\n")
    settings = load_settings({"ENV": "development"}, environ={})
    with pytest.raises(ConfigError) as error:
        with_development_encryption_key(settings, tmp_path)
    assert "encryption_key is not a Fernet key" in str(error.value)
    assert "edited by hand" not in str(error.value)
    assert "\n" not in str(error.value)


def test_testing_gets_an_encryption_key_of_its_own_per_app(tmp_path: Path) -> None:
    config = {"ENV": "testing", "DATABASE_URL": "postgresql://db/x",
              "INSTANCE_PATH": str(tmp_path / "instance")}  # fmt: skip
    first = resolve_settings(config)
    second = resolve_settings(config)
    assert len(first.encryption_keys) == len(second.encryption_keys) == 1
    assert first.encryption_keys != second.encryption_keys
    assert not (tmp_path / "instance" / "encryption_key").exists()
    assert with_development_encryption_key(load_settings(config, environ={}), tmp_path) == (
        load_settings(config, environ={})
    )
    assert not (tmp_path / "encryption_key").exists()
