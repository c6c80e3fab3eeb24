"""Two-factor sign-in through the JSON API: enrolment, the pending sign-in, codes (drift, replay),
recovery codes, switching off, re-authentication with a code. Codes are computed by pyotp from
the secret the API returned, at the app's controlled clock."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from email.message import EmailMessage
from typing import Any

import pyotp
import pytest
from quart import Quart
from quart.typing import TestClientProtocol as Client

from authapp.models.users import User
from tests.conftest import PASSWORD, Clock, execute, fetch_val
from tests.mailbox import Mailbox
from tests.test_lifecycle import token_of

MakeUser = Callable[..., Awaitable[User]]
EMAIL = "alice@example.com"


def mid_step(clock: Clock) -> None:
    """Move the clock on to the middle of a 30-second step, so one step of drift is exactly
    30 seconds either way (never back: rows written before must not be from the future)."""
    seconds = int(clock.now.timestamp()) // 30 * 30 + 45
    clock.set(datetime.fromtimestamp(seconds, UTC))


def code_at(secret: str, moment: datetime, steps: int = 0) -> str:
    return pyotp.TOTP(secret).at(moment, counter_offset=steps)


async def enrol(client: Client, clock: Clock) -> tuple[str, list[str]]:
    """Turn the authenticator on for the signed-in client; its secret and recovery codes."""
    started = await client.post("/api/me/mfa/totp")
    assert started.status_code == 200, await started.get_data(as_text=True)
    secret = (await started.get_json())["secret"]
    confirmed = await client.post(
        "/api/me/mfa/totp/confirm", json={"code": code_at(secret, clock.now)}
    )
    assert confirmed.status_code == 200, await confirmed.get_data(as_text=True)
    clock.advance(seconds=90)  # the step before the next code's is unused too
    return secret, (await confirmed.get_json())["recovery_codes"]


def subjects(messages: list[EmailMessage]) -> list[str]:
    return [str(message["Subject"]) for message in messages]


async def mail_with_subject(mailbox: Mailbox, subject: str) -> EmailMessage:
    for _ in range(200):
        found = [each for each in mailbox.messages if str(each["Subject"]) == subject]
        if found:
            return found[-1]
        await asyncio.sleep(0.02)
    raise AssertionError(f"no mail {subject!r}; arrived: {subjects(mailbox.messages)}")


def text_of(message: EmailMessage) -> str:
    body = message.get_body(preferencelist=("plain",))
    assert isinstance(body, EmailMessage)
    return str(body.get_content())


async def password_step(client: Client, password: str = PASSWORD) -> Any:
    return await client.post("/api/auth/login", json={"email": EMAIL, "password": password})


@pytest.fixture
async def enrolled(app: Quart, signed_in: Client, clock: Clock) -> tuple[Client, str, list[str]]:
    mid_step(clock)
    secret, codes = await enrol(signed_in, clock)
    return signed_in, secret, codes


async def test_enrolment_returns_a_secret_a_uri_and_an_inline_svg(
    signed_in: Client, clock: Clock
) -> None:
    mid_step(clock)
    response = await signed_in.post("/api/me/mfa/totp")
    assert response.status_code == 200
    body = await response.get_json()
    assert pyotp.TOTP(body["secret"]).now()  # base32 that pyotp takes
    assert body["otpauth_uri"].startswith("otpauth://totp/authapp:alice%40example.com?")
    assert "issuer=authapp" in body["otpauth_uri"]
    assert body["qr_svg"].startswith("<svg")
    assert "<script" not in body["qr_svg"]
    # Not on yet: the sign-in still takes the password alone.
    status = await (await signed_in.get("/api/me/mfa")).get_json()
    assert status == {"totp": False, "recovery_codes_left": 0, "methods": []}


async def test_the_secret_is_stored_encrypted(
    app: Quart, enrolled: tuple[Client, str, list[str]]
) -> None:
    _, secret, _ = enrolled
    stored = await fetch_val(app, "SELECT secret_encrypted FROM mfa_totp")
    assert secret.lower() not in stored.lower()
    assert await fetch_val(app, "SELECT count(*) FROM mfa_recovery_codes") == 10


async def test_confirm_turns_it_on_and_shows_ten_recovery_codes(
    enrolled: tuple[Client, str, list[str]], mailbox: Mailbox
) -> None:
    client, _, codes = enrolled
    assert len(set(codes)) == 10
    for code in codes:
        assert len(code.replace("-", "")) == 10
        assert not set(code.replace("-", "")) & set("01ilo")
    status = await (await client.get("/api/me/mfa")).get_json()
    assert status == {"totp": True, "recovery_codes_left": 10, "methods": ["totp", "recovery_code"]}
    assert subjects(await mailbox.wait_for(1, EMAIL)) == ["Two-factor sign-in is on"]


async def test_a_second_enrolment_is_refused_once_on(
    enrolled: tuple[Client, str, list[str]],
) -> None:
    client, _, _ = enrolled
    response = await client.post("/api/me/mfa/totp")
    assert response.status_code == 409
    assert (await response.get_json())["code"] == "MFA_ALREADY_ENABLED"


async def test_confirm_without_a_pending_enrolment_is_409(signed_in: Client) -> None:
    response = await signed_in.post("/api/me/mfa/totp/confirm", json={"code": "123456"})
    assert response.status_code == 409
    assert (await response.get_json())["code"] == "MFA_NOT_PENDING"


async def test_a_wrong_first_code_leaves_it_off(signed_in: Client, clock: Clock) -> None:
    mid_step(clock)
    secret = (await (await signed_in.post("/api/me/mfa/totp")).get_json())["secret"]
    wrong = code_at(secret, clock.now, steps=3)
    response = await signed_in.post("/api/me/mfa/totp/confirm", json={"code": wrong})
    assert response.status_code == 400
    assert (await response.get_json())["code"] == "MFA_CODE_INVALID"
    assert (await (await signed_in.get("/api/me/mfa")).get_json())["totp"] is False


async def test_password_then_code_signs_in(
    app: Quart, enrolled: tuple[Client, str, list[str]], clock: Clock
) -> None:
    _, secret, _ = enrolled
    client = app.test_client()
    first = await password_step(client)
    assert first.status_code == 202
    assert await first.get_json() == {"mfa_required": True, "methods": ["totp", "recovery_code"]}
    cookies = first.headers.getlist("Set-Cookie")
    assert not any(value.startswith("__Host-authapp_session") for value in cookies)
    pending = [value for value in cookies if value.startswith("__Host-authapp_mfa=")]
    assert len(pending) == 1
    for attribute in ("HttpOnly", "Secure", "SameSite=Strict", "Path=/", "Max-Age=300"):
        assert attribute in pending[0]
    assert (await client.get("/api/me")).status_code == 401  # no session yet

    second = await client.post("/api/auth/mfa", json={"code": code_at(secret, clock.now)})
    assert second.status_code == 200, await second.get_data(as_text=True)
    assert (await second.get_json())["email"] == EMAIL
    assert (await client.get("/api/me")).status_code == 200
    sessions = (await (await client.get("/api/sessions")).get_json())["sessions"]
    current = next(item for item in sessions if item["current"])
    assert current["amr"] == ["pwd", "otp"]
    # The pending sign-in was single use.
    again = await client.post("/api/auth/mfa", json={"code": code_at(secret, clock.now, 1)})
    assert again.status_code == 401
    assert (await again.get_json())["code"] == "MFA_PENDING_EXPIRED"


@pytest.mark.parametrize(("steps", "accepted"), [(-2, False), (-1, True), (1, True), (2, False)])
async def test_one_step_of_drift_either_way(
    app: Quart, enrolled: tuple[Client, str, list[str]], clock: Clock, steps: int, accepted: bool
) -> None:
    _, secret, _ = enrolled
    client = app.test_client()
    assert (await password_step(client)).status_code == 202
    response = await client.post("/api/auth/mfa", json={"code": code_at(secret, clock.now, steps)})
    assert response.status_code == (200 if accepted else 400)


async def test_a_code_is_accepted_once(
    app: Quart, enrolled: tuple[Client, str, list[str]], clock: Clock
) -> None:
    _, secret, _ = enrolled
    code = code_at(secret, clock.now)
    first, second = app.test_client(), app.test_client()
    assert (await password_step(first)).status_code == 202
    assert (await password_step(second)).status_code == 202
    assert (await first.post("/api/auth/mfa", json={"code": code})).status_code == 200
    replayed = await second.post("/api/auth/mfa", json={"code": code})
    assert replayed.status_code == 400
    assert (await replayed.get_json())["code"] == "MFA_CODE_INVALID"
    # An older step after a newer one is a replay too.
    older = code_at(secret, clock.now, -1)
    assert (await second.post("/api/auth/mfa", json={"code": older})).status_code == 400


async def test_the_pending_sign_in_dies_after_five_wrong_codes(
    app: Quart, enrolled: tuple[Client, str, list[str]], clock: Clock
) -> None:
    _, secret, _ = enrolled
    client = app.test_client()
    assert (await password_step(client)).status_code == 202
    wrong = code_at(secret, clock.now, 5)
    for _ in range(5):
        response = await client.post("/api/auth/mfa", json={"code": wrong})
        assert response.status_code == 400
    right = await client.post("/api/auth/mfa", json={"code": code_at(secret, clock.now)})
    assert right.status_code == 401
    assert (await right.get_json())["code"] == "MFA_PENDING_EXPIRED"
    failed = "SELECT count(*) FROM security_events WHERE kind = 'mfa_failed'"
    assert await fetch_val(app, failed) == 5


async def test_the_pending_sign_in_expires_after_five_minutes(
    app: Quart, enrolled: tuple[Client, str, list[str]], clock: Clock
) -> None:
    _, secret, _ = enrolled
    client = app.test_client()
    assert (await password_step(client)).status_code == 202
    clock.advance(minutes=5, seconds=1)
    response = await client.post("/api/auth/mfa", json={"code": code_at(secret, clock.now)})
    assert response.status_code == 401
    assert (await response.get_json())["code"] == "MFA_PENDING_EXPIRED"


@pytest.mark.parametrize(
    "cookie",
    ["", "tampered", "A" * 43],  # none, not a reference, a well-formed stranger
)
async def test_no_or_a_forged_pending_cookie_is_401(
    app: Quart, enrolled: tuple[Client, str, list[str]], clock: Clock, cookie: str
) -> None:
    _, secret, _ = enrolled
    client = app.test_client()
    assert (await password_step(client)).status_code == 202
    client.cookie_jar.clear()
    if cookie:
        client.set_cookie("localhost", "__Host-authapp_mfa", cookie)
    response = await client.post("/api/auth/mfa", json={"code": code_at(secret, clock.now)})
    assert response.status_code == 401
    assert (await response.get_json())["code"] == "MFA_PENDING_EXPIRED"


async def test_a_password_reset_keeps_mfa_and_ends_the_pending_sign_in(
    app: Quart, enrolled: tuple[Client, str, list[str]], clock: Clock, mailbox: Mailbox
) -> None:
    _, secret, _ = enrolled
    waiting = app.test_client()
    assert (await password_step(waiting)).status_code == 202
    stranger = app.test_client()
    await stranger.post("/api/auth/forgot-password", json={"email": EMAIL})
    message = await mail_with_subject(mailbox, "Reset your password")
    token = token_of(mailbox.link(message, "/auth/reset-password/"))
    new_password = "a brand new passphrase 2026"
    reset = await stranger.post(
        "/api/auth/reset-password", json={"token": token, "password": new_password}
    )
    assert reset.status_code == 204
    dead = await waiting.post("/api/auth/mfa", json={"code": code_at(secret, clock.now)})
    assert dead.status_code == 401
    # The new password still asks for the second factor.
    assert (await password_step(stranger, new_password)).status_code == 202


async def test_a_recovery_code_signs_in_once_and_mails_a_notice(
    app: Quart, enrolled: tuple[Client, str, list[str]], mailbox: Mailbox
) -> None:
    client, _, codes = enrolled
    first = app.test_client()
    assert (await password_step(first)).status_code == 202
    typed = codes[0].upper().replace("-", " ")  # as a person may type it
    response = await first.post("/api/auth/mfa", json={"recovery_code": typed})
    assert response.status_code == 200, await response.get_data(as_text=True)
    sessions = (await (await first.get("/api/sessions")).get_json())["sessions"]
    assert next(item for item in sessions if item["current"])["amr"] == ["pwd", "recovery"]
    notice = await mail_with_subject(mailbox, "A recovery code was used")
    assert "9 unused codes are left" in text_of(notice)
    assert (await (await client.get("/api/me/mfa")).get_json())["recovery_codes_left"] == 9

    second = app.test_client()
    assert (await password_step(second)).status_code == 202
    reused = await second.post("/api/auth/mfa", json={"recovery_code": codes[0]})
    assert reused.status_code == 400
    assert (await reused.get_json())["code"] == "MFA_CODE_INVALID"


async def test_regenerated_codes_replace_the_old_ones(
    app: Quart, enrolled: tuple[Client, str, list[str]]
) -> None:
    client, _, old = enrolled
    response = await client.post("/api/me/mfa/recovery-codes")
    assert response.status_code == 200
    new = (await response.get_json())["recovery_codes"]
    assert len(new) == 10
    assert not set(new) & set(old)
    other = app.test_client()
    assert (await password_step(other)).status_code == 202
    assert (await other.post("/api/auth/mfa", json={"recovery_code": old[1]})).status_code == 400
    assert (await other.post("/api/auth/mfa", json={"recovery_code": new[1]})).status_code == 200


async def test_switching_off_needs_a_code_and_ends_it(
    app: Quart, enrolled: tuple[Client, str, list[str]], clock: Clock, mailbox: Mailbox
) -> None:
    client, secret, codes = enrolled
    wrong = await client.delete("/api/me/mfa/totp", json={"code": code_at(secret, clock.now, 4)})
    assert wrong.status_code == 400
    response = await client.delete("/api/me/mfa/totp", json={"code": code_at(secret, clock.now)})
    assert response.status_code == 204
    assert await fetch_val(app, "SELECT count(*) FROM mfa_recovery_codes") == 0
    assert (await password_step(app.test_client())).status_code == 200
    again = await client.delete("/api/me/mfa/totp", json={"recovery_code": codes[2]})
    assert again.status_code == 409
    assert (await again.get_json())["code"] == "MFA_NOT_ENABLED"
    await mail_with_subject(mailbox, "Two-factor sign-in is off")


async def test_turning_it_on_signs_out_the_other_sessions(
    app: Quart, make_user: MakeUser, clock: Clock
) -> None:
    mid_step(clock)
    await make_user()
    intruder, owner = app.test_client(), app.test_client()
    for client in (intruder, owner):
        assert (await password_step(client)).status_code == 200
    await enrol(owner, clock)
    assert (await intruder.get("/api/me")).status_code == 401
    assert (await owner.get("/api/me")).status_code == 200


async def test_a_code_makes_the_session_fresh(
    app: Quart, enrolled: tuple[Client, str, list[str]], clock: Clock
) -> None:
    client, secret, _ = enrolled
    clock.advance(minutes=20)  # past AUTHAPP_FRESHNESS
    stale = await client.post("/api/me/mfa/recovery-codes")
    assert stale.status_code == 401
    assert (await stale.get_json())["code"] == "REAUTH_REQUIRED"
    reauth = await client.post("/api/auth/reauth", json={"code": code_at(secret, clock.now)})
    assert reauth.status_code == 204, await reauth.get_data(as_text=True)
    assert (await client.post("/api/me/mfa/recovery-codes")).status_code == 200


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({}, 400, "VALIDATION_ERROR"),
        ({"code": "123456", "recovery_code": "abcd-efgh-jk"}, 400, "VALIDATION_ERROR"),
        ({"code": 123456}, 400, "VALIDATION_ERROR"),
        # Full-width digits and letters: Unicode's, never a code's.
        (
            {"code": "\uff11\uff12\uff13\uff14\uff15\uff16"},
            400,
            "MFA_CODE_INVALID",
        ),  # full-width digits are not digits here
        ({"code": "12345"}, 400, "MFA_CODE_INVALID"),
        ({"recovery_code": "not-a-code"}, 400, "MFA_CODE_INVALID"),
        ({"recovery_code": "\uff4b\uff17fq-29xm-pd"}, 400, "MFA_CODE_INVALID"),
    ],
)
async def test_bad_second_steps(
    app: Quart,
    enrolled: tuple[Client, str, list[str]],
    body: dict[str, Any],
    status: int,
    code: str,
) -> None:
    client = app.test_client()
    assert (await password_step(client)).status_code == 202
    response = await client.post("/api/auth/mfa", json=body)
    assert response.status_code == status
    assert (await response.get_json())["code"] == code


async def test_wrong_codes_count_on_the_account_lockout(
    app: Quart, enrolled: tuple[Client, str, list[str]], clock: Clock
) -> None:
    _, secret, _ = enrolled
    await execute(app, "UPDATE users SET failed_logins = 0")
    client = app.test_client()
    assert (await password_step(client)).status_code == 202
    for _ in range(3):
        await client.post("/api/auth/mfa", json={"code": code_at(secret, clock.now, 7)})
    # The right password counted nothing and forgave nothing; the three codes count.
    assert await fetch_val(app, "SELECT failed_logins FROM users") == 3
    assert (await password_step(app.test_client())).status_code == 202
    assert await fetch_val(app, "SELECT failed_logins FROM users") == 3
    # Only the second factor forgives.
    done = await client.post("/api/auth/mfa", json={"code": code_at(secret, clock.now)})
    assert done.status_code == 200
    assert await fetch_val(app, "SELECT failed_logins FROM users") == 0


# The second-factor routes that need a fresh sign-in (tests/blueprints/test_api_sessions.py
# walks the app for every fresh route), each with a body it could take.
NO_PASSKEY = "00000000-0000-4000-8000-000000000000"  # a fresh session is asked for first
MFA_FRESH_ROUTES: dict[str, tuple[str, str, dict[str, Any] | None]] = {
    "api.start_totp": ("POST", "/api/me/mfa/totp", None),
    "api.confirm_totp": ("POST", "/api/me/mfa/totp/confirm", {"code": "123456"}),
    "api.regenerate_recovery_codes": ("POST", "/api/me/mfa/recovery-codes", None),
    "api.disable_totp": ("DELETE", "/api/me/mfa/totp", {"code": "123456"}),
    "api.passkey_registration_options": ("POST", "/api/me/passkeys/options", None),
    "api.add_passkey": ("POST", "/api/me/passkeys", {"credential": {"id": "AAAA"}}),
    "api.rename_passkey": ("PATCH", f"/api/me/passkeys/{NO_PASSKEY}", {"name": "Phone"}),
    "api.remove_passkey": ("DELETE", f"/api/me/passkeys/{NO_PASSKEY}", None),
}


@pytest.mark.settings(RATE_LIMIT_ENABLED="false")
@pytest.mark.parametrize("endpoint", MFA_FRESH_ROUTES)
async def test_a_stale_session_changes_no_second_factor(
    app: Quart, enrolled: tuple[Client, str, list[str]], clock: Clock, endpoint: str
) -> None:
    client, _, _ = enrolled
    method, path, body = MFA_FRESH_ROUTES[endpoint]
    clock.advance(minutes=16)
    before = await fetch_val(app, "SELECT row(t.*)::text FROM mfa_totp t")
    codes = await fetch_val(app, "SELECT string_agg(digest::text, ',') FROM mfa_recovery_codes")
    response = await client.open(path, method=method, json=body)
    assert response.status_code == 401
    assert (await response.get_json())["code"] == "REAUTH_REQUIRED"
    assert await fetch_val(app, "SELECT row(t.*)::text FROM mfa_totp t") == before
    assert (
        await fetch_val(app, "SELECT string_agg(digest::text, ',') FROM mfa_recovery_codes")
        == codes
    )
