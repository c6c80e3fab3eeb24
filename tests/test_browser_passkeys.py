"""Passkeys in a real browser: chromium's DevTools virtual authenticator (CTAP2, built in, with
resident keys and user verification) plays the person's device. They add a passkey on the
security page, sign out, sign in with the passkey alone, then with the password and the passkey
as the second factor, and remove it. The server is named `localhost` (WebAuthn takes no
address as a relying party) and runs as production does.

Every page is watched as in test_browser.py: a CSP violation, a script error or a request off
the site fails the test.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Browser, CDPSession, Page, expect
from quart import Quart

from tests.conftest import PASSWORD, fetch_val
from tests.mailbox import SmtpServer
from tests.servers import hypercorn
from tests.test_browser import (  # noqa: F401 (fixtures, found by pytest under these names)
    EMAIL,
    MakeUser,
    browser,
    open_context,
    pytestmark,
    screenshots,
    shoot,
)


@pytest.fixture
def localhost(
    app: Quart, database_url: str, tmp_path: Path, smtp_server: SmtpServer
) -> Iterator[str]:
    with hypercorn(
        database_url, tmp_path / "instance", smtp_server.url, host="localhost",
        AUTHAPP_COOKIE_SECURE="false",
    ) as base:  # fmt: skip
        yield base


NO_AUTOFILL = "PublicKeyCredential.isConditionalMediationAvailable = async () => false;"
# Records how each navigator.credentials.get() was asked (modal, or conditional: autofill).
RECORD_MEDIATION = """
window.mediations = [];
const get = navigator.credentials.get.bind(navigator.credentials);
navigator.credentials.get = (options) => {
  window.mediations.push(options.mediation || "modal");
  return get(options);
};
"""


async def virtual_authenticator(page: Page) -> tuple[CDPSession, str]:
    cdp = await page.context.new_cdp_session(page)
    await cdp.send("WebAuthn.enable", {"enableUI": False})
    added = await cdp.send(
        "WebAuthn.addVirtualAuthenticator",
        {
            "options": {
                "protocol": "ctap2",
                "transport": "internal",
                "hasResidentKey": True,
                "hasUserVerification": True,
                "isUserVerified": True,
                "automaticPresenceSimulation": True,
            }
        },
    )
    return cdp, str(added["authenticatorId"])


async def credentials(cdp: CDPSession, authenticator: str) -> list[dict[str, Any]]:
    found = await cdp.send("WebAuthn.getCredentials", {"authenticatorId": authenticator})
    return list(found["credentials"])


async def password_step(page: Page) -> None:
    await page.get_by_label("Email").fill(EMAIL)
    await page.get_by_label("Password").fill(PASSWORD)
    await page.get_by_role("button", name="Sign in", exact=True).click()


async def sign_out(page: Page) -> None:
    await page.get_by_role("button", name="Sign out").click()
    await expect(page.get_by_role("heading", level=1)).to_have_text("Sign in")


async def newest_amr(app: Quart) -> list[str]:
    amr = await fetch_val(app, "SELECT amr FROM sessions ORDER BY created_at DESC LIMIT 1")
    return list(amr)


async def test_a_person_adds_a_passkey_and_signs_in_with_it(
    app: Quart,
    make_user: MakeUser,
    localhost: str,
    browser: Browser,  # noqa: F811
    screenshots: Path,  # noqa: F811
) -> None:
    await make_user(EMAIL, display_name="Ada")
    context, watch = await open_context(browser, localhost)
    page = await context.new_page()
    # Headless chromium's passkey autofill list, opened by typing into the email field while
    # the login page's conditional request waits, takes the page's input and never closes:
    # this walk uses the buttons (the next test checks that autofill is asked for).
    await page.add_init_script(NO_AUTOFILL)
    cdp, authenticator = await virtual_authenticator(page)

    await page.goto("/auth/login")
    await password_step(page)
    await page.goto("/account/security")
    await expect(page.locator("#passkeys-none")).to_be_visible()
    await page.get_by_label("Name of the new passkey").fill("Laptop")
    await page.get_by_role("button", name="Add a passkey").click()
    await expect(page.locator("#passkeys")).to_contain_text("Laptop")
    await shoot(page, screenshots, "21-passkey-added.png")
    (stored,) = await credentials(cdp, authenticator)
    assert stored["isResidentCredential"] is True
    assert await fetch_val(app, "SELECT count(*) FROM webauthn_credentials") == 1

    # The passkey alone.
    await sign_out(page)
    await expect(page.get_by_role("button", name="Sign in with a passkey")).to_be_visible()
    await shoot(page, screenshots, "22-login-with-passkey.png")
    await page.get_by_role("button", name="Sign in with a passkey").click()
    await expect(page.get_by_role("button", name="Sign out")).to_be_visible()
    assert await newest_amr(app) == ["hwk", "user"]

    # The password, then the passkey as the second factor.
    await sign_out(page)
    await password_step(page)
    await expect(page.get_by_role("heading", level=1)).to_have_text("Two-factor sign-in")
    await shoot(page, screenshots, "23-passkey-second-factor.png")
    await page.get_by_role("button", name="Use a passkey").click()
    await expect(page.get_by_role("button", name="Sign out")).to_be_visible()
    assert await newest_amr(app) == ["pwd", "hwk"]

    # Removing it: the password alone signs in again.
    await page.goto("/account/security")
    await page.get_by_role("button", name="Remove Laptop").click()
    await expect(page.get_by_role("status")).to_contain_text("last second factor")
    await expect(page.locator("#passkeys-none")).to_be_visible()
    assert await fetch_val(app, "SELECT count(*) FROM webauthn_credentials") == 0
    watch.assert_clean()
    await context.close()


async def test_without_javascript_the_login_page_offers_only_the_password(
    make_user: MakeUser,
    localhost: str,
    browser: Browser,  # noqa: F811
) -> None:
    await make_user(EMAIL, display_name="Ada")
    context, watch = await open_context(browser, localhost, java_script_enabled=False)
    page = await context.new_page()
    await page.goto("/auth/login")
    await expect(page.get_by_role("button", name="Sign in with a passkey")).to_be_hidden()
    await password_step(page)
    await expect(page.get_by_role("button", name="Sign out")).to_be_visible()
    await page.goto("/account/security")
    await expect(page.get_by_text("Adding a passkey needs JavaScript")).to_be_visible()
    await expect(page.get_by_role("button", name="Add a passkey")).to_be_hidden()
    watch.assert_clean()
    await context.close()


async def test_the_login_page_asks_for_passkey_autofill(
    make_user: MakeUser,
    localhost: str,
    browser: Browser,  # noqa: F811
) -> None:
    context, watch = await open_context(browser, localhost)
    page = await context.new_page()
    await page.add_init_script(RECORD_MEDIATION)
    await virtual_authenticator(page)
    await page.goto("/auth/login")
    await expect(page.get_by_label("Email")).to_have_attribute("autocomplete", "username webauthn")
    # Polled from here: wait_for_function polls with code the page's CSP (no eval) refuses,
    # which failed the test whenever passkeys.js had not asked yet at the first look.
    for _ in range(100):
        if await page.evaluate("window.mediations.length") > 0:
            break
        await asyncio.sleep(0.1)
    assert await page.evaluate("window.mediations") == ["conditional"]
    watch.assert_clean()
    await context.close()
