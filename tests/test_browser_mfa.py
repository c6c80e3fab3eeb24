"""Two-factor sign-in in a real browser: a person sets up an authenticator app from the
security page (reading the secret's text, as one types it into an app), downloads the recovery
codes, then signs in with the password and a code, and with a recovery code. pyotp plays the
app at the real time: the server runs in its own process with its own clock.

Every page is watched as in test_browser.py: a CSP violation (the inline QR code's SVG among
them), a script error or a request off the site fails the test.
"""

from __future__ import annotations

import asyncio
import re
import time
from pathlib import Path

import pyotp
from playwright.async_api import Browser, Page, expect
from quart import Quart

from tests.conftest import PASSWORD
from tests.test_browser import (  # noqa: F401 (fixtures, found by pytest under these names)
    EMAIL,
    MakeUser,
    browser,
    open_context,
    pytestmark,
    screenshots,
    server,
    shoot,
    sign_in,
)

STEP = 30  # seconds of one authenticator code


async def code_after(step_used: int, secret: str) -> str:
    """The app's code of the first step after `step_used` (the server takes each step's code
    once), waiting for that step to begin if need be."""
    wait = (step_used + 1) * STEP - time.time()
    if wait > 0:
        await asyncio.sleep(wait + 0.2)
    return pyotp.TOTP(secret).now()


async def sign_out(page: Page) -> None:
    await page.get_by_role("button", name="Sign out").click()
    await expect(page.get_by_role("heading", level=1)).to_have_text("Sign in")


async def test_a_person_sets_up_two_factor_sign_in_and_signs_in_with_it(
    app: Quart,
    make_user: MakeUser,
    server: str,  # noqa: F811
    browser: Browser,  # noqa: F811
    screenshots: Path,  # noqa: F811
    tmp_path: Path,
) -> None:
    await make_user(EMAIL, display_name="Ada")
    context, watch = await open_context(browser, server, accept_downloads=True)
    page = await context.new_page()
    await page.goto("/auth/login")
    await sign_in(page, PASSWORD)
    await expect(page.get_by_role("heading", level=1)).to_have_text("Welcome, Ada")

    # The security page, from the nav: off, with the set-up a click away (just signed in).
    await page.get_by_role("link", name="Security").click()
    await expect(page).to_have_url(f"{server}/account/security")
    await expect(page.locator("#mfa-status")).to_contain_text("Two-factor sign-in is off")
    await page.get_by_role("button", name="Set up two-factor sign-in").click()

    # The QR code (inline SVG, no CSP complaint) and the secret as text to type in.
    qr = page.get_by_role("img", name="QR code to scan into your authenticator app")
    await expect(qr).to_be_visible()
    box = await qr.locator("svg").bounding_box()
    assert box is not None
    assert box["width"] >= 150
    secret_text = await page.locator("#secret").inner_text()
    assert re.fullmatch(r"([A-Z2-7]{4} )+[A-Z2-7]{1,4}", secret_text), secret_text
    secret = secret_text.replace(" ", "")
    code_field = page.get_by_label("Six-digit code")
    await expect(code_field).to_have_attribute("autocomplete", "one-time-code")
    await expect(code_field).to_have_attribute("inputmode", "numeric")
    await shoot(page, screenshots, "16-mfa-set-up.png")
    step_used = int(time.time()) // STEP
    await code_field.fill(pyotp.TOTP(secret).at(step_used * STEP))
    await page.get_by_role("button", name="Turn on two-factor sign-in").click()

    # The recovery codes, shown this once, and as a text file the link carries.
    await expect(page.get_by_role("heading", level=1)).to_have_text("Your recovery codes")
    await expect(page.get_by_role("status")).to_contain_text("Two-factor sign-in is on.")
    shown = await page.locator("#recovery-codes code").all_inner_texts()
    assert len(shown) == 10
    await shoot(page, screenshots, "17-mfa-recovery-codes.png")
    async with page.expect_download() as download_info:
        await page.get_by_role("link", name="Download the codes (.txt)").click()
    download = await download_info.value
    assert download.suggested_filename == "authapp-recovery-codes.txt"
    saved = tmp_path / download.suggested_filename
    await download.save_as(saved)
    lines = saved.read_text(encoding="utf-8").splitlines()
    assert lines[0] == f"Recovery codes for {EMAIL} at {server.removeprefix('http://')}"
    codes = [line for line in lines if re.fullmatch(r"[a-z2-9]{4}-[a-z2-9]{4}-[a-z2-9]{2}", line)]
    assert codes == shown

    # Signing in now takes the password, then a code from the app.
    await sign_out(page)
    await sign_in(page, PASSWORD)
    await expect(page).to_have_url(f"{server}/auth/mfa?next=/")
    await expect(page.get_by_role("heading", level=1)).to_have_text("Two-factor sign-in")
    await expect(page.get_by_label("Code", exact=True)).to_be_focused()
    await shoot(page, screenshots, "18-mfa-second-step.png")
    await page.get_by_label("Code", exact=True).fill(await code_after(step_used, secret))
    await page.get_by_role("button", name="Sign in", exact=True).click()
    await expect(page.get_by_role("heading", level=1)).to_have_text("Welcome, Ada")

    # Or the password, then one of the recovery codes from the file.
    await sign_out(page)
    await sign_in(page, PASSWORD)
    await page.get_by_role("link", name="Use a recovery code instead").click()
    await expect(page).to_have_url(f"{server}/auth/mfa?method=recovery&next=/")
    await page.get_by_label("Recovery code").fill(codes[0])
    await shoot(page, screenshots, "19-mfa-recovery-code.png")
    await page.get_by_role("button", name="Sign in", exact=True).click()
    await expect(page.get_by_role("heading", level=1)).to_have_text("Welcome, Ada")
    await page.get_by_role("link", name="Security").click()
    await expect(page.locator("#codes-left")).to_have_text("9 of 10 recovery codes left")
    await shoot(page, screenshots, "20-mfa-security-on.png")
    await context.close()
    watch.assert_clean()
