"""The account's life by email, through the JSON API and a real SMTP server: verification,
forgotten password, change of password and address, deletion; the tokens' rules as tables."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Awaitable, Callable
from email.message import EmailMessage
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from quart import Quart
from quart.typing import TestClientProtocol as Client

from authapp import create_app
from authapp.models.users import User
from tests.conftest import PASSWORD, Clock, fetch_val, settings_for
from tests.mailbox import Mailbox, drain

MakeUser = Callable[..., Awaitable[User]]
Login = Callable[..., Awaitable[Any]]
NEW_PASSWORD = "a brand new passphrase 2026"
EMAIL = "alice@example.com"


def token_of(link: str) -> str:
    return urlsplit(link).path.rsplit("/", 1)[1]


async def mailed_token(mailbox: Mailbox, to: str, path: str, count: int = 1) -> str:
    message = (await mailbox.wait_for(count, to=to))[count - 1]
    return token_of(mailbox.link(message, path))


def subjects(mailbox: Mailbox, to: str | None = None) -> list[str]:
    return [
        str(received.message["Subject"])
        for received in mailbox.received
        if to is None or to in received.recipients
    ]


async def register(client: Client, email: str = EMAIL, **extra: Any) -> Any:
    body = {"email": email, "password": PASSWORD, "display_name": "Alice", **extra}
    return await client.post("/api/auth/register", json=body)


async def test_registration_mails_a_link_that_verifies_the_address(
    client: Client, app: Quart, mailbox: Mailbox
) -> None:
    response = await register(client)
    assert response.status_code == 201
    assert (await response.get_json())["email_verified"] is False
    (message,) = await mailbox.wait_for(to=EMAIL)
    assert message["Subject"] == "Verify your email address"
    assert message.get_body(preferencelist=("html",)) is not None
    link = mailbox.link(message, "/auth/verify-email/")
    assert link.startswith("http://localhost/auth/verify-email/")
    response = await client.post("/api/auth/verify-email", json={"token": token_of(link)})
    assert response.status_code == 204
    await client.post("/api/auth/login", json={"email": EMAIL, "password": PASSWORD})
    assert (await (await client.get("/api/me")).get_json())["email_verified"] is True
    # Only the SHA-256 of the token is stored.
    stored = await fetch_val(app, "SELECT id FROM email_tokens")
    assert stored == hashlib.sha256(token_of(link).encode()).digest()


async def test_the_verification_page_verifies_too(
    client: Client, app: Quart, mailbox: Mailbox
) -> None:
    await register(client)
    link = mailbox.link((await mailbox.wait_for(to=EMAIL))[0], "/auth/verify-email/")
    page = await client.get(urlsplit(link).path, headers={"Accept": "text/html"})
    assert page.status_code == 200
    assert "Thank you: your email address is verified." in await page.get_data(as_text=True)
    assert await fetch_val(app, "SELECT email_verified_at IS NOT NULL FROM users")


async def test_a_resent_link_replaces_the_old_one(
    client: Client, app: Quart, mailbox: Mailbox
) -> None:
    await register(client)
    first = await mailed_token(mailbox, EMAIL, "/auth/verify-email/")
    response = await client.post(
        "/api/auth/verify-email/resend", json={"email": "ALICE@example.com"}
    )
    assert response.status_code == 202
    second = await mailed_token(mailbox, EMAIL, "/auth/verify-email/", count=2)
    assert first != second
    bad = await client.post("/api/auth/verify-email", json={"token": first})
    assert (await bad.get_json())["code"] == "TOKEN_INVALID"
    assert (await client.post("/api/auth/verify-email", json={"token": second})).status_code == 204


async def test_resend_says_the_same_for_unknown_and_verified_addresses(
    client: Client, app: Quart, mailbox: Mailbox
) -> None:
    await register(client)
    token = await mailed_token(mailbox, EMAIL, "/auth/verify-email/")
    await client.post("/api/auth/verify-email", json={"token": token})
    answers = [
        await client.post("/api/auth/verify-email/resend", json={"email": email})
        for email in (EMAIL, "nobody@example.com")
    ]
    await drain(app)
    assert [answer.status_code for answer in answers] == [202, 202]
    assert (await answers[0].get_json()) == (await answers[1].get_json())
    assert len(mailbox.received) == 1  # only the first verification mail


# --- the tokens' rules, for each kind of mailed token -----------------------------------


async def verify_token(client: Client, app: Quart, mailbox: Mailbox) -> str:
    await register(client)
    return await mailed_token(mailbox, EMAIL, "/auth/verify-email/")


async def reset_token(client: Client, app: Quart, mailbox: Mailbox) -> str:
    await register(client)
    await client.post("/api/auth/forgot-password", json={"email": EMAIL})
    return await mailed_token(mailbox, EMAIL, "/auth/reset-password/", count=2)


async def change_token(client: Client, app: Quart, mailbox: Mailbox) -> str:
    await register(client)
    await client.post("/api/auth/login", json={"email": EMAIL, "password": PASSWORD})
    body = {"new_email": "new@example.com", "password": PASSWORD}
    assert (await client.post("/api/me/email", json=body)).status_code == 202
    return await mailed_token(mailbox, "new@example.com", "/auth/confirm-email/")


KINDS: dict[str, tuple[Callable[..., Awaitable[str]], str, dict[str, str], int]] = {
    "verify": (verify_token, "/api/auth/verify-email", {}, 240),
    "reset": (reset_token, "/api/auth/reset-password", {"password": NEW_PASSWORD}, 60),
    "change email": (change_token, "/api/auth/confirm-email", {}, 240),
}  # kind: (how to get one, where it is used, the rest of the body, minutes it lives + some)


async def use(client: Client, kind: str, token: str) -> Any:
    _, path, body, _ = KINDS[kind]
    return await client.post(path, json={"token": token, **body})


@pytest.mark.parametrize("kind", KINDS)
async def test_a_token_works_once(client: Client, app: Quart, mailbox: Mailbox, kind: str) -> None:
    token = await KINDS[kind][0](client, app, mailbox)
    assert (await use(client, kind, token)).status_code == 204
    again = await use(client, kind, token)
    assert again.status_code == 400
    assert (await again.get_json())["code"] == "TOKEN_INVALID"


@pytest.mark.parametrize("kind", KINDS)
async def test_a_token_expires(
    client: Client, app: Quart, mailbox: Mailbox, kind: str, clock: Clock
) -> None:
    token = await KINDS[kind][0](client, app, mailbox)
    lifetime = {"verify": 24 * 60, "reset": 60, "change email": 24 * 60}[kind]
    clock.advance(minutes=lifetime + 1)
    response = await use(client, kind, token)
    assert response.status_code == 400
    assert (await response.get_json())["code"] == "TOKEN_EXPIRED"
    clock.advance(minutes=-2)
    assert (await use(client, kind, token)).status_code == 204  # just before, it worked


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize(
    "tamper",
    [lambda t: t[:-1] + ("A" if t[-1] != "A" else "B"), lambda t: t[::-1], lambda t: t[:20],
     lambda t: t + "x", lambda t: "x" * 43],
    ids=["last character", "reversed", "truncated", "extended", "forged"],
)  # fmt: skip
async def test_a_tampered_token_is_invalid(
    client: Client, app: Quart, mailbox: Mailbox, kind: str, tamper: Callable[[str], str]
) -> None:
    token = await KINDS[kind][0](client, app, mailbox)
    response = await use(client, kind, tamper(token))
    assert response.status_code == 400
    assert (await response.get_json())["code"] == "TOKEN_INVALID"
    assert (await use(client, kind, token)).status_code == 204  # the real one still works


@pytest.mark.parametrize(
    ("kind", "used_for"), [(kind, other) for kind in KINDS for other in KINDS if other != kind]
)
async def test_a_token_works_only_for_its_purpose(
    client: Client, app: Quart, mailbox: Mailbox, kind: str, used_for: str
) -> None:
    token = await KINDS[kind][0](client, app, mailbox)
    response = await use(client, used_for, token)
    assert response.status_code == 400
    assert (await response.get_json())["code"] == "TOKEN_INVALID"


# --- verified email required -------------------------------------------------------------


@pytest.mark.settings(REQUIRE_VERIFIED_EMAIL="true")
async def test_registering_a_taken_address_reveals_nothing(
    client: Client, app: Quart, mailbox: Mailbox
) -> None:
    new = await register(client, "new@example.com")
    await register(client, EMAIL)
    await drain(app)
    mailbox_before = len(mailbox.received)
    taken = await register(client, EMAIL, display_name="Mallory")
    assert new.status_code == taken.status_code == 202
    assert await new.get_json() == await taken.get_json()
    assert "Set-Cookie" not in taken.headers or "authapp_session" not in taken.headers["Set-Cookie"]
    messages = await mailbox.wait_for(mailbox_before + 1)
    assert messages[-1]["Subject"] == "Someone tried to sign up with your address"
    assert EMAIL in str(messages[-1]["To"])
    assert await fetch_val(app, "SELECT count(*) FROM users") == 2


@pytest.mark.settings(REQUIRE_VERIFIED_EMAIL="true")
async def test_unverified_accounts_cannot_sign_in_until_verified(
    client: Client, mailbox: Mailbox
) -> None:
    await register(client)
    token = await mailed_token(mailbox, EMAIL, "/auth/verify-email/")
    wrong = await client.post("/api/auth/login", json={"email": EMAIL, "password": "nope nope"})
    assert wrong.status_code == 401  # a stranger learns nothing about the account
    refused = await client.post("/api/auth/login", json={"email": EMAIL, "password": PASSWORD})
    assert refused.status_code == 403
    assert (await refused.get_json())["code"] == "EMAIL_NOT_VERIFIED"
    assert (await client.get("/api/me")).status_code == 401
    await client.post("/api/auth/verify-email", json={"token": token})
    login = await client.post("/api/auth/login", json={"email": EMAIL, "password": PASSWORD})
    assert login.status_code == 200


# --- forgotten password ------------------------------------------------------------------


async def test_forgot_password_answers_the_same_and_mails_only_known_addresses(
    client: Client, app: Quart, mailbox: Mailbox, make_user: MakeUser
) -> None:
    await make_user()
    known = await client.post("/api/auth/forgot-password", json={"email": "Alice@Example.com"})
    unknown = await client.post("/api/auth/forgot-password", json={"email": "bob@example.com"})
    await drain(app)
    assert known.status_code == unknown.status_code == 202
    assert await known.get_json() == await unknown.get_json()
    assert subjects(mailbox) == ["Reset your password"]
    assert [received.recipients for received in mailbox.received] == [[EMAIL]]


async def test_a_reset_sets_the_password_and_ends_every_session(
    client: Client, app: Quart, mailbox: Mailbox, make_user: MakeUser, login: Login
) -> None:
    await make_user()
    await login()
    assert (await client.get("/api/me")).status_code == 200
    stranger = app.test_client()
    await stranger.post("/api/auth/forgot-password", json={"email": EMAIL})
    token = await mailed_token(mailbox, EMAIL, "/auth/reset-password/")
    body = {"token": token, "password": NEW_PASSWORD}
    assert (await stranger.post("/api/auth/reset-password", json=body)).status_code == 204
    assert (await client.get("/api/me")).status_code == 401  # the cookie from before
    await login(password=NEW_PASSWORD)
    bad = await client.post("/api/auth/login", json={"email": EMAIL, "password": PASSWORD})
    assert bad.status_code == 401
    await mailbox.wait_for(2, to=EMAIL)
    assert subjects(mailbox) == ["Reset your password", "Your password was changed"]


async def test_a_reset_refuses_a_weak_password_and_keeps_the_link(
    client: Client, mailbox: Mailbox, make_user: MakeUser
) -> None:
    await make_user()
    await client.post("/api/auth/forgot-password", json={"email": EMAIL})
    token = await mailed_token(mailbox, EMAIL, "/auth/reset-password/")
    weak = await client.post("/api/auth/reset-password", json={"token": token, "password": EMAIL})
    assert weak.status_code == 400
    assert (await weak.get_json())["details"][0]["field"] == "password"
    body = {"token": token, "password": NEW_PASSWORD}
    assert (await client.post("/api/auth/reset-password", json=body)).status_code == 204


async def test_a_reset_link_dies_when_the_password_changes_another_way(
    client: Client, mailbox: Mailbox, make_user: MakeUser, login: Login
) -> None:
    await make_user()
    await client.post("/api/auth/forgot-password", json={"email": EMAIL})
    token = await mailed_token(mailbox, EMAIL, "/auth/reset-password/")
    await login()
    change = {"current_password": PASSWORD, "new_password": NEW_PASSWORD}
    assert (await client.post("/api/me/password", json=change)).status_code == 204
    body = {"token": token, "password": "yet another passphrase"}
    response = await client.post("/api/auth/reset-password", json=body)
    assert (await response.get_json())["code"] == "TOKEN_INVALID"
    notice = (await mailbox.wait_for(2, to=EMAIL))[1]
    assert notice["Subject"] == "Your password was changed"


# --- change of address ------------------------------------------------------------------


async def test_the_address_changes_only_when_the_new_inbox_confirms(
    client: Client, app: Quart, mailbox: Mailbox, make_user: MakeUser, login: Login
) -> None:
    await make_user()
    await login()
    body = {"new_email": "New@Example.com", "password": PASSWORD}
    response = await client.post("/api/me/email", json=body)
    assert response.status_code == 202
    token = await mailed_token(mailbox, "New@example.com", "/auth/confirm-email/")
    assert (await (await client.get("/api/me")).get_json())["email"] == EMAIL
    assert (await client.post("/api/auth/confirm-email", json={"token": token})).status_code == 204
    me = await (await client.get("/api/me")).get_json()
    assert me["email"] == "New@example.com"
    assert me["email_verified"] is True
    notice = (await mailbox.wait_for(to=EMAIL))[0]
    assert notice["Subject"] == "Your email address was changed"
    assert "New@example.com" in notice.get_body(preferencelist=("plain",)).get_content()  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("body", "code", "field"),
    [({"new_email": "new@example.com", "password": "not it at all"}, "WRONG_PASSWORD", "password"),
     ({"new_email": "ALICE@example.com", "password": PASSWORD}, "VALIDATION_ERROR", "new_email"),
     ({"new_email": "not an email", "password": PASSWORD}, "VALIDATION_ERROR", "new_email")],
)  # fmt: skip
async def test_a_refused_change_of_address_sends_nothing(
    client: Client, app: Quart, mailbox: Mailbox, make_user: MakeUser, login: Login,
    body: dict[str, str], code: str, field: str,
) -> None:  # fmt: skip
    await make_user()
    await login()
    response = await client.post("/api/me/email", json=body)
    assert response.status_code == 400
    error = await response.get_json()
    assert (error["code"], error["details"][0]["field"]) == (code, field)
    await drain(app)
    assert mailbox.received == []


async def test_asking_for_a_taken_address_looks_the_same_and_mails_nobody(
    client: Client, app: Quart, mailbox: Mailbox, make_user: MakeUser, login: Login
) -> None:
    await make_user()
    await make_user("bob@example.com")
    await login()
    taken = await client.post(
        "/api/me/email", json={"new_email": "bob@example.com", "password": PASSWORD}
    )
    free = await client.post(
        "/api/me/email", json={"new_email": "carol@example.com", "password": PASSWORD}
    )
    assert taken.status_code == free.status_code == 202
    assert await taken.get_json() == await free.get_json()
    await drain(app)
    assert [received.recipients for received in mailbox.received] == [["carol@example.com"]]


async def test_a_confirmation_for_an_address_taken_meanwhile_is_409(
    client: Client, app: Quart, mailbox: Mailbox, make_user: MakeUser, login: Login
) -> None:
    await make_user()
    await login()
    await client.post("/api/me/email", json={"new_email": "new@example.com", "password": PASSWORD})
    token = await mailed_token(mailbox, "new@example.com", "/auth/confirm-email/")
    await make_user("NEW@example.com")
    response = await client.post("/api/auth/confirm-email", json={"token": token})
    assert response.status_code == 409
    assert (await response.get_json())["code"] == "EMAIL_TAKEN"
    assert await fetch_val(app, "SELECT count(*) FROM users WHERE email = :e", {"e": EMAIL}) == 1


# --- deletion -----------------------------------------------------------------------------


async def test_deleting_the_account_leaves_no_rows(
    client: Client, app: Quart, mailbox: Mailbox, make_user: MakeUser, login: Login
) -> None:
    await make_user()
    await login()
    await client.post("/api/auth/forgot-password", json={"email": EMAIL})
    await app.test_client().post("/api/auth/login", json={"email": EMAIL, "password": PASSWORD})
    await drain(app)
    assert await fetch_val(app, "SELECT count(*) FROM email_tokens") == 1
    response = await client.delete("/api/me", json={"password": PASSWORD})
    assert response.status_code == 204
    for table in ("users", "sessions", "email_tokens"):
        assert await fetch_val(app, f"SELECT count(*) FROM {table}") == 0, table  # noqa: S608
    assert (await client.get("/api/me")).status_code == 401
    notice = (await mailbox.wait_for(2, to=EMAIL))[1]
    assert notice["Subject"] == "Your account was deleted"


async def test_deleting_needs_the_password(
    client: Client, app: Quart, make_user: MakeUser, login: Login
) -> None:
    await make_user()
    await login()
    response = await client.delete("/api/me", json={"password": "not my password"})
    assert response.status_code == 400
    assert (await response.get_json())["code"] == "WRONG_PASSWORD"
    assert await fetch_val(app, "SELECT count(*) FROM users") == 1


# --- mail that fails, logs that keep secrets ---------------------------------------------


async def test_a_mail_failure_never_undoes_the_change(
    database_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    app = create_app(
        settings_for(
            database_url, tmp_path, SMTP_URL="smtp+plain://127.0.0.1:9", MAIL_RETRY_DELAY=0
        )
    )
    async with app.test_app():
        client = app.test_client()
        response = await register(client, "down@example.com")
        assert response.status_code == 201
        await drain(app)
        email = "down@example.com"
        assert (
            await fetch_val(app, "SELECT count(*) FROM users WHERE email = :e", {"e": email}) == 1
        )
        await fetch_val(app, "DELETE FROM users WHERE email = :e", {"e": email})
    assert any(record.levelno == logging.ERROR for record in caplog.records)


async def test_no_token_ever_reaches_the_logs(
    client: Client, app: Quart, mailbox: Mailbox, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    await register(client)
    verify = await mailed_token(mailbox, EMAIL, "/auth/verify-email/")
    await client.post("/api/auth/verify-email", json={"token": verify})
    await client.post("/api/auth/forgot-password", json={"email": EMAIL})
    reset = await mailed_token(mailbox, EMAIL, "/auth/reset-password/", count=2)
    await client.post("/api/auth/reset-password", json={"token": reset, "password": NEW_PASSWORD})
    await drain(app)
    # Everything logged but the test SMTP server's own debug log (aiosmtpd's "mail.log").
    logged = "\n".join(r.getMessage() for r in caplog.records if r.name != "mail.log")
    assert "registered user" in logged  # the logs were captured
    for secret in (verify, reset, PASSWORD, NEW_PASSWORD):
        assert secret not in logged


def message_text(message: EmailMessage) -> str:
    part = message.get_body(preferencelist=("plain",))
    assert isinstance(part, EmailMessage)
    return str(part.get_content())
