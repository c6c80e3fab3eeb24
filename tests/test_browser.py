"""A person in a real browser: Playwright drives chromium through the pages and the API docs.

Every page is watched: a console error (a CSP violation shows up there), an uncaught script
error or a request to anywhere but this server fails the test. With AUTHAPP_SCREENSHOTS set
(`make screenshots`), the pages are saved there as PNGs; otherwise into a throwaway folder.
"""

from __future__ import annotations

import os
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from playwright.async_api import (
    Browser,
    BrowserContext,
    ConsoleMessage,
    Error,
    Page,
    Request,
    async_playwright,
    expect,
)
from quart import Quart

from authapp.models.users import User
from tests.conftest import PASSWORD, ROOT, execute, fetch_val
from tests.forms import FIREFOX
from tests.mailbox import Mailbox, SmtpServer
from tests.servers import clean_env, hypercorn

CHROMIUM = os.environ.get("AUTHAPP_CHROMIUM", "/usr/bin/chromium")
# This machine reaches no internet: nothing in the background may try.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-quic",
    "--no-first-run",
    "--disable-component-update",
    "--disable-sync",
]

pytestmark = pytest.mark.skipif(
    not (os.path.isfile(CHROMIUM) and os.access(CHROMIUM, os.X_OK)),
    reason=f"chromium is not installed at {CHROMIUM} "
    "(apt-get install chromium; .ci/run installs it)",
)

EMAIL = "ada@example.com"
NEW_PASSWORD = "a brand new passphrase 2026"
MakeUser = Callable[..., Awaitable[User]]
DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}
BACKGROUND = "getComputedStyle(document.body).backgroundColor"
STARTED_AN_HOUR_AGO = """UPDATE sessions SET created_at = created_at - interval '1 hour',
                                          authenticated_at = authenticated_at - interval '1 hour'"""


@pytest.fixture
def server(app: Quart, database_url: str, tmp_path: Path, smtp_server: SmtpServer) -> Iterator[str]:
    """hypercorn as production runs it, but with cookies a browser keeps on plain http.

    It asks for `app` first, so the tables are empty when it starts.
    """
    with hypercorn(
        database_url, tmp_path / "instance", smtp_server.url, AUTHAPP_COOKIE_SECURE="false"
    ) as base:
        yield base


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True
        )
        try:
            yield browser
        finally:
            await browser.close()


@pytest.fixture
def screenshots(tmp_path: Path) -> Path:
    """Where the pictures go: AUTHAPP_SCREENSHOTS (under the repository) or a temporary folder."""
    configured = os.environ.get("AUTHAPP_SCREENSHOTS")
    folder = ROOT / configured if configured else tmp_path / "screenshots"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@dataclass
class Watch:
    """Everything a browser context did that a test wants to know about."""

    origin: str
    requests: list[str] = field(default_factory=list)
    console_errors: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)

    def on_request(self, request: Request) -> None:
        self.requests.append(request.url)

    def on_console(self, message: ConsoleMessage) -> None:
        if message.type == "error":
            self.console_errors.append(f"{message.text} ({message.location.get('url')})")

    def on_page_error(self, error: Error) -> None:
        self.page_errors.append(str(error))

    def off_site(self) -> list[str]:
        return [
            url
            for url in self.requests
            if not (url.startswith(self.origin + "/") or url.startswith("data:"))
        ]

    def assert_clean(self) -> None:
        assert self.page_errors == [], self.page_errors
        assert self.console_errors == [], self.console_errors
        assert self.off_site() == [], self.off_site()


async def open_context(
    browser: Browser, base: str, **options: object
) -> tuple[BrowserContext, Watch]:
    context = await browser.new_context(
        base_url=base, locale="en-US", timezone_id="UTC", **{"viewport": DESKTOP, **options}
    )
    watch = Watch(origin=base)
    context.on("request", watch.on_request)
    context.on("console", watch.on_console)
    context.on("weberror", lambda web_error: watch.on_page_error(web_error.error))
    return context, watch


async def shoot(page: Page, folder: Path, name: str) -> None:
    await page.screenshot(path=folder / name, full_page=True, animations="disabled")


async def sign_in(page: Page, password: str, *, remember: bool = False) -> None:
    await page.get_by_label("Email").fill(EMAIL)
    await page.get_by_label("Password").fill(password)
    if remember:
        await page.get_by_label("Remember me").check()
    await page.get_by_role("button", name="Sign in", exact=True).click()


async def session_cookie(context: BrowserContext) -> dict[str, object]:
    (cookie,) = [c for c in await context.cookies() if c.get("name") == "authapp_session"]
    return dict(cookie)


async def stored_display_name(app: Quart) -> str:
    return str(
        await fetch_val(app, "SELECT display_name FROM users WHERE email = :e", {"e": EMAIL})
    )


async def test_a_person_signs_up_signs_in_and_manages_their_account(
    app: Quart, server: str, browser: Browser, screenshots: Path, mailbox: Mailbox
) -> None:
    context, watch = await open_context(browser, server)
    page = await context.new_page()

    # Sign up: the form posts its CSRF token and lands on the dashboard, signed in.
    await page.goto("/auth/register")
    await expect(page.get_by_role("heading", name="Create an account")).to_be_visible()
    await page.get_by_label("Email").fill(EMAIL)
    await page.get_by_label("Display name").fill("Ada")
    await page.get_by_label("Password", exact=True).fill(PASSWORD)
    await page.get_by_label("Confirm password").fill(PASSWORD)
    await shoot(page, screenshots, "01-register.png")
    await page.get_by_role("button", name="Create account").click()
    await expect(page).to_have_url(f"{server}/")
    await expect(page.get_by_role("status")).to_have_text(
        f"Your account is ready. We sent a link to {EMAIL} to verify it."
    )
    await expect(page.locator("#verify-reminder")).to_be_visible()
    await expect(page.get_by_role("heading", level=1)).to_have_text("Welcome, Ada")
    await expect(page.get_by_text(f"You are signed in as {EMAIL}.")).to_be_visible()
    await expect(page.locator("#previous-sign-in")).to_have_text("This is your first sign-in.")
    await expect(page.get_by_role("link", name="Dashboard")).to_have_attribute(
        "aria-current", "page"
    )
    cookie = await session_cookie(context)
    assert cookie["httpOnly"] is True
    assert cookie["expires"] == -1, "without Remember me the session ends with the browser"
    assert await stored_display_name(app) == "Ada"
    await shoot(page, screenshots, "02-dashboard-first-sign-in.png")

    # The verification mail reached a real SMTP server; its link works in the browser.
    link = mailbox.link((await mailbox.wait_for(to=EMAIL))[0], "/auth/verify-email/")
    assert link.startswith(f"{server}/auth/verify-email/")
    await page.goto(link)
    await expect(page.get_by_role("heading", level=1)).to_have_text("Email verified")
    await page.goto("/")
    await expect(page.locator("#verify-reminder")).to_have_count(0)

    await page.get_by_role("button", name="Sign out").click()
    await expect(page).to_have_url(f"{server}/auth/login")
    await expect(page.get_by_role("status")).to_have_text("You have been signed out.")
    await expect(page.get_by_role("link", name="Sign in")).to_be_visible()
    await expect(page.get_by_role("link", name="Create account")).to_be_visible()
    await expect(page.get_by_role("button", name="Sign out")).to_have_count(0)
    await shoot(page, screenshots, "03-signed-out.png")

    # A wrong password: the same page again, with the error and the email kept.
    # Chromium itself reports the 401 answer in the console: the one error expected here.
    async with page.expect_console_message(lambda message: message.type == "error") as console:
        await sign_in(page, "not my password at all")
    assert re.search(r"status of 401\b", (await console.value).text)
    assert len(watch.console_errors) == 1, watch.console_errors
    watch.console_errors.clear()
    await expect(page.get_by_role("alert")).to_have_text("Email or password is wrong.")
    await expect(page).to_have_url(f"{server}/auth/login")
    await expect(page.get_by_label("Email")).to_have_value(EMAIL)
    await expect(page.get_by_label("Password")).to_have_value("")
    await shoot(page, screenshots, "04-sign-in-error.png")

    await sign_in(page, PASSWORD, remember=True)
    await expect(page).to_have_url(f"{server}/")
    await expect(page.get_by_role("heading", level=1)).to_have_text("Welcome, Ada")
    await expect(page.locator("#previous-sign-in")).to_have_text(
        re.compile(r"^\s*\d{1,2} \w{3} \d{4}, \d{2}:\d{2} UTC\s+from 127\.0\.0\.1\s*$")
    )
    assert (await session_cookie(context))["expires"] > 0, "Remember me keeps the session"
    await shoot(page, screenshots, "05-dashboard.png")

    await page.get_by_role("link", name="Account", exact=True).click()
    await expect(page).to_have_url(f"{server}/account")
    await expect(page.get_by_role("heading", level=1)).to_have_text("Account")
    await expect(page.get_by_label("Display name")).to_have_value("Ada")
    for label in ("Current password", "New password", "Confirm new password"):
        await expect(page.get_by_label(label, exact=True)).to_be_visible()
    await expect(page.get_by_role("button", name="Change password")).to_be_visible()
    await shoot(page, screenshots, "06-account.png")

    await page.get_by_label("Display name").fill("Ada Lovelace")
    await page.get_by_role("button", name="Save display name").click()
    await expect(page.get_by_role("status")).to_have_text("Your display name is saved.")
    await expect(page.get_by_label("Display name")).to_have_value("Ada Lovelace")
    assert await stored_display_name(app) == "Ada Lovelace"
    await shoot(page, screenshots, "07-account-saved.png")

    await page.get_by_role("link", name="Dashboard").click()
    await expect(page.get_by_role("heading", level=1)).to_have_text("Welcome, Ada Lovelace")

    # The same session on a phone-sized screen.
    phone, phone_watch = await open_context(
        browser, server, viewport=PHONE, is_mobile=True, has_touch=True,
        storage_state=await context.storage_state(),
    )  # fmt: skip
    phone_page = await phone.new_page()
    await phone_page.goto("/")
    await expect(phone_page.get_by_role("heading", level=1)).to_have_text("Welcome, Ada Lovelace")
    await shoot(phone_page, screenshots, "08-dashboard-phone.png")
    await phone.close()
    phone_watch.assert_clean()

    await page.get_by_role("button", name="Sign out").click()
    await expect(page.get_by_role("status")).to_have_text("You have been signed out.")
    await page.goto("/")
    await expect(page).to_have_url(re.compile(re.escape(f"{server}/auth/login?next=")))
    await expect(page.get_by_role("heading", level=1)).to_have_text("Sign in")
    await shoot(page, screenshots, "09-sign-in-required.png")
    light_background = await page.evaluate(BACKGROUND)
    await context.close()
    watch.assert_clean()

    # The sign-in page in dark mode: the stylesheet follows the system's colour scheme.
    dark, dark_watch = await open_context(browser, server, color_scheme="dark")
    dark_page = await dark.new_page()
    await dark_page.goto("/auth/login")
    await expect(dark_page.get_by_role("button", name="Sign in", exact=True)).to_be_visible()
    assert await dark_page.evaluate(BACKGROUND) != light_background
    await shoot(dark_page, screenshots, "10-sign-in-dark.png")
    await dark.close()
    dark_watch.assert_clean()


async def test_no_request_leaves_the_site(server: str, browser: Browser) -> None:
    """No CDN, no fonts, no analytics: every page, style, script and the spec come from here."""
    context, watch = await open_context(browser, server)
    page = await context.new_page()
    await page.goto("/auth/register")
    await page.get_by_label("Email").fill(EMAIL)
    await page.get_by_label("Password", exact=True).fill(PASSWORD)
    await page.get_by_label("Confirm password").fill(PASSWORD)
    await page.get_by_role("button", name="Create account").click()
    await expect(page.get_by_role("heading", level=1)).to_have_text("Welcome, ada")
    await page.get_by_role("link", name="Account", exact=True).click()
    await expect(page.get_by_role("heading", level=1)).to_have_text("Account")
    await page.get_by_role("button", name="Sign out").click()
    await expect(page.get_by_role("status")).to_have_text("You have been signed out.")
    await sign_in(page, PASSWORD)
    await expect(page).to_have_url(f"{server}/")
    await page.get_by_role("link", name="API docs").click()
    await expect(page.get_by_text("/api/auth/login", exact=True)).to_be_visible()
    await context.close()

    assert f"{server}/static/style.css" in watch.requests
    assert f"{server}/openapi.json" in watch.requests
    assert watch.off_site() == [], watch.off_site()
    watch.assert_clean()


async def test_docs_render_in_a_real_browser_with_no_internet(
    server: str, browser: Browser
) -> None:
    """Swagger UI must really draw our OpenAPI 3.1 spec (Swagger UI 4 could not) from local files.

    This machine reaches no CDN, so anything fetched from one would leave the page empty.
    """
    context, watch = await open_context(browser, server)
    page = await context.new_page()
    response = await page.goto("/docs")
    assert response is not None
    assert response.ok
    await expect(page.get_by_text("/api/auth/login", exact=True)).to_be_visible()
    paths = set(await page.locator(".opblock-summary-path").all_inner_texts())
    assert {"/api/auth/register", "/api/auth/login", "/api/auth/logout", "/api/me"} <= paths
    await expect(page.get_by_text("Unable to render this definition")).to_have_count(0)
    await context.close()
    watch.assert_clean()


async def test_the_keyboard_reaches_the_form_and_shows_where_it_is(
    server: str, browser: Browser
) -> None:
    """Tab first offers the skip link, which jumps to the form; focus is always drawn."""
    context, watch = await open_context(browser, server)
    page = await context.new_page()
    await page.goto("/auth/login")
    await page.keyboard.press("Tab")
    skip = page.get_by_role("link", name="Skip to content")
    await expect(skip).to_be_focused()
    await expect(skip).to_be_in_viewport()
    outline = "getComputedStyle(document.activeElement).outlineStyle"
    assert await page.evaluate(outline) != "none"
    await page.keyboard.press("Enter")  # to #main, so the next Tab is the first field
    await page.keyboard.press("Tab")
    await expect(page.get_by_label("Email")).to_be_focused()
    assert await page.evaluate(outline) != "none"
    await context.close()
    watch.assert_clean()


async def test_a_forgotten_password_is_reset_from_the_mailed_link(
    app: Quart, make_user: MakeUser, server: str, browser: Browser, screenshots: Path,
    mailbox: Mailbox,
) -> None:  # fmt: skip
    await make_user(EMAIL, display_name="Ada")
    context, watch = await open_context(browser, server)
    page = await context.new_page()
    await page.goto("/auth/login")
    await page.get_by_role("link", name="Forgot your password?").click()
    await expect(page.get_by_role("heading", level=1)).to_have_text("Forgot your password?")
    await page.get_by_label("Email").fill(EMAIL)
    await shoot(page, screenshots, "11-forgot-password.png")
    await page.get_by_role("button", name="Send me a link").click()
    await expect(page.get_by_role("heading", level=1)).to_have_text("Check your inbox")

    link = mailbox.link((await mailbox.wait_for(to=EMAIL))[0], "/auth/reset-password/")
    await page.goto(link)
    await expect(page.get_by_role("heading", level=1)).to_have_text("Choose a new password")
    await page.get_by_label("New password", exact=True).fill(NEW_PASSWORD)
    await page.get_by_label("Confirm new password").fill(NEW_PASSWORD)
    await shoot(page, screenshots, "12-reset-password.png")
    await page.get_by_role("button", name="Set the new password").click()
    await expect(page).to_have_url(f"{server}/auth/login")
    await expect(page.get_by_role("status")).to_contain_text("Your password is changed")

    await sign_in(page, NEW_PASSWORD)
    await expect(page.get_by_role("heading", level=1)).to_have_text("Welcome, Ada")
    # The link worked once: opening it again says so, in the site's own error page.
    await page.goto(link)
    await expect(page.get_by_role("alert")).to_have_text(
        "This link is not valid. It may have been used already."
    )
    watch.console_errors = [e for e in watch.console_errors if "status of 400" not in e]
    await context.close()
    watch.assert_clean()


async def test_a_person_signs_out_another_device_and_confirms_their_password(
    app: Quart, make_user: MakeUser, server: str, browser: Browser, screenshots: Path
) -> None:
    await make_user(EMAIL, display_name="Ada")
    elsewhere, elsewhere_watch = await open_context(browser, server, user_agent=FIREFOX)
    other = await elsewhere.new_page()
    await other.goto("/auth/login")
    await sign_in(other, PASSWORD)
    await expect(other.get_by_role("heading", level=1)).to_have_text("Welcome, Ada")

    context, watch = await open_context(browser, server)
    page = await context.new_page()
    await page.goto("/auth/login")
    await sign_in(page, PASSWORD)
    await expect(page.get_by_role("heading", level=1)).to_have_text("Welcome, Ada")
    # As if signed in an hour ago: older than AUTHAPP_FRESHNESS (the server keeps its own clock).
    await execute(app, STARTED_AN_HOUR_AGO)

    await page.get_by_role("link", name="Account", exact=True).click()
    sessions = page.locator("#sessions > li")
    await expect(sessions).to_have_count(2)
    await expect(sessions.filter(has_text="This device")).to_have_count(1)
    await expect(sessions.filter(has_text="This device").get_by_role("button")).to_have_count(0)
    firefox = sessions.filter(has_text="Firefox on Linux")
    await expect(firefox).to_contain_text("from 127.0.0.1")
    # Stale: the password, address, deletion and sign-out-everywhere forms wait for the password.
    await expect(page.get_by_role("button", name="Change password")).to_have_count(0)
    await expect(page.get_by_role("link", name="Confirm your password")).to_have_count(4)
    await shoot(page, screenshots, "13-sessions.png")

    await firefox.get_by_role("button", name="Revoke").click()
    await expect(page.get_by_role("status")).to_have_text("That session is signed out.")
    await expect(sessions).to_have_count(1)
    await other.reload()
    await expect(other).to_have_url(re.compile(re.escape(f"{server}/auth/login?next=")))
    await expect(other.get_by_role("alert")).to_have_text(
        "Your session has ended. Please sign in again."
    )
    await elsewhere.close()
    elsewhere_watch.assert_clean()

    await page.get_by_role("link", name="Confirm your password").first.click()
    await expect(page).to_have_url(f"{server}/auth/reauth?next=/account")
    await expect(page.get_by_role("heading", level=1)).to_have_text("Confirm it's you")
    await expect(page.get_by_text(f"You are signed in as {EMAIL}.")).to_be_visible()
    await shoot(page, screenshots, "14-reauth.png")
    await page.get_by_label("Password").fill(PASSWORD)
    await page.get_by_role("button", name="Confirm").click()
    await expect(page).to_have_url(f"{server}/account")
    await expect(page.get_by_role("status")).to_contain_text("Thank you.")
    await expect(page.get_by_role("button", name="Change password")).to_be_visible()

    await page.get_by_role("link", name="Manage your API tokens").click()
    await expect(page.get_by_role("heading", level=1)).to_have_text("API tokens")
    await page.get_by_label("Name", exact=True).fill("backup script")
    await page.get_by_label("profile:read").check()
    await page.get_by_label("Expires after").select_option("90")
    await page.get_by_role("button", name="Create token").click()
    token = page.get_by_label("The token")
    await expect(token).to_have_value(re.compile(r"^authapp_pat_"))
    await expect(token).to_have_attribute("readonly", "")
    await expect(page.get_by_text("it will not be shown again")).to_be_visible()
    await shoot(page, screenshots, "15-tokens.png")
    await page.goto("/account/tokens")  # the page again: the token is gone, its entry stays
    await expect(page.get_by_label("The token")).to_have_count(0)
    await expect(page.locator("#tokens > li")).to_contain_text("backup script")
    await context.close()
    watch.assert_clean()


async def sign_in_as(page: Page, email: str) -> None:
    await page.goto("/auth/login")
    await page.get_by_label("Email").fill(email)
    await page.get_by_label("Password").fill(PASSWORD)
    await page.get_by_role("button", name="Sign in", exact=True).click()
    await expect(page.get_by_role("link", name="Account", exact=True)).to_be_visible()


async def test_an_admin_made_by_the_cli_deactivates_a_user_whose_session_then_ends(
    app: Quart,
    server: str,
    browser: Browser,
    screenshots: Path,
    make_user: MakeUser,
    database_url: str,
    tmp_path: Path,
) -> None:
    from tests.test_cli import run_cli  # the real executable, as an operator runs it

    env = clean_env(AUTHAPP_ENV="testing", AUTHAPP_DATABASE_URL=database_url,
                    AUTHAPP_INSTANCE_PATH=str(tmp_path / "cli"))  # fmt: skip
    made = run_cli("users", "create", "--email", "root@example.com", "--verified", env=env,
                   stdin=PASSWORD)  # fmt: skip
    assert made.returncode == 0, made.stderr
    granted = run_cli("roles", "grant", "root@example.com", "admin", env=env)
    assert granted.returncode == 0, granted.stderr
    await make_user("bob@example.com", display_name="Bob")

    bob_context, bob_watch = await open_context(browser, server)
    bob = await bob_context.new_page()
    await sign_in_as(bob, "bob@example.com")
    await expect(bob.get_by_role("link", name="Admin")).to_have_count(0)

    context, watch = await open_context(browser, server)
    page = await context.new_page()
    await sign_in_as(page, "root@example.com")
    await page.get_by_role("link", name="Admin").click()
    await expect(page.get_by_role("heading", level=1)).to_have_text("Users")
    await page.get_by_label("Address or name").fill("BOB")
    await page.get_by_role("button", name="Search").click()
    await expect(page.get_by_role("table")).to_contain_text("bob@example.com")
    await shoot(page, screenshots, "30-admin-users.png")
    await page.get_by_role("link", name="bob@example.com").click()
    await expect(page.get_by_role("heading", level=1)).to_have_text("bob@example.com")
    # The box is the confirmation: without it the browser does not even send the form.
    await page.get_by_role("button", name="Deactivate").click()
    await expect(page.locator("#status")).to_have_text("active")
    await page.get_by_label("Yes, deactivate it").check()
    await shoot(page, screenshots, "31-admin-user.png")
    await page.get_by_role("button", name="Deactivate").click()
    await expect(page.get_by_role("status")).to_contain_text("bob@example.com is deactivated")
    await expect(page.locator("#status")).to_have_text("deactivated")

    # Bob's open session is refused on its very next request.
    await bob.goto("/account")
    await expect(bob).to_have_url(re.compile(r"/auth/login"))
    await expect(bob.get_by_role("alert")).to_have_text(
        "Your session has ended. Please sign in again."
    )
    watch.assert_clean()
    bob_watch.assert_clean()
    await context.close()
    await bob_context.close()
