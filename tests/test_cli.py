"""The `authapp` command, run as the real executable against the test database: users create
(its refusals in the CLI's words, --verified, the verification mail), list, deactivate and
activate; keys rotate; the rule by which a command finds the environment of `make run`; serve's
start-up lines (the real server's are in test_serving)."""

from __future__ import annotations

import logging
import subprocess
from collections.abc import Awaitable, Callable
from pathlib import Path
from uuid import UUID

import pyotp
import pytest
from hypercorn.config import Config as HypercornConfig
from quart import Quart

from authapp.cli import announce
from authapp.config import development_instance, load_settings
from authapp.infra.encryption import DecryptionFailed, Encryption, generate_key
from authapp.models.users import User
from tests.authenticators import SoftAuthenticator
from tests.conftest import PASSWORD, ROOT, execute, fetch_val
from tests.mailbox import Mailbox, SmtpServer, drain
from tests.servers import BIN, clean_env, free_port

LINK_BASE = "http://127.0.0.1:8123"  # AUTHAPP_BIND of these commands: the links' base


def run_cli(
    *args: str, env: dict[str, str], stdin: str = "", cwd: Path = ROOT
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [BIN / "authapp", *args], cwd=cwd, env=env, input=stdin, capture_output=True,
        text=True, timeout=120, check=False,
    )  # fmt: skip


@pytest.fixture
def env(database_url: str, tmp_path: Path, smtp_server: SmtpServer) -> dict[str, str]:
    """The environment of a command on the test database, mailing the test SMTP server."""
    return clean_env(
        AUTHAPP_ENV="testing",
        AUTHAPP_DATABASE_URL=database_url,
        AUTHAPP_INSTANCE_PATH=str(tmp_path / "instance"),
        AUTHAPP_SMTP_URL=smtp_server.url,
        AUTHAPP_MAIL_RETRY_DELAY="0",
        AUTHAPP_BIND=LINK_BASE.removeprefix("http://"),
    )


def create(env: dict[str, str], email: str, *options: str, password: str = PASSWORD) -> str:
    created = run_cli("users", "create", "--email", email, *options, env=env, stdin=password)
    assert created.returncode == 0, created.stderr
    assert password not in created.stdout + created.stderr
    return created.stdout


def test_cli_migrates_and_refuses_in_its_own_words(app: Quart, env: dict[str, str]) -> None:
    migrated = run_cli("db", "migrate", env=env)
    assert migrated.returncode == 0, migrated.stderr
    latest = max(int(path.stem) for path in (ROOT / "migrations").glob("[0-9]*.py"))
    assert f"database at migration {latest}" in migrated.stdout

    # The detail of the API's 400, not its "The request is not valid.": one line, exit 1.
    weak = run_cli("users", "create", "--email", "weak@example.com", env=env, stdin="short\n")
    assert (weak.returncode, weak.stderr) == (1, "authapp: error: Use at least 12 characters.\n")
    common = run_cli(
        "users", "create", "--email", "common@example.com", env=env, stdin="password1234\n"
    )
    assert common.returncode == 1
    assert common.stderr.startswith("authapp: error: This password is on a list of common")
    similar = run_cli(
        "users", "create", "--email", "mhamilton@example.com",
        "--display-name", "Margaret Hamilton", env=env, stdin="Margaret.Hamilton.1936\n",
    )  # fmt: skip
    assert similar.returncode == 1
    assert "like your name" in similar.stderr
    assert "not valid" not in weak.stderr + common.stderr + similar.stderr

    create(env, "cli@example.com", "--verified")
    taken = run_cli("users", "create", "--email", "CLI@example.com", env=env, stdin=PASSWORD)
    assert (taken.returncode, taken.stderr.splitlines()[-1]) == (
        1,
        "authapp: error: An account with this email already exists.",
    )
    bad_email = run_cli("users", "create", "--email", "not an email", env=env, stdin=PASSWORD)
    assert bad_email.returncode == 1
    assert bad_email.stderr.startswith("authapp: error: invalid email:")


async def test_a_user_created_verified_can_sign_in_and_is_listed(
    app: Quart, env: dict[str, str], mailbox: Mailbox
) -> None:
    out = create(env, "ops@example.com", "--verified", "--display-name", "Ops")
    assert "ops@example.com" in out
    assert "verified" in out
    create(env, "second@example.com")  # not verified: mailed a link
    client = app.test_client()
    login = await client.post(
        "/api/auth/login", json={"email": "ops@example.com", "password": PASSWORD}
    )
    assert login.status_code == 200
    assert (await login.get_json())["email_verified"] is True
    assert len(await mailbox.wait_for(1)) == 1
    await mailbox.settle()
    assert [str(m["To"]) for m in mailbox.messages] == ["second@example.com"]  # none for ops

    listed = run_cli("users", "list", env=env)
    assert listed.returncode == 0, listed.stderr
    header, *rows = listed.stdout.splitlines()
    assert header.split() == ["EMAIL", "NAME", "VERIFIED", "ACTIVE", "CREATED", "LAST", "SIGN-IN"]
    assert [row.split()[:4] for row in rows] == [
        ["ops@example.com", "Ops", "yes", "yes"],
        ["second@example.com", "second", "no", "yes"],
    ]
    assert not rows[0].endswith("never")  # ops has signed in
    assert rows[1].endswith("never")


async def test_a_user_created_unverified_gets_the_verification_mail(
    app: Quart, env: dict[str, str], mailbox: Mailbox
) -> None:
    out = create(env, "new@example.com")
    assert "a verification link was mailed to new@example.com" in out
    (message,) = await mailbox.wait_for(1, to="new@example.com")
    assert message["Subject"] == "Verify your email address"
    # Outside a request there is no request's host: the link starts with the bind address.
    link = mailbox.link(message, "/auth/verify-email/")
    assert link.startswith(f"{LINK_BASE}/auth/verify-email/")
    client = app.test_client()
    verified = await client.post("/api/auth/verify-email", json={"token": link.rsplit("/", 1)[1]})
    assert verified.status_code == 204
    login = await client.post(
        "/api/auth/login", json={"email": "new@example.com", "password": PASSWORD}
    )
    assert (await login.get_json())["email_verified"] is True


def test_an_undelivered_verification_mail_is_a_warning(app: Quart, env: dict[str, str]) -> None:
    nobody_listens = f"smtp+plain://127.0.0.1:{free_port()}"
    created = run_cli(
        "users", "create", "--email", "lost@example.com",
        env={**env, "AUTHAPP_SMTP_URL": nobody_listens}, stdin=PASSWORD,
    )  # fmt: skip
    assert created.returncode == 0, created.stderr  # the user exists: asking again would fail
    assert created.stdout.startswith("created user ")
    assert created.stderr.splitlines()[-1] == (
        "authapp: warning: the verification mail could not be delivered (see above); "
        "the user can ask for a new link on the sign-in page"
    )


async def test_deactivating_ends_every_session_and_token_and_activating_brings_none_back(
    app: Quart, env: dict[str, str], mailbox: Mailbox
) -> None:
    create(env, "alice@example.com", "--verified")
    browser = app.test_client()
    login = await browser.post(
        "/api/auth/login", json={"email": "alice@example.com", "password": PASSWORD}
    )
    assert login.status_code == 200
    created = await browser.post("/api/tokens", json={"name": "script", "scopes": ["profile:read"]})
    assert created.status_code == 201
    bearer = {"Authorization": f"Bearer {(await created.get_json())['token']}"}
    script = app.test_client()
    assert (await script.get("/api/me", headers=bearer)).status_code == 200
    await browser.post("/api/auth/forgot-password", json={"email": "alice@example.com"})
    await drain(app)
    reset_link = mailbox.link((await mailbox.wait_for(1))[0], "/auth/reset-password/")

    deactivated = run_cli("users", "deactivate", "ALICE@example.com", env=env)
    assert deactivated.returncode == 0, deactivated.stderr
    assert deactivated.stdout == (
        "alice@example.com is deactivated: 1 session(s) revoked, 1 API token(s) deleted\n"
    )
    assert (await browser.get("/api/me")).status_code == 401
    assert (await script.get("/api/me", headers=bearer)).status_code == 401
    refused = await app.test_client().post(
        "/api/auth/login", json={"email": "alice@example.com", "password": PASSWORD}
    )
    assert refused.status_code == 401
    again = run_cli("users", "deactivate", "alice@example.com", env=env)
    assert (again.returncode, again.stdout) == (0, "alice@example.com is already deactivated\n")
    listed = run_cli("users", "list", env=env)
    assert listed.stdout.splitlines()[1].split()[:4] == ["alice@example.com", "alice", "yes", "no"]

    activated = run_cli("users", "activate", "alice@example.com", env=env)
    assert activated.returncode == 0, activated.stderr
    assert activated.stdout.startswith("alice@example.com is active")
    # The old session, token and mailed link stay dead; a new sign-in works.
    assert (await browser.get("/api/me")).status_code == 401
    assert (await script.get("/api/me", headers=bearer)).status_code == 401
    reset = await app.test_client().post(
        "/api/auth/reset-password",
        json={"token": reset_link.rsplit("/", 1)[1], "password": "a brand new passphrase 2026"},
    )
    assert reset.status_code == 400
    assert (await reset.get_json())["code"] == "TOKEN_INVALID"
    fresh = app.test_client()
    relogin = await fresh.post(
        "/api/auth/login", json={"email": "alice@example.com", "password": PASSWORD}
    )
    assert relogin.status_code == 200
    events = await fresh.get("/api/me/events")
    kinds = [event["kind"] for event in (await events.get_json())["events"]]
    assert kinds[:3] == ["login_succeeded", "account_activated", "account_deactivated"]

    unknown = run_cli("users", "deactivate", "nobody@example.com", env=env)
    assert (unknown.returncode, unknown.stderr) == (
        1,
        "authapp: error: no user has the email nobody@example.com\n",
    )


async def store_totp_secret(app: Quart, user_id: UUID, secret_encrypted: str) -> None:
    await execute(
        app,
        """INSERT INTO mfa_totp (user_id, secret_encrypted, created_at)
           VALUES (:user_id, :secret, now())""",
        {"user_id": user_id, "secret": secret_encrypted},
    )


async def test_keys_rotate_re_encrypts_every_secret_with_the_first_key(
    app: Quart, env: dict[str, str], make_user: Callable[..., Awaitable[User]]
) -> None:
    old, new = generate_key(), generate_key()
    plaintexts: dict[UUID, str] = {}
    for number, under in enumerate((old, old, new)):  # one already under the new key
        user = await make_user(f"user{number}@example.com")
        plaintexts[user.id] = f"JBSWY3DPEHPK3PX{number}"
        await store_totp_secret(app, user.id, Encryption([under]).encrypt(plaintexts[user.id]))

    rotated = run_cli("keys", "rotate", env={**env, "AUTHAPP_ENCRYPTION_KEYS": f"{new},{old}"})
    assert rotated.returncode == 0, rotated.stderr
    assert rotated.stdout == (
        "re-encrypted 3 authenticator secret(s) with the first key of AUTHAPP_ENCRYPTION_KEYS; "
        "the other keys can now be removed\n"
    )
    for user_id, plaintext in plaintexts.items():
        stored = await fetch_val(
            app, "SELECT secret_encrypted FROM mfa_totp WHERE user_id = :id", {"id": user_id}
        )
        assert Encryption([new]).decrypt(stored) == plaintext  # the new key alone reads it
        with pytest.raises(DecryptionFailed):
            Encryption([old]).decrypt(stored)


async def test_keys_rotate_stops_at_a_secret_no_key_decrypts_naming_its_user(
    app: Quart, env: dict[str, str], make_user: Callable[..., Awaitable[User]]
) -> None:
    old, new, lost = generate_key(), generate_key(), generate_key()
    readable = await make_user("readable@example.com")
    unreadable = await make_user("unreadable@example.com")
    await store_totp_secret(app, readable.id, Encryption([old]).encrypt("JBSWY3DPEHPK3PXP"))
    await store_totp_secret(app, unreadable.id, Encryption([lost]).encrypt("JBSWY3DPEHPK3PXQ"))
    before = await fetch_val(
        app, "SELECT array_agg(secret_encrypted ORDER BY user_id) FROM mfa_totp"
    )

    refused = run_cli("keys", "rotate", env={**env, "AUTHAPP_ENCRYPTION_KEYS": f"{new},{old}"})
    assert (refused.returncode, refused.stdout) == (1, "")
    assert refused.stderr.splitlines()[-1] == (
        "authapp: error: no key in AUTHAPP_ENCRYPTION_KEYS decrypts the authenticator secret of "
        f"user {unreadable.id}: add the key it was encrypted with and run this again "
        "(0 other secret(s) were re-encrypted)"
    )
    assert "Traceback" not in refused.stderr
    # Both secrets share one batch, and so one transaction: nothing of it was written.
    after = await fetch_val(
        app, "SELECT array_agg(secret_encrypted ORDER BY user_id) FROM mfa_totp"
    )
    assert after == before


def fake_embedded_instance(folder: Path) -> Path:
    pgdata = folder / "instance" / "pgdata"
    pgdata.mkdir(parents=True)
    (pgdata / "PG_VERSION").write_text("18\n")
    return pgdata


@pytest.mark.parametrize(
    ("environ", "found"),
    [
        ({}, True),  # `make run`'s folder, nothing set: development, on its database
        ({"AUTHAPP_ENV": "production"}, False),  # said explicitly: stays production
        ({"AUTHAPP_ENV": "testing"}, False),
        ({"AUTHAPP_DATABASE_URL": "postgresql://db.internal/authapp"}, False),  # a real setup
    ],
)
def test_commands_run_in_development_only_where_make_run_left_its_database(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, environ: dict[str, str], found: bool
) -> None:
    monkeypatch.chdir(tmp_path)
    assert development_instance(environ) is None  # no embedded instance here yet
    pgdata = fake_embedded_instance(tmp_path)
    assert development_instance(environ) == (Path("instance/pgdata") if found else None)
    elsewhere = {**environ, "AUTHAPP_INSTANCE_PATH": str(tmp_path / "instance")}
    assert development_instance(elsewhere) == (pgdata if found else None)


def test_an_explicit_production_refuses_loudly_beside_an_embedded_instance(
    tmp_path: Path,
) -> None:
    fake_embedded_instance(tmp_path)
    result = run_cli("users", "list", env=clean_env(AUTHAPP_ENV="production"), cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.startswith("authapp: error: AUTHAPP_SECRET_KEY is required in production")
    assert len(result.stderr.splitlines()) == 1


def test_the_start_up_lines_show_no_password(caplog: pytest.LogCaptureFixture) -> None:
    settings = load_settings(
        {"DATABASE_URL": "postgresql://authapp:db-secret@db.internal:5432/authapp",
         "SMTP_URL": "smtps://mailer:smtp-secret@mail.example.com", "BIND": "0.0.0.0:9000"},
        environ={"AUTHAPP_ENV": "testing"},
    )  # fmt: skip
    config = HypercornConfig()
    config.bind = [settings.bind]
    with caplog.at_level(logging.INFO, logger="authapp.cli"):
        announce(settings, config, embedded=False)
    assert [record.getMessage() for record in caplog.records] == [
        "authapp (testing) listening on http://0.0.0.0:9000",
        "API docs: http://0.0.0.0:9000/docs",
        "data: PostgreSQL at postgresql://authapp@db.internal:5432/authapp",
        "mail: SMTP server mail.example.com:465 (TLS: tls)",
    ]


async def test_roles_from_the_shell_make_the_first_admin_and_keep_the_last(
    app: Quart, env: dict[str, str]
) -> None:
    create(env, "root@example.com", "--verified")
    granted = run_cli("roles", "grant", "ROOT@example.com", "admin", env=env)
    assert (granted.returncode, granted.stdout) == (0, "root@example.com now holds admin\n")
    client = app.test_client()
    login = await client.post(
        "/api/auth/login", json={"email": "root@example.com", "password": PASSWORD}
    )
    assert login.status_code == 200
    assert (await client.get("/api/admin/users")).status_code == 200

    made = run_cli("roles", "create", "support", "--permission", "users:read", env=env)
    assert (made.returncode, made.stdout) == (0, "created role support: users:read\n")
    typo = run_cli("roles", "create", "ops", "--permission", "user:read", env=env)
    assert typo.returncode == 1
    assert typo.stderr.startswith("authapp: error: user:read is no permission; there are")
    listed = run_cli("roles", "list", env=env).stdout.splitlines()
    assert [line.split()[:3] for line in listed[1:]] == [
        ["admin", "1", "users:read"], ["support", "0", "users:read"],
    ]  # fmt: skip

    last = run_cli("roles", "revoke", "root@example.com", "admin", env=env)
    assert (last.returncode, last.stderr) == (
        1, "authapp: error: This is the last active admin: grant another account admin first.\n"
    )  # fmt: skip
    kept = run_cli("users", "deactivate", "root@example.com", env=env)
    assert kept.returncode == 1
    unknown = run_cli("roles", "grant", "root@example.com", "nope", env=env)
    assert (unknown.returncode, unknown.stderr) == (
        1, "authapp: error: There is no role named nope.\n"
    )  # fmt: skip
    assert (await client.get("/api/admin/users")).status_code == 200


async def test_reset_access_takes_the_second_factor_of_someone_who_lost_it(
    app: Quart, env: dict[str, str]
) -> None:
    create(env, "alice@example.com", "--verified")
    owner = app.test_client()
    body = {"email": "alice@example.com", "password": PASSWORD}
    assert (await owner.post("/api/auth/login", json=body)).status_code == 200
    secret = (await (await owner.post("/api/me/mfa/totp")).get_json())["secret"]
    code = {"code": pyotp.TOTP(secret).now()}
    assert (await owner.post("/api/me/mfa/totp/confirm", json=code)).status_code == 200
    options = await (await owner.post("/api/me/passkeys/options")).get_json()
    added = {"credential": SoftAuthenticator().create(options)}
    assert (await owner.post("/api/me/passkeys", json=added)).status_code == 201
    # The phone, the codes and the key are gone: the password alone reaches the second step.
    assert (await app.test_client().post("/api/auth/login", json=body)).status_code == 202

    reset = run_cli("users", "reset-access", "Alice@Example.com", env=env)
    assert reset.returncode == 0, reset.stderr
    assert "1 session(s) revoked" in reset.stdout
    assert "second factor: removed" in reset.stdout
    assert await fetch_val(app, "SELECT count(*) FROM webauthn_credentials") == 0
    assert await fetch_val(app, "SELECT count(*) FROM mfa_totp") == 0
    assert (await owner.get("/api/me")).status_code == 401
    again = app.test_client()
    assert (await again.post("/api/auth/login", json=body)).status_code == 200
    events = await fetch_val(
        app, "SELECT count(*) FROM security_events WHERE kind = 'access_reset'"
    )
    assert events == 1
    unknown = run_cli("users", "reset-access", "nobody@example.com", env=env)
    assert unknown.returncode == 1
    assert "no user has the email nobody@example.com" in unknown.stderr
