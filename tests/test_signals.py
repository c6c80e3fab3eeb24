"""Signals: each account event reaches a receiver exactly once, after its change has committed,
with its user and client; a receiver that raises changes nothing."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator
from typing import Any
from urllib.parse import urlsplit

import pyotp
import pytest
from blinker import NamedSignal
from quart import Quart

from authapp import signals
from authapp.accounts import admin, registration
from authapp.signals import AccountEvent
from tests.authenticators import SoftAuthenticator
from tests.conftest import PASSWORD, app_state, execute, fetch_val
from tests.mailbox import Mailbox, drain

NEW_PASSWORD = "a brand new passphrase"
EMAIL = "alice@example.com"
# Two wrong passwords lock; no rate limit stands in the way of the table's steps.
pytestmark = pytest.mark.settings(LOCKOUT_THRESHOLD="2", RATE_LIMIT_ENABLED="false")

Action = Callable[[Quart, Mailbox], Awaitable[None]]


async def register(app: Quart, mailbox: Mailbox) -> None:
    body = {"email": EMAIL, "password": PASSWORD, "display_name": "Alice"}
    assert (await app.test_client().post("/api/auth/register", json=body)).status_code == 201


async def signed_in(app: Quart) -> Any:
    client = app.test_client()
    body = {"email": EMAIL, "password": PASSWORD}
    assert (await client.post("/api/auth/login", json=body)).status_code == 200
    return client


def token_of(mailbox: Mailbox, to: str, path: str, count: int = 1) -> str:
    message = [m for m in mailbox.messages if to in str(m["To"])][count - 1]
    return urlsplit(mailbox.link(message, path)).path.rsplit("/", 1)[1]


async def sign_in(app: Quart, mailbox: Mailbox) -> None:
    await signed_in(app)


async def sign_out(app: Quart, mailbox: Mailbox) -> None:
    client = await signed_in(app)
    assert (await client.post("/api/auth/logout")).status_code == 204


async def fail_sign_in(app: Quart, mailbox: Mailbox) -> None:
    body = {"email": EMAIL, "password": "not the password"}
    assert (await app.test_client().post("/api/auth/login", json=body)).status_code == 401
    await drain(app)  # failures are written (and signalled) after the answer


async def lock_out(app: Quart, mailbox: Mailbox) -> None:
    for _ in range(2):
        await fail_sign_in(app, mailbox)


async def reauthenticate(app: Quart, mailbox: Mailbox) -> None:
    client = await signed_in(app)
    assert (await client.post("/api/auth/reauth", json={"password": PASSWORD})).status_code == 204


async def change_password(app: Quart, mailbox: Mailbox) -> None:
    client = await signed_in(app)
    body = {"current_password": PASSWORD, "new_password": NEW_PASSWORD}
    assert (await client.post("/api/me/password", json=body)).status_code == 204


async def reset_password(app: Quart, mailbox: Mailbox) -> None:
    client = app.test_client()
    assert (
        await client.post("/api/auth/forgot-password", json={"email": EMAIL})
    ).status_code == 202
    await drain(app)
    await mailbox.wait_for(2, to=EMAIL)
    token = token_of(mailbox, EMAIL, "/auth/reset-password/", count=2)
    body = {"token": token, "password": NEW_PASSWORD}
    assert (await client.post("/api/auth/reset-password", json=body)).status_code == 204


async def verify_email(app: Quart, mailbox: Mailbox) -> None:
    await mailbox.wait_for(1, to=EMAIL)
    token = token_of(mailbox, EMAIL, "/auth/verify-email/")
    verified = await app.test_client().post("/api/auth/verify-email", json={"token": token})
    assert verified.status_code == 204


async def request_email_change(app: Quart, mailbox: Mailbox) -> None:
    client = await signed_in(app)
    body = {"new_email": "new@example.com", "password": PASSWORD}
    assert (await client.post("/api/me/email", json=body)).status_code == 202


async def change_email(app: Quart, mailbox: Mailbox) -> None:
    await request_email_change(app, mailbox)
    await drain(app)
    await mailbox.wait_for(1, to="new@example.com")
    token = token_of(mailbox, "new@example.com", "/auth/confirm-email/")
    confirmed = await app.test_client().post("/api/auth/confirm-email", json={"token": token})
    assert confirmed.status_code == 204


async def revoke_session(app: Quart, mailbox: Mailbox) -> None:
    client = await signed_in(app)
    other = await signed_in(app)
    listed = await (await client.get("/api/sessions")).get_json()
    (theirs,) = [each["id"] for each in listed["sessions"] if not each["current"]]
    assert (await client.delete(f"/api/sessions/{theirs}")).status_code == 204
    assert (await other.get("/api/me")).status_code == 401


async def create_token(app: Quart, mailbox: Mailbox) -> None:
    client = await signed_in(app)
    body = {"name": "script", "scopes": ["profile:read"]}
    assert (await client.post("/api/tokens", json=body)).status_code == 201


async def revoke_token(app: Quart, mailbox: Mailbox) -> None:
    client = await signed_in(app)
    body = {"name": "script", "scopes": ["profile:read"]}
    token_id = (await (await client.post("/api/tokens", json=body)).get_json())["id"]
    assert (await client.delete(f"/api/tokens/{token_id}")).status_code == 204


async def switch(app: Quart, active: bool) -> None:
    state = app_state(app)
    async with app.app_context():
        change = await admin.set_active(state.db, state.settings, EMAIL, active)
    assert change is not None
    assert change.changed


async def deactivate(app: Quart, mailbox: Mailbox) -> None:
    await switch(app, False)


async def activate(app: Quart, mailbox: Mailbox) -> None:
    await switch(app, False)
    await switch(app, True)


async def delete_account(app: Quart, mailbox: Mailbox) -> None:
    client = await signed_in(app)
    assert (await client.delete("/api/me", json={"password": PASSWORD})).status_code == 204


async def enable_mfa(app: Quart, mailbox: Mailbox) -> tuple[Any, list[str]]:
    client = await signed_in(app)
    secret = (await (await client.post("/api/me/mfa/totp")).get_json())["secret"]
    code = {"code": pyotp.TOTP(secret).now()}
    confirmed = await client.post("/api/me/mfa/totp/confirm", json=code)
    assert confirmed.status_code == 200
    return client, (await confirmed.get_json())["recovery_codes"]


async def disable_mfa(app: Quart, mailbox: Mailbox) -> None:
    client, codes = await enable_mfa(app, mailbox)
    body = {"recovery_code": codes[0]}
    assert (await client.delete("/api/me/mfa/totp", json=body)).status_code == 204


async def regenerate_codes(app: Quart, mailbox: Mailbox) -> None:
    client, _ = await enable_mfa(app, mailbox)
    assert (await client.post("/api/me/mfa/recovery-codes")).status_code == 200


async def password_step(app: Quart) -> Any:
    client = app.test_client()
    body = {"email": EMAIL, "password": PASSWORD}
    assert (await client.post("/api/auth/login", json=body)).status_code == 202
    return client


async def use_recovery_code(app: Quart, mailbox: Mailbox) -> None:
    _, codes = await enable_mfa(app, mailbox)
    client = await password_step(app)
    body = {"recovery_code": codes[0]}
    assert (await client.post("/api/auth/mfa", json=body)).status_code == 200


async def fail_mfa(app: Quart, mailbox: Mailbox) -> None:
    await enable_mfa(app, mailbox)
    client = await password_step(app)
    body = {"recovery_code": "2222-2222-22"}
    assert (await client.post("/api/auth/mfa", json=body)).status_code == 400


ROOT = "root@example.com"


async def as_admin(app: Quart) -> tuple[Any, Any]:
    """Root, an admin (the role written straight in: no event of its own), signed in; and
    Alice's id."""
    state = app_state(app)
    await registration.register(state.db, state.hashing, state.settings, email=ROOT,
                                password=PASSWORD, display_name="Root")  # fmt: skip
    await execute(app, "INSERT INTO user_roles (user_id, role, granted_at) SELECT id, 'admin', "
                  "now() FROM users WHERE email = :root", {"root": ROOT})  # fmt: skip
    client = app.test_client()
    body = {"email": ROOT, "password": PASSWORD}
    assert (await client.post("/api/auth/login", json=body)).status_code == 200
    return client, await fetch_val(app, "SELECT id FROM users WHERE email = :e", {"e": EMAIL})


async def change_roles(app: Quart, mailbox: Mailbox) -> None:
    client, alice = await as_admin(app)
    answer = await client.put(f"/api/admin/users/{alice}/roles", json={"roles": ["admin"]})
    assert answer.status_code == 200


async def reset_access(app: Quart, mailbox: Mailbox) -> None:
    client, alice = await as_admin(app)
    assert (await client.post(f"/api/admin/users/{alice}/reset-access")).status_code == 200


async def send_reset_link(app: Quart, mailbox: Mailbox) -> None:
    client, alice = await as_admin(app)
    sent = await client.post(f"/api/admin/users/{alice}/send-password-reset")
    assert sent.status_code == 202


async def act_as_admin(app: Quart, mailbox: Mailbox) -> None:
    client, alice = await as_admin(app)
    assert (await client.post(f"/api/admin/users/{alice}/sessions/revoke-all")).status_code == 200


async def add_passkey(app: Quart, mailbox: Mailbox) -> tuple[Any, SoftAuthenticator]:
    client = await signed_in(app)
    authenticator = SoftAuthenticator()
    options = await (await client.post("/api/me/passkeys/options")).get_json()
    body = {"credential": authenticator.create(options)}
    response = await client.post("/api/me/passkeys", json=body)
    assert response.status_code == 201
    return client, authenticator


async def added_passkey(app: Quart, mailbox: Mailbox) -> None:
    await add_passkey(app, mailbox)


async def remove_passkey(app: Quart, mailbox: Mailbox) -> None:
    client, _ = await add_passkey(app, mailbox)
    (passkey,) = (await (await client.get("/api/me/passkeys")).get_json())["passkeys"]
    assert (await client.delete(f"/api/me/passkeys/{passkey['id']}")).status_code == 204


async def passkey_answer(app: Quart, mailbox: Mailbox, **lie: Any) -> int:
    _, authenticator = await add_passkey(app, mailbox)
    client = app.test_client()
    options = await (await client.post("/api/auth/passkey/options")).get_json()
    body = {"credential": authenticator.get(options, **lie)}
    return int((await client.post("/api/auth/passkey", json=body)).status_code)


async def passkey_sign_in(app: Quart, mailbox: Mailbox) -> None:
    assert await passkey_answer(app, mailbox) == 200


async def fail_passkey(app: Quart, mailbox: Mailbox) -> None:
    assert await passkey_answer(app, mailbox, uv=False) == 401


# signal: (what sets it off, once Alice is registered; None: the registration itself)
TABLE: dict[str, Action | None] = {
    "registered": None,
    "signed_in": sign_in,
    "signed_out": sign_out,
    "sign_in_failed": fail_sign_in,
    "reauthenticated": reauthenticate,
    "locked_out": lock_out,
    "password_changed": change_password,
    "password_reset": reset_password,
    "email_verified": verify_email,
    "email_change_requested": request_email_change,
    "email_changed": change_email,
    "session_revoked": revoke_session,
    "token_created": create_token,
    "token_revoked": revoke_token,
    "account_deactivated": deactivate,
    "account_activated": activate,
    "account_deleted": delete_account,
    "mfa_enabled": enable_mfa,
    "mfa_disabled": disable_mfa,
    "recovery_codes_regenerated": regenerate_codes,
    "recovery_code_used": use_recovery_code,
    "mfa_failed": fail_mfa,
    "roles_changed": change_roles,
    "access_reset": reset_access,
    "password_reset_sent": send_reset_link,
    "admin_action": act_as_admin,  # its user is the administrator, Root
    "passkey_added": added_passkey,
    "passkey_removed": remove_passkey,
    "passkey_sign_in": passkey_sign_in,
    "passkey_failed": fail_passkey,
}


def test_the_table_has_every_signal() -> None:
    assert set(TABLE) == set(signals.namespace)


async def committed(app: Quart, event: AccountEvent) -> bool:
    """Whether another connection sees the change the event reports (so it has committed)."""
    async with app_state(app).db.connection() as connection:
        if event.name == "account_deleted":
            return bool(
                await connection.fetch_val(
                    "SELECT count(*) = 0 FROM users WHERE id = :id", {"id": event.user_id}
                )
            )
        if event.kind is None:  # announced: registered, email_verified
            column = "email_verified_at" if event.name == "email_verified" else "created_at"
            return bool(
                await connection.fetch_val(
                    f"SELECT {column} IS NOT NULL FROM users WHERE id = :id",  # noqa: S608
                    {"id": event.user_id},
                )
            )
        return bool(
            await connection.fetch_val(
                "SELECT count(*) > 0 FROM security_events WHERE user_id = :id AND kind = :kind",
                {"id": event.user_id, "kind": event.kind},
            )
        )


class Receiver:
    """Counts what a signal brings, and whether its change was already committed then."""

    def __init__(self, app: Quart) -> None:
        self.app = app
        self.events: list[tuple[AccountEvent, bool]] = []

    async def __call__(self, sender: Any, event: AccountEvent) -> None:
        self.events.append((event, await committed(self.app, event)))


def raising(sender: Any, event: AccountEvent) -> None:
    raise RuntimeError("a product's receiver is broken")


@pytest.fixture
def listening() -> Iterator[Callable[[NamedSignal, Any], None]]:
    connected: list[tuple[NamedSignal, Any]] = []

    def listen(signal: NamedSignal, receiver: Any) -> None:
        signal.connect(receiver, weak=False)
        connected.append((signal, receiver))

    yield listen
    for signal, receiver in connected:
        signal.disconnect(receiver)


@pytest.mark.parametrize("broken", [False, True], ids=["receiver", "raising receiver first"])
@pytest.mark.parametrize("name", TABLE)
async def test_a_receiver_gets_each_event_once_after_commit(
    app: Quart,
    mailbox: Mailbox,
    listening: Callable[[NamedSignal, Any], None],
    name: str,
    broken: bool,
    caplog: pytest.LogCaptureFixture,
) -> None:
    signal = signals.namespace[name]
    receiver = Receiver(app)
    if broken:  # it raises first; the action still succeeds and the next receiver still hears
        listening(signal, raising)
    listening(signal, receiver)
    action = TABLE[name]
    await register(app, mailbox)
    if action is not None:
        await action(app, mailbox)
    await drain(app)
    assert len(receiver.events) == 1, [event for event, _ in receiver.events]
    ((event, was_committed),) = receiver.events
    assert was_committed, f"{name} was sent before its change committed"
    assert event.name == name
    assert event.user_id == await user_id(app, event)
    if name not in {"account_deactivated", "account_activated"}:  # those come from the CLI
        assert event.request_id is not None
    failures = [r for r in caplog.records if "receiver of the" in r.getMessage()]
    assert len(failures) == (1 if broken else 0)


async def user_id(app: Quart, event: AccountEvent) -> Any:
    if event.name == "account_deleted":
        return event.user_id  # gone: nothing to compare with but itself
    # Alice, whatever her address by now; or Root, the administrator who acted.
    query = "SELECT id FROM users WHERE (email = :root) = :is_root"
    return await fetch_val(app, query, {"root": ROOT, "is_root": event.name == "admin_action"})


async def test_a_failed_change_signals_nothing(
    app: Quart, mailbox: Mailbox, listening: Callable[[NamedSignal, Any], None]
) -> None:
    """A wrong current password: no password_changed, though a sign_in_failed."""
    changed, failed = Receiver(app), Receiver(app)
    listening(signals.password_changed, changed)
    listening(signals.sign_in_failed, failed)
    await register(app, mailbox)
    client = await signed_in(app)
    body = {"current_password": "not the password", "new_password": NEW_PASSWORD}
    assert (await client.post("/api/me/password", json=body)).status_code == 400
    await drain(app)
    assert changed.events == []
    assert [event.kind for event, _ in failed.events] == ["password_check_failed"]


async def test_an_event_carries_its_client(
    app: Quart, mailbox: Mailbox, listening: Callable[[NamedSignal, Any], None]
) -> None:
    receiver = Receiver(app)
    listening(signals.signed_in, receiver)
    await register(app, mailbox)
    client = app.test_client()
    response = await client.post(
        "/api/auth/login", json={"email": EMAIL, "password": PASSWORD},
        headers={"User-Agent": "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Firefox/128.0",
                 "X-Request-ID": "trace-7"},
        scope_base={"client": ("192.0.2.44", 40000)},
    )  # fmt: skip
    assert response.status_code == 200
    ((event, _),) = receiver.events
    assert (event.ip, event.request_id) == ("192.0.2.44", "trace-7")
    assert "Firefox" in (event.user_agent or "")
    assert event.details == {"remember": False, "amr": ["pwd"]}
