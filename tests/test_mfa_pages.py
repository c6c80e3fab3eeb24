"""Two-factor sign-in through the pages: the security page (set up, recovery codes, new codes,
turning off), the sign-in's second step (/auth/mfa), confirming a session with a code, and
AUTHAPP_MFA_REQUIRED sending a browser to set up first. Codes come from pyotp at the app's
controlled clock."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import unquote

import pytest
from quart import Quart
from quart.typing import TestClientProtocol as Client

from authapp.models.users import User
from authapp.web.enrolment import is_enrolment_allowed
from tests.conftest import PASSWORD, Clock, fetch_val
from tests.forms import (
    HTML,
    api_client,
    csrf_from,
    field_error,
    flashes,
    form_login,
    page_text,
    post_form,
)
from tests.test_mfa import code_at, mid_step
from tests.test_page_markup import check_headers, check_markup

MakeUser = Callable[..., Awaitable[User]]
SECURITY = "/account/security"


def secret_on(html: str) -> str:
    """The secret as the page shows it for typing in, without the spaces that group it."""
    match = re.search(r'<code class="secret" id="secret">([A-Z2-7 ]+)</code>', html)
    assert match is not None, html
    return match[1].replace(" ", "")


def codes_on(html: str) -> list[str]:
    return re.findall(r"<li><code>([a-z0-9-]+)</code></li>", html)


def download_of(html: str) -> str:
    """The text file the download link carries in its data: URL."""
    match = re.search(
        r'<a class="button" href="data:text/plain;charset=utf-8,([^"]+)" '
        r'download="authapp-recovery-codes.txt">',
        html,
    )
    assert match is not None, html
    return unquote(match[1])


async def set_up(client: Client, clock: Clock) -> tuple[str, list[str]]:
    """Turn the authenticator on through the security page; its secret and recovery codes."""
    started = await post_form(client, f"{SECURITY}/setup", {}, SECURITY)
    assert started.status_code == 200, await page_text(started)
    secret = secret_on(await page_text(started))
    code = code_at(secret, clock.now)
    confirmed = await post_form(client, f"{SECURITY}/confirm", {"code": code}, SECURITY)
    assert confirmed.status_code == 200, await page_text(confirmed)
    clock.advance(seconds=90)  # on to a step whose code nobody used yet
    return secret, codes_on(await page_text(confirmed))


async def signed_in_page(client: Client) -> Client:
    response = await form_login(client, await csrf_from(client))
    assert response.status_code == 302, await page_text(response)
    return client


@pytest.fixture
async def page_client(client: Client, make_user: MakeUser, clock: Clock) -> Client:
    """Alice, signed in by the login form, in the middle of a 30-second step."""
    mid_step(clock)
    await make_user(display_name="Alice")
    return await signed_in_page(client)


@pytest.fixture
async def enrolled(page_client: Client, clock: Clock) -> tuple[Client, str, list[str]]:
    secret, codes = await set_up(page_client, clock)
    return page_client, secret, codes


async def password_step(app: Quart, next_path: str = "/account") -> tuple[Client, Any]:
    """A new browser that signs in with the password; the answer that asks for the code."""
    client = app.test_client()
    token = await csrf_from(client)
    return client, await form_login(client, token, next=next_path)


# --- the security page ------------------------------------------------------------------------


@pytest.mark.parametrize("stale", [False, True], ids=["fresh", "stale"])
async def test_the_security_page_while_off(page_client: Client, clock: Clock, stale: bool) -> None:
    if stale:
        clock.advance(minutes=16)
    response = await page_client.get(SECURITY, headers=HTML)
    assert response.status_code == 200
    html = await page_text(response)
    check_markup(html)
    check_headers(response)
    assert re.search(r'<p id="mfa-status">Two-factor sign-in is <strong>off</strong>', html)
    assert ('action="/account/security/setup"' in html) is not stale
    assert ('href="/auth/reauth?next=/account/security"' in html) is stale
    assert "Recovery codes" not in html
    assert "/account/security/disable" not in html


@pytest.mark.parametrize("stale", [False, True], ids=["fresh", "stale"])
async def test_the_security_page_while_on(
    enrolled: tuple[Client, str, list[str]], clock: Clock, stale: bool
) -> None:
    client, _, _ = enrolled
    if stale:
        clock.advance(minutes=16)
    response = await client.get(SECURITY, headers=HTML)
    assert response.status_code == 200
    html = await page_text(response)
    check_markup(html)
    assert re.search(r'<p id="mfa-status">Two-factor sign-in is <strong>on</strong>', html)
    assert '<p id="codes-left">10 of 10 recovery codes left</p>' in html
    for form in ("recovery-codes", "disable"):
        assert (f'action="/account/security/{form}"' in html) is not stale
    # Two for the authenticator's forms, one for the passkeys'.
    assert html.count('href="/auth/reauth?next=/account/security"') == (3 if stale else 0)
    assert 'action="/account/security/setup"' not in html


async def test_the_account_page_and_the_nav_link_to_it(page_client: Client) -> None:
    for path in ("/", "/account"):
        html = await page_text(await page_client.get(path, headers=HTML))
        assert 'href="/account/security"' in html
    account = await page_text(await page_client.get("/account", headers=HTML))
    assert "Set up two-factor sign-in</a>" in account


async def test_set_up_confirm_and_the_codes_shown_once(
    app: Quart, page_client: Client, clock: Clock
) -> None:
    elsewhere = await api_client(app)  # another device, signed out when it goes on
    started = await post_form(page_client, f"{SECURITY}/setup", {}, SECURITY)
    assert started.status_code == 200
    html = await page_text(started)
    check_markup(html)
    check_headers(started)
    # The QR code inline (no style attribute: check_markup), named for screen readers.
    assert re.search(r'<div class="qr" id="qr" role="img" aria-label="[^"]+"><svg ', html)
    grouped = re.search(r'<code class="secret" id="secret">([^<]+)</code>', html)
    assert grouped is not None
    assert re.fullmatch(r"([A-Z2-7]{4} )+[A-Z2-7]{1,4}", grouped[1])
    secret = secret_on(html)
    assert re.search(
        r'<input id="code" name="code" type="text" value="" autocomplete="one-time-code" '
        r'inputmode="numeric" required>',
        html,
    )
    assert (await fetch_val(app, "SELECT confirmed_at FROM mfa_totp")) is None

    confirmed = await post_form(
        page_client, f"{SECURITY}/confirm", {"code": code_at(secret, clock.now)}, SECURITY
    )
    assert confirmed.status_code == 200
    html = await page_text(confirmed)
    check_markup(html)
    codes = codes_on(html)
    assert len(codes) == 10
    assert len(set(codes)) == 10
    assert all(re.fullmatch(r"[a-z2-9]{4}-[a-z2-9]{4}-[a-z2-9]{2}", code) for code in codes)
    text = download_of(html)
    assert text.startswith("Recovery codes for alice@example.com at localhost\n")
    assert text.splitlines()[3:13] == codes
    assert "Every other session of your account was signed out" in html
    assert (await elsewhere.get("/api/me")).status_code == 401
    # Shown once: the page again shows only how many are left.
    again = await page_text(await page_client.get(SECURITY, headers=HTML))
    assert '<p id="codes-left">10 of 10 recovery codes left</p>' in again
    assert not set(codes) & set(codes_on(again))
    assert codes[0] not in again


async def test_a_wrong_first_code_shows_the_form_again(
    app: Quart, page_client: Client, clock: Clock
) -> None:
    started = await post_form(page_client, f"{SECURITY}/setup", {}, SECURITY)
    secret = secret_on(await page_text(started))
    wrong = {"code": code_at(secret, clock.now, steps=3)}
    response = await post_form(page_client, f"{SECURITY}/confirm", wrong, SECURITY)
    assert response.status_code == 400
    html = await page_text(response)
    check_markup(html)
    assert field_error(html, "code") == WRONG
    assert 'action="/account/security/setup"' in html  # start over, for a new QR code
    assert (await fetch_val(app, "SELECT confirmed_at FROM mfa_totp")) is None
    right = {"code": code_at(secret, clock.now)}
    assert (await post_form(page_client, f"{SECURITY}/confirm", right, SECURITY)).status_code == 200


async def test_new_recovery_codes_replace_the_old_ones(
    app: Quart, enrolled: tuple[Client, str, list[str]]
) -> None:
    client, _, old = enrolled
    response = await post_form(client, f"{SECURITY}/recovery-codes", {}, SECURITY)
    assert response.status_code == 200
    html = await page_text(response)
    new = codes_on(html)
    assert len(new) == 10
    assert not set(new) & set(old)
    assert download_of(html).splitlines()[3:13] == new
    assert "was signed out" not in html  # new codes sign no one out
    other, asked = await password_step(app)
    assert asked.status_code == 302
    old_code = await post_form(other, "/auth/mfa", {"recovery_code": old[0]}, asked.location)
    assert old_code.status_code == 400
    new_code = await post_form(other, "/auth/mfa", {"recovery_code": new[0]}, asked.location)
    assert new_code.status_code == 302


@pytest.mark.parametrize("proof", ["code", "recovery_code"])
async def test_turning_it_off(
    app: Quart, enrolled: tuple[Client, str, list[str]], clock: Clock, proof: str
) -> None:
    client, secret, codes = enrolled
    value = code_at(secret, clock.now) if proof == "code" else codes[3]
    response = await post_form(client, f"{SECURITY}/disable", {proof: value}, SECURITY)
    assert response.status_code == 302
    assert response.location == SECURITY
    html = await page_text(await client.get(SECURITY, headers=HTML))
    assert flashes(html) == [
        "Two-factor sign-in is off, and your recovery codes with it. Every other session of "
        "your account was signed out."
    ]
    assert re.search(r'<p id="mfa-status">Two-factor sign-in is <strong>off</strong>', html)
    assert await fetch_val(app, "SELECT count(*) FROM mfa_recovery_codes") == 0
    _, signed_in = await password_step(app)
    assert signed_in.location == "/account"  # the password alone again


async def test_a_wrong_code_leaves_it_on(
    app: Quart, enrolled: tuple[Client, str, list[str]], clock: Clock
) -> None:
    client, secret, _ = enrolled
    wrong = {"code": code_at(secret, clock.now, steps=4)}
    response = await post_form(client, f"{SECURITY}/disable", wrong, SECURITY)
    assert response.status_code == 400
    html = await page_text(response)
    check_markup(html)
    assert field_error(html, "code") == WRONG
    assert await fetch_val(app, "SELECT count(*) FROM mfa_totp") == 1


async def test_changes_on_a_stale_session_confirm_first_with_a_code(
    enrolled: tuple[Client, str, list[str]], clock: Clock
) -> None:
    client, secret, _ = enrolled
    clock.advance(minutes=20)
    stale = await post_form(client, f"{SECURITY}/recovery-codes", {}, SECURITY)
    assert stale.status_code == 302
    assert stale.location == "/auth/reauth?next=/account/security"
    page = await client.get(stale.location, headers=HTML)
    html = await page_text(page)
    check_markup(html)
    assert re.search(
        r'<input id="code" name="code" type="text" value="" autocomplete="one-time-code" '
        r'inputmode="numeric" required>',
        html,
    )
    wrong = {"code": code_at(secret, clock.now, 3), "next": SECURITY}
    refused = await post_form(client, "/auth/reauth", wrong, stale.location)
    assert refused.status_code == 400
    assert field_error(await page_text(refused), "code") == "This code is wrong, used or expired."
    right = {"code": code_at(secret, clock.now), "next": SECURITY}
    confirmed = await post_form(client, "/auth/reauth", right, stale.location)
    assert confirmed.status_code == 302
    assert confirmed.location == SECURITY
    again = await post_form(client, f"{SECURITY}/recovery-codes", {}, SECURITY)
    assert again.status_code == 200


async def test_the_reauth_page_offers_a_code_only_with_an_authenticator(
    page_client: Client,
) -> None:
    html = await page_text(await page_client.get("/auth/reauth", headers=HTML))
    assert 'name="code"' not in html
    response = await post_form(page_client, "/auth/reauth", {"code": "123456"})
    assert response.status_code == 409  # the rules' MFA_NOT_ENABLED, on the error page
    assert "<code>MFA_NOT_ENABLED</code>" in await page_text(response)


# --- the sign-in's second step ----------------------------------------------------------------


async def test_password_then_code_signs_in_and_keeps_next(
    app: Quart, enrolled: tuple[Client, str, list[str]], clock: Clock
) -> None:
    _, secret, _ = enrolled
    client, asked = await password_step(app, "/account?tab=1")
    assert asked.status_code == 302
    assert asked.location == "/auth/mfa?next=/account%3Ftab%3D1"
    assert (await client.get("/account", headers=HTML)).status_code == 302  # no session yet
    page = await client.get(asked.location, headers=HTML)
    assert page.status_code == 200
    html = await page_text(page)
    check_markup(html)
    check_headers(page)
    assert re.search(
        r'<input id="code" name="code" type="text" value="" autocomplete="one-time-code" '
        r'inputmode="numeric" autofocus required>',
        html,
    )
    assert '<input type="hidden" name="next" value="/account?tab=1">' in html
    assert 'href="/auth/mfa?method=recovery&amp;next=/account%3Ftab%3D1"' in html

    form = {"code": code_at(secret, clock.now), "next": "/account?tab=1"}  # as the page has it
    done = await post_form(client, "/auth/mfa", form, asked.location)
    assert done.status_code == 302
    assert done.location == "/account?tab=1"
    assert (await client.get("/account", headers=HTML)).status_code == 200
    amr = await fetch_val(app, "SELECT amr FROM sessions ORDER BY created_at DESC LIMIT 1")
    assert list(amr) == ["pwd", "otp"]


async def test_an_unsafe_next_is_not_kept(
    app: Quart, enrolled: tuple[Client, str, list[str]]
) -> None:
    _, asked = await password_step(app, "https://evil.example/")
    assert asked.location == "/auth/mfa?next=/"


async def test_the_recovery_code_link_and_form(
    app: Quart, enrolled: tuple[Client, str, list[str]]
) -> None:
    owner, _, codes = enrolled
    client, _asked = await password_step(app)
    page = await client.get("/auth/mfa?method=recovery&next=/account", headers=HTML)
    html = await page_text(page)
    check_markup(html)
    assert re.search(
        r'<input id="recovery_code" name="recovery_code" type="text" value="" autocomplete="off" '
        r'autocapitalize="none" spellcheck="false" autofocus required',
        html,
    )
    assert 'name="code"' not in html
    assert 'href="/auth/mfa?next=/account"' in html  # back to the code form
    typed = codes[5].upper().replace("-", " ")
    done = await post_form(client, "/auth/mfa", {"recovery_code": typed, "next": "/account"},
                           "/auth/mfa?method=recovery&next=/account")  # fmt: skip
    assert done.status_code == 302
    assert done.location == "/account"
    status = await page_text(await owner.get(SECURITY, headers=HTML))
    assert '<p id="codes-left">9 of 10 recovery codes left</p>' in status
    amr = await fetch_val(app, "SELECT amr FROM sessions ORDER BY created_at DESC LIMIT 1")
    assert list(amr) == ["pwd", "recovery"]


async def test_a_wrong_code_shows_the_form_again_without_signing_in(
    app: Quart, enrolled: tuple[Client, str, list[str]], clock: Clock
) -> None:
    _, secret, _ = enrolled
    client, asked = await password_step(app)
    wrong = {"code": code_at(secret, clock.now, 5), "next": "/account"}
    response = await post_form(client, "/auth/mfa", wrong, asked.location)
    assert response.status_code == 400
    html = await page_text(response)
    check_markup(html)
    assert field_error(html, "code") == WRONG
    assert '<input type="hidden" name="next" value="/account">' in html
    assert (await client.get("/account", headers=HTML)).status_code == 302
    right = {"code": code_at(secret, clock.now), "next": "/account"}
    assert (await post_form(client, "/auth/mfa", right, asked.location)).status_code == 302


async def test_an_expired_sign_in_starts_over_with_a_message(
    app: Quart, enrolled: tuple[Client, str, list[str]], clock: Clock
) -> None:
    _, secret, _ = enrolled
    client, asked = await password_step(app)
    token = await csrf_from(client, asked.location)
    clock.advance(minutes=5, seconds=1)
    form = {"csrf_token": token, "code": code_at(secret, clock.now), "next": "/account"}
    response = await client.post("/auth/mfa", form=form, headers=HTML)
    assert response.status_code == 302
    assert response.location == "/auth/login?next=/account"
    login = await page_text(await client.get(response.location, headers=HTML))
    assert flashes(login) == [
        "This sign-in expired or was already used: sign in with your password again."
    ]
    # The pending sign-in's cookie went with it: the page now sends to the login page.
    gone = await client.get("/auth/mfa?next=/account", headers=HTML)
    assert gone.status_code == 302
    assert gone.location == "/auth/login?next=/account"


async def test_the_second_step_without_a_password_step_is_the_login_page(client: Client) -> None:
    response = await client.get("/auth/mfa?next=/account", headers=HTML)
    assert response.status_code == 302
    assert response.location == "/auth/login?next=/account"


REQUIRED = "This field is required."
WRONG = "This code is wrong, used or expired."
ONE_OF_TWO = "Fill in one of the two: a code from the app, or a recovery code."


def too_long(limit: int) -> str:
    return f"String should have at most {limit} characters"


@pytest.mark.parametrize(
    ("form", "status", "field", "message"),
    [
        ({}, 400, "code", REQUIRED),
        ({"code": ""}, 400, "code", REQUIRED),
        ({"code": "   "}, 400, "code", REQUIRED),
        ({"recovery_code": ""}, 400, "recovery_code", REQUIRED),
        ({"code": "12345"}, 400, "code", WRONG),
        ({"code": "\uff11\uff12\uff13\uff14\uff15\uff16"}, 400, "code", WRONG),  # full-width
        ({"code": "1" * 33}, 400, "code", too_long(32)),
        ({"recovery_code": "not-a-code"}, 400, "recovery_code", WRONG),
        ({"recovery_code": "x" * 65}, 400, "recovery_code", too_long(64)),
    ],
)
async def test_bad_second_steps(
    app: Quart,
    enrolled: tuple[Client, str, list[str]],
    form: dict[str, str],
    status: int,
    field: str,
    message: str,
) -> None:
    client, asked = await password_step(app)
    response = await post_form(client, "/auth/mfa", form, asked.location)
    assert response.status_code == status
    html = await page_text(response)
    check_markup(html)
    assert field_error(html, field) == message
    assert (await client.get("/account", headers=HTML)).status_code == 302


@pytest.mark.parametrize(
    ("path", "form", "status", "field", "message"),
    [
        ("confirm", {}, 400, "code", REQUIRED),
        ("confirm", {"code": " "}, 400, "code", REQUIRED),
        ("confirm", {"code": "1" * 33}, 400, "code", too_long(32)),
        ("confirm", {"code": "12345"}, 400, "code", WRONG),
        ("disable", {}, 400, "code", ONE_OF_TWO),
        ("disable", {"code": "123456", "recovery_code": "abcd-efgh-jk"}, 400, "code", ONE_OF_TWO),
        ("disable", {"code": "1" * 33}, 400, "code", too_long(32)),
        ("disable", {"recovery_code": "x" * 65}, 400, "recovery_code", too_long(64)),
        ("disable", {"recovery_code": "not-a-code"}, 400, "recovery_code", WRONG),
        ("/auth/reauth", {"code": ""}, 400, "code", REQUIRED),
        ("/auth/reauth", {"code": "1" * 33}, 400, "code", too_long(32)),
        ("/auth/reauth", {}, 400, "password", REQUIRED),
    ],
)
async def test_bad_security_forms(
    page_client: Client,
    clock: Clock,
    path: str,
    form: dict[str, str],
    status: int,
    field: str,
    message: str,
) -> None:
    if path == "confirm":  # a set-up waiting, as when its form is shown
        await post_form(page_client, f"{SECURITY}/setup", {}, SECURITY)
    else:
        await set_up(page_client, clock)
    target = path if path.startswith("/") else f"{SECURITY}/{path}"
    response = await post_form(page_client, target, form, SECURITY)
    assert response.status_code == status
    html = await page_text(response)
    check_markup(html)
    assert field_error(html, field) == message


@pytest.mark.parametrize("path", [f"{SECURITY}/setup", f"{SECURITY}/confirm"])
async def test_forms_of_another_state_lead_back_with_a_message(
    enrolled: tuple[Client, str, list[str]], path: str
) -> None:
    """Set-up on already, a code with nothing waiting: as when another tab changed it."""
    client, _, _ = enrolled
    response = await post_form(client, path, {"code": "123456"}, SECURITY)
    assert response.status_code == 302
    assert response.location == SECURITY
    assert len(flashes(await page_text(await client.get(SECURITY, headers=HTML)))) == 1


# --- AUTHAPP_MFA_REQUIRED ---------------------------------------------------------------------

# The pages an account without its required second factor still reaches.
PAGE_ENROLMENT = {"auth.logout", "auth.reauth_page", "auth.reauth", "security.security",
                  "security.start_setup", "security.confirm_setup", "security.regenerate_codes",
                  "security.disable", "security.rename_passkey",
                  "security.remove_passkey"}  # fmt: skip


def test_the_enrolment_pages_are_exactly_these(app: Quart) -> None:
    marked = {
        endpoint
        for endpoint, view in app.view_functions.items()
        if not endpoint.startswith("api.") and is_enrolment_allowed(view)
    }
    assert marked == PAGE_ENROLMENT


@pytest.mark.settings(MFA_REQUIRED="true")
async def test_mfa_required_sends_pages_to_set_up_first(page_client: Client, clock: Clock) -> None:
    for path in ("/", "/account", "/account/tokens", "/protected"):
        response = await page_client.get(path, headers=HTML)
        assert response.status_code == 302, path
        assert response.location == SECURITY
    page = await page_client.get(SECURITY, headers=HTML)
    assert page.status_code == 200
    assert (await page_client.get("/static/style.css")).status_code == 200  # the page has its look
    await set_up(page_client, clock)
    assert (await page_client.get("/", headers=HTML)).status_code == 200
    assert (await page_client.get("/account", headers=HTML)).status_code == 200


@pytest.mark.settings(MFA_REQUIRED="true")
async def test_mfa_required_still_lets_one_confirm_the_password_and_sign_out(
    page_client: Client, clock: Clock
) -> None:
    clock.advance(minutes=20)
    stale = await post_form(page_client, f"{SECURITY}/setup", {}, SECURITY)
    assert stale.location == "/auth/reauth?next=/account/security"
    assert (await page_client.get(stale.location, headers=HTML)).status_code == 200
    confirmed = await post_form(
        page_client, "/auth/reauth", {"password": PASSWORD, "next": SECURITY}, stale.location
    )
    assert confirmed.status_code == 302
    assert confirmed.location == SECURITY
    out = await post_form(page_client, "/auth/logout", {}, SECURITY)
    assert out.status_code == 302
    assert out.location == "/auth/login"
