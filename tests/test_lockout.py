"""Account lockout: failed passwords counted on the account, whatever the address; a growing,
never permanent delay; one mail to the owner per lockout; the same answer as a wrong password."""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any

import pytest
from quart import Quart
from quart.typing import TestClientProtocol as Client

from authapp.config import ConfigError, load_settings
from authapp.models.users import User
from tests.conftest import PASSWORD, Clock, app_state, execute, fetch_val
from tests.forms import forget_device, post_form, sign_in_from
from tests.mailbox import Mailbox, drain

MakeUser = Callable[..., Awaitable[User]]
WRONG = "not the password at all"
# Three failures lock for a minute, then 2, 4, ... at most 5 minutes.
LOCKOUT = {"LOCKOUT_THRESHOLD": "3", "LOCKOUT_DELAY": "60", "LOCKOUT_MAX_DELAY": "300",
           "RATE_LIMIT_ENABLED": "false"}  # fmt: skip
pytestmark = pytest.mark.settings(**LOCKOUT)


async def login(client: Client, password: str, email: str = "alice@example.com") -> Any:
    return await client.post("/api/auth/login", json={"email": email, "password": password})


async def lock_out(client: Client) -> None:
    """Three wrong passwords in a row: the threshold of these tests."""
    for _ in range(3):
        assert (await login(client, WRONG)).status_code == 401


class HashSpy:
    """Counts the password checks of the app's real hashing pool (and still runs them); the
    dummy check of an unknown email goes through `verify` too."""

    def __init__(self, app: Quart, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls = 0
        hashing = app_state(app).hashing
        verify = hashing.verify

        async def counted_verify(password_hash: str, password: str) -> bool:
            self.calls += 1
            return await verify(password_hash, password)

        monkeypatch.setattr(hashing, "verify", counted_verify)


def settings_with(app: Quart, **changes: Any) -> Any:
    return replace(app_state(app).settings, **changes)


async def failed_logins(app: Quart) -> int:
    return int(await fetch_val(app, "SELECT failed_logins FROM users"))


async def test_the_threshold_locks_even_the_right_password_until_the_delay_passes(
    app: Quart, client: Client, make_user: MakeUser, clock: Clock
) -> None:
    await make_user()
    for _ in range(3):
        assert (await login(client, WRONG)).status_code == 401
    locked = await login(client, PASSWORD)
    assert locked.status_code == 401
    assert await locked.get_json() == {
        "code": "INVALID_CREDENTIALS",
        "message": "Email or password is wrong.",
    }
    clock.advance(seconds=59)
    assert (await login(client, PASSWORD)).status_code == 401
    clock.advance(seconds=2)
    assert (await login(client, PASSWORD)).status_code == 200
    assert await failed_logins(app) == 0  # a success forgives the failures before it
    assert await fetch_val(app, "SELECT locked_until FROM users") is None


async def test_each_further_failure_doubles_the_delay_up_to_the_cap_and_never_for_good(
    app: Quart, client: Client, make_user: MakeUser, clock: Clock
) -> None:
    await make_user()
    await lock_out(client)
    delays = []
    for _ in range(5):
        locked_until = await fetch_val(app, "SELECT locked_until FROM users")
        delays.append(round((locked_until - clock.now).total_seconds()))
        clock.set(locked_until)  # the lock is over: the next wrong password locks again
        assert (await login(client, WRONG)).status_code == 401
    assert delays == [60, 120, 240, 300, 300]
    clock.advance(seconds=300)
    assert (await login(client, PASSWORD)).status_code == 200  # 8 failures, still not for good


async def test_the_lock_holds_whatever_the_address_and_for_the_form_too(
    app: Quart, make_user: MakeUser
) -> None:
    await make_user()
    for number in range(3):
        client = app.test_client()
        response = await client.post(
            "/api/auth/login", json={"email": "alice@example.com", "password": WRONG},
            scope_base={"client": (f"192.0.2.{number}", 4000)},
        )  # fmt: skip
        assert response.status_code == 401
    browser = app.test_client()
    page = await post_form(browser, "/auth/login", {"email": "alice@example.com",
                                                    "password": PASSWORD})  # fmt: skip
    assert page.status_code == 401
    assert "Email or password is wrong." in await page.get_data(as_text=True)


async def test_a_locked_account_costs_no_hash_and_answers_as_an_unknown_email_does(
    app: Quart, client: Client, make_user: MakeUser, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Locked: refused unchecked, after a wait as long as a check, so a guess there says
    nothing and a locked account looks like an unknown email (in answer and in time)."""
    await make_user()
    await lock_out(client)
    spy = HashSpy(app, monkeypatch)

    async def timed(email: str) -> tuple[float, Any]:
        started = time.perf_counter()
        response = await login(client, PASSWORD, email)
        return time.perf_counter() - started, response

    locked, unknown = [], []
    for _ in range(12):
        seconds, response = await timed("alice@example.com")
        assert response.status_code == 401
        locked.append(seconds)
        before = spy.calls
        seconds, response = await timed("nobody@example.com")
        assert response.status_code == 401
        assert spy.calls == before + 1  # the unknown email ran the dummy hash
        unknown.append(seconds)
    assert spy.calls == 12  # and the locked account none
    assert await failed_logins(app) == 3  # refused attempts do not count
    ratio = statistics.median(locked) / statistics.median(unknown)
    assert 0.5 < ratio < 2, (statistics.median(locked), statistics.median(unknown))


async def test_concurrent_failures_all_count(
    app: Quart, client: Client, make_user: MakeUser
) -> None:
    await make_user()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(app_state(app), "settings", settings_with(app, lockout_threshold=100))
        answers = await asyncio.gather(*(login(app.test_client(), WRONG) for _ in range(20)))
    assert {answer.status_code for answer in answers} == {401}
    assert await failed_logins(app) == 20


async def test_a_burst_of_concurrent_guesses_gets_no_more_than_the_threshold_checked(
    app: Quart, make_user: MakeUser, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Attempts are counted before the hash, so guesses in flight cannot slip past a lock."""
    await make_user()
    spy = HashSpy(app, monkeypatch)
    answers = await asyncio.gather(*(login(app.test_client(), WRONG) for _ in range(20)))
    assert {answer.status_code for answer in answers} == {401}
    assert spy.calls == 3
    assert await failed_logins(app) == 3


async def test_the_owner_gets_one_mail_per_lockout(
    app: Quart, client: Client, make_user: MakeUser, mailbox: Mailbox, clock: Clock
) -> None:
    await make_user()
    await lock_out(client)
    await drain(app)
    (mail,) = await mailbox.wait_for(1, to="alice@example.com")
    assert mail["Subject"] == "Your account is locked for a while"
    text = mail.get_body(preferencelist=("plain",))
    html = mail.get_body(preferencelist=("html",))
    assert text is not None
    assert html is not None
    assert "3 times in a row" in text.get_content()
    assert "refuses every sign-in from a new device for 1 minute" in text.get_content()
    assert "Devices you have signed in from before are not locked out." in text.get_content()
    assert "up to 5 minutes" in text.get_content()
    assert "3 times in a row" in html.get_content()

    for _ in range(3):  # locked again and again in the same lockout: no more mail
        clock.set(await fetch_val(app, "SELECT locked_until FROM users"))
        await login(client, WRONG)
    await drain(app)
    await mailbox.settle()
    assert len(mailbox.messages) == 1

    clock.advance(seconds=300)
    assert (await login(client, PASSWORD)).status_code == 200
    forget_device(client)  # the owner's device is trusted: the failures come from elsewhere
    for _ in range(3):  # a new lockout after a success: a new mail
        await login(client, WRONG)
    await drain(app)
    assert len(await mailbox.wait_for(2, to="alice@example.com")) == 2


async def test_checks_of_the_current_password_count_and_share_the_lock(
    app: Quart, signed_in: Client, clock: Clock
) -> None:
    forget_device(signed_in)  # a session without its device: a stolen cookie, say
    for _ in range(2):
        wrong = await signed_in.post("/api/auth/reauth", json={"password": WRONG})
        assert (await wrong.get_json())["code"] == "WRONG_PASSWORD"
    changed = await signed_in.post(
        "/api/me/password", json={"current_password": WRONG, "new_password": "a new passphrase"}
    )
    assert (await changed.get_json())["code"] == "WRONG_PASSWORD"
    # The third failure locked the account: a signed-in caller may be told so.
    locked = await signed_in.post("/api/auth/reauth", json={"password": PASSWORD})
    assert locked.status_code == 429
    assert (await locked.get_json())["code"] == "ACCOUNT_LOCKED"
    assert locked.headers["Retry-After"] == "60"
    deletion = await signed_in.delete("/api/me", json={"password": PASSWORD})
    assert (await deletion.get_json())["code"] == "ACCOUNT_LOCKED"
    # The sign-in shares the lock.
    assert (await login(app.test_client(), PASSWORD)).status_code == 401
    clock.advance(seconds=61)
    assert (
        await signed_in.post("/api/auth/reauth", json={"password": PASSWORD})
    ).status_code == 204
    assert await failed_logins(app) == 0


async def test_the_pages_show_a_locked_account_as_a_wait(app: Quart, make_user: MakeUser) -> None:
    await make_user()
    browser = forget_device(await sign_in_from(app))
    for _ in range(3):
        await post_form(browser, "/auth/reauth", {"password": WRONG})
    page = await post_form(browser, "/auth/reauth", {"password": PASSWORD})
    assert page.status_code == 429
    assert "Try again in 1 minute." in await page.get_data(as_text=True)
    assert page.headers["Retry-After"] == "60"


@pytest.mark.parametrize(
    ("refusal", "status", "left"),
    [(None, 200, 0), ("unverified", 403, 0), ("inactive", 401, 0),
     ("unverified, with a second factor", 403, 2)],
)  # fmt: skip
async def test_the_right_password_forgives_the_failures_before_it_also_when_it_is_refused(
    app: Quart,
    client: Client,
    make_user: MakeUser,
    refusal: str | None,
    status: int,
    left: int,
) -> None:
    """A sign-in forgives in the statement that starts its session; the refusals that start
    none (an unverified address, an inactive account) forgive by themselves. The password of
    an account with a second factor forgives nothing (only the second factor does)."""
    user = await make_user()
    if refusal and refusal.startswith("unverified"):
        app_state(app).settings = settings_with(app, require_verified_email=True)
    if refusal == "inactive":
        await execute(app, "UPDATE users SET is_active = false")
    if refusal and refusal.endswith("second factor"):
        await execute(
            app,
            "INSERT INTO mfa_totp (user_id, secret_encrypted, created_at, confirmed_at)"
            " VALUES (:id, 'not used here', now(), now())",
            {"id": user.id},
        )
    for _ in range(2):
        assert (await login(client, WRONG)).status_code == 401
    assert await failed_logins(app) == 2
    assert (await login(client, PASSWORD)).status_code == status
    assert await failed_logins(app) == left


async def test_a_password_reset_unlocks_at_once(
    app: Quart, client: Client, make_user: MakeUser, mailbox: Mailbox
) -> None:
    await make_user()
    await lock_out(client)
    await client.post("/api/auth/forgot-password", json={"email": "alice@example.com"})
    await drain(app)
    (mail,) = [m for m in await mailbox.wait_for(2) if m["Subject"] == "Reset your password"]
    token = mailbox.link(mail, "/auth/reset-password/").rsplit("/", 1)[1]
    reset = await client.post(
        "/api/auth/reset-password", json={"token": token, "password": "a brand new passphrase"}
    )
    assert reset.status_code == 204
    assert (await login(client, "a brand new passphrase")).status_code == 200


async def test_the_locked_answer_is_the_wrong_password_answer(
    app: Quart, client: Client, make_user: MakeUser
) -> None:
    """The same bytes, and no Retry-After that would tell a lock."""
    await make_user()
    wrong = await login(client, WRONG)
    for _ in range(2):
        await login(client, WRONG)
    locked = await login(client, PASSWORD)
    assert await wrong.get_data() == await locked.get_data()
    assert wrong.status_code == locked.status_code == 401
    assert "Retry-After" not in locked.headers


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"AUTHAPP_LOCKOUT_THRESHOLD": "0"}, "AUTHAPP_LOCKOUT_THRESHOLD must be positive"),
        ({"AUTHAPP_LOCKOUT_DELAY": "0"}, "AUTHAPP_LOCKOUT_DELAY must be positive"),
        ({"AUTHAPP_LOCKOUT_DELAY": "120", "AUTHAPP_LOCKOUT_MAX_DELAY": "60"}, "cannot be less"),
        ({"AUTHAPP_LOCKOUT_THRESHOLD": "many"}, "AUTHAPP_LOCKOUT_THRESHOLD"),
    ],
)
def test_lockout_settings_are_checked(environ: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_settings(environ={"AUTHAPP_ENV": "testing", **environ})
