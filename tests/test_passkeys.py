"""Passkeys through the JSON API, answered by a software authenticator (tests/authenticators.py):
adding, listing, naming, removing; a passkey alone; a passkey as the second factor; and what an
attacker tries (another origin or RP ID, a used, expired or someone else's challenge, another
user's key or handle, a cloned key's counter, no user verification, one challenge twice at
once, a deactivated account)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from email.message import EmailMessage
from typing import Any

import pytest
from quart import Quart
from quart.typing import TestClientProtocol as Client

from authapp.models.users import User
from tests.authenticators import SoftAuthenticator
from tests.conftest import PASSWORD, Clock, execute, fetch_val
from tests.mailbox import Mailbox
from tests.test_mfa import enrol, mail_with_subject, mid_step, text_of

MakeUser = Callable[..., Awaitable[User]]
EMAIL = "alice@example.com"
REJECTED = {"code": "INVALID_CREDENTIALS", "message": "This passkey did not sign you in."}


async def mails_with_subject(mailbox: Mailbox, subject: str, count: int) -> list[EmailMessage]:
    for _ in range(200):
        found = [each for each in mailbox.messages if str(each["Subject"]) == subject]
        if len(found) >= count:
            return found
        await asyncio.sleep(0.02)
    raise AssertionError(f"fewer than {count} mails {subject!r}")


async def add(client: Client, authenticator: SoftAuthenticator, **lie: Any) -> Any:
    """Ask for registration options and answer them (`lie`: what the authenticator fakes)."""
    options = await client.post("/api/me/passkeys/options")
    assert options.status_code == 200, await options.get_data(as_text=True)
    name = lie.pop("name", None)
    body: dict[str, Any] = {"credential": authenticator.create(await options.get_json(), **lie)}
    if name is not None:
        body["name"] = name
    return await client.post("/api/me/passkeys", json=body)


async def added(client: Client) -> SoftAuthenticator:
    authenticator = SoftAuthenticator()
    response = await add(client, authenticator)
    assert response.status_code == 201, await response.get_data(as_text=True)
    return authenticator


async def sign_in_options(client: Client) -> dict[str, Any]:
    response = await client.post("/api/auth/passkey/options")
    assert response.status_code == 200, await response.get_data(as_text=True)
    options: dict[str, Any] = await response.get_json()
    return options


async def passkey_sign_in(client: Client, authenticator: SoftAuthenticator, **lie: Any) -> Any:
    options = await sign_in_options(client)
    return await client.post(
        "/api/auth/passkey", json={"credential": authenticator.get(options, **lie)}
    )


async def rejected(response: Any) -> None:
    assert response.status_code == 401, await response.get_data(as_text=True)
    body = await response.get_json()
    assert {key: body[key] for key in ("code", "message")} == REJECTED


async def amr_of(client: Client) -> list[str]:
    sessions = (await (await client.get("/api/sessions")).get_json())["sessions"]
    amr: list[str] = next(item for item in sessions if item["current"])["amr"]
    return amr


# --- adding, listing, naming, removing -------------------------------------------------------


async def test_a_passkey_is_added_listed_renamed_and_removed(
    app: Quart, signed_in: Client, mailbox: Mailbox
) -> None:
    options = await (await signed_in.post("/api/me/passkeys/options")).get_json()
    assert options["rp"] == {"id": "localhost", "name": "authapp"}
    assert options["authenticatorSelection"]["residentKey"] == "preferred"
    assert options["authenticatorSelection"]["userVerification"] == "preferred"
    assert options["excludeCredentials"] == []
    user_id = str(await fetch_val(app, "SELECT id FROM users"))
    # The user handle is random: neither the id nor the email.
    handle = options["user"]["id"]
    assert user_id.replace("-", "") not in handle
    assert "alice" not in handle
    assert options["user"]["name"] == EMAIL

    authenticator = await added(signed_in)
    second = SoftAuthenticator()
    response = await add(signed_in, second, name="Laptop")
    assert response.status_code == 201
    body = await response.get_json()
    assert set(body) == {"id", "name", "created_at", "last_used_at", "backed_up", "transports"}
    assert body["name"] == "Laptop"
    assert body["transports"] == ["internal"]
    listed = (await (await signed_in.get("/api/me/passkeys")).get_json())["passkeys"]
    assert [each["name"] for each in listed] == ["Passkey", "Laptop"]
    again = await (await signed_in.post("/api/me/passkeys/options")).get_json()
    assert len(again["excludeCredentials"]) == 2
    assert again["user"]["id"] == handle  # one handle per user
    await mail_with_subject(mailbox, "A passkey was added")

    taken = await signed_in.patch(f"/api/me/passkeys/{body['id']}", json={"name": "Passkey"})
    assert taken.status_code == 409
    assert (await taken.get_json())["code"] == "PASSKEY_NAME_TAKEN"
    renamed = await signed_in.patch(f"/api/me/passkeys/{body['id']}", json={"name": " Phone "})
    assert (await renamed.get_json())["name"] == "Phone"

    mfa = await (await signed_in.get("/api/me/mfa")).get_json()
    assert mfa["methods"] == ["webauthn"]
    assert await fetch_val(app, "SELECT count(*) FROM security_events WHERE kind = 'passkey_added'")

    assert (await signed_in.delete(f"/api/me/passkeys/{body['id']}")).status_code == 204
    first_id = listed[0]["id"]
    assert (await signed_in.delete(f"/api/me/passkeys/{first_id}")).status_code == 204
    notices = await mails_with_subject(mailbox, "A passkey was removed", 2)
    assert "last second factor" not in text_of(notices[0])
    assert "last second factor" in text_of(notices[1])
    assert (await signed_in.delete(f"/api/me/passkeys/{first_id}")).status_code == 404
    assert (await (await signed_in.get("/api/me/mfa")).get_json())["methods"] == []
    last = await fetch_val(
        app,
        """SELECT string_agg(details->>'last_second_factor', ',' ORDER BY seq)
             FROM security_events WHERE kind = 'passkey_removed'""",
    )
    assert last == "false,true"
    # A key removed signs nobody in.
    await rejected(await passkey_sign_in(app.test_client(), authenticator))


@pytest.mark.parametrize(
    "lie",
    [{"origin": "https://evil.example"}, {"rp_id": "evil.example"},
     {"origin": "http://localhost:8000"}],
    ids=["wrong origin", "wrong RP ID", "another port"],
)  # fmt: skip
async def test_a_passkey_from_elsewhere_is_refused(signed_in: Client, lie: dict[str, str]) -> None:
    response = await add(signed_in, SoftAuthenticator(), **lie)
    assert response.status_code == 400
    assert (await response.get_json())["code"] == "PASSKEY_INVALID"
    assert (await (await signed_in.get("/api/me/passkeys")).get_json())["passkeys"] == []


async def test_a_registration_challenge_is_single_use_and_expires(
    signed_in: Client, clock: Clock
) -> None:
    options = await (await signed_in.post("/api/me/passkeys/options")).get_json()
    first = await signed_in.post(
        "/api/me/passkeys", json={"credential": SoftAuthenticator().create(options)}
    )
    assert first.status_code == 201
    reused = await signed_in.post(
        "/api/me/passkeys", json={"credential": SoftAuthenticator().create(options)}
    )
    assert reused.status_code == 400
    assert (await reused.get_json())["code"] == "PASSKEY_INVALID"

    options = await (await signed_in.post("/api/me/passkeys/options")).get_json()
    clock.advance(minutes=5, seconds=1)
    expired = await signed_in.post(
        "/api/me/passkeys", json={"credential": SoftAuthenticator().create(options)}
    )
    assert expired.status_code == 400


async def test_another_users_challenge_or_key_cannot_be_added(
    app: Quart, signed_in: Client, make_user: MakeUser
) -> None:
    await make_user("bob@example.com")
    bob = app.test_client()
    await bob.post("/api/auth/login", json={"email": "bob@example.com", "password": PASSWORD})
    alices = await (await signed_in.post("/api/me/passkeys/options")).get_json()
    stolen = await bob.post(
        "/api/me/passkeys", json={"credential": SoftAuthenticator().create(alices)}
    )
    assert stolen.status_code == 400  # a challenge made for Alice

    # One authenticator's key is never two accounts' key.
    authenticator = await added(signed_in)
    twice = await add(bob, authenticator)
    assert twice.status_code == 400
    assert (await twice.get_json())["code"] == "PASSKEY_INVALID"
    # Nor can Bob see, rename or remove Alice's.
    alices_id = (await (await signed_in.get("/api/me/passkeys")).get_json())["passkeys"][0]["id"]
    assert (await bob.get("/api/me/passkeys")).status_code == 200
    assert (await (await bob.get("/api/me/passkeys")).get_json())["passkeys"] == []
    renamed = await bob.patch(f"/api/me/passkeys/{alices_id}", json={"name": "mine"})
    assert renamed.status_code == 404
    assert (await renamed.get_json())["code"] == "PASSKEY_NOT_FOUND"
    assert (await bob.delete(f"/api/me/passkeys/{alices_id}")).status_code == 404


async def test_adding_needs_a_fresh_session_and_is_a_change_of_credentials(
    app: Quart, signed_in: Client, clock: Clock
) -> None:
    other = app.test_client()
    await other.post("/api/auth/login", json={"email": EMAIL, "password": PASSWORD})
    await added(signed_in)
    assert (await other.get("/api/me")).status_code == 401  # signed out by the change
    assert (await signed_in.get("/api/me")).status_code == 200
    clock.advance(minutes=16)  # past AUTHAPP_FRESHNESS
    stale = await signed_in.post("/api/me/passkeys/options")
    assert stale.status_code == 401
    assert (await stale.get_json())["code"] == "REAUTH_REQUIRED"


# --- a passkey alone ---------------------------------------------------------------------------


async def test_a_passkey_alone_signs_in(app: Quart, signed_in: Client, clock: Clock) -> None:
    authenticator = await added(signed_in)
    client = app.test_client()
    options = await sign_in_options(client)
    assert options["allowCredentials"] == []  # discoverable: nobody is named yet
    assert options["userVerification"] == "required"
    response = await client.post(
        "/api/auth/passkey", json={"credential": authenticator.get(options)}
    )
    assert response.status_code == 200, await response.get_data(as_text=True)
    assert (await response.get_json())["email"] == EMAIL
    assert await amr_of(client) == ["hwk", "user"]
    # Fresh: it may add another passkey at once.
    assert (await client.post("/api/me/passkeys/options")).status_code == 200
    assert (
        await fetch_val(app, "SELECT count(*) FROM security_events WHERE kind = 'passkey_sign_in'")
        == 1
    )
    listed = (await (await client.get("/api/me/passkeys")).get_json())["passkeys"]
    assert listed[0]["last_used_at"] is not None

    # The challenge was single use.
    reused = await client.post("/api/auth/passkey", json={"credential": authenticator.get(options)})
    await rejected(reused)
    # And it expires.
    options = await sign_in_options(client)
    clock.advance(minutes=5, seconds=1)
    await rejected(
        await client.post("/api/auth/passkey", json={"credential": authenticator.get(options)})
    )


@pytest.mark.parametrize(
    "lie",
    [{"origin": "https://evil.example"}, {"rp_id": "evil.example"}, {"uv": False},
     {"user_handle": b"\x01" * 32}],
    ids=["wrong origin", "wrong RP ID", "no user verification", "another handle"],
)  # fmt: skip
async def test_every_failure_is_one_answer(
    app: Quart, signed_in: Client, lie: dict[str, Any]
) -> None:
    authenticator = await added(signed_in)
    client = app.test_client()
    await rejected(await passkey_sign_in(client, authenticator, **lie))
    assert (await client.get("/api/me")).status_code == 401
    failed = await fetch_val(
        app, "SELECT count(*) FROM security_events WHERE kind = 'passkey_failed'"
    )
    assert failed == 1


async def test_unknown_keys_and_missing_challenges_get_the_same_answer(
    app: Quart, signed_in: Client
) -> None:
    await added(signed_in)
    client = app.test_client()
    await rejected(await passkey_sign_in(client, SoftAuthenticator()))  # an unknown key
    options = await sign_in_options(app.test_client())  # another client's challenge
    await rejected(
        await client.post(
            "/api/auth/passkey", json={"credential": SoftAuthenticator().get(options)}
        )
    )
    garbage = {"id": "x", "rawId": "x", "type": "public-key", "response": {}}
    await sign_in_options(client)
    await rejected(await client.post("/api/auth/passkey", json={"credential": garbage}))


async def test_a_counter_gone_back_is_a_cloned_key(app: Quart, signed_in: Client) -> None:
    authenticator = await added(signed_in)
    client = app.test_client()
    assert (await passkey_sign_in(client, authenticator, sign_count=7)).status_code == 200
    clone = app.test_client()
    await rejected(await passkey_sign_in(clone, authenticator, sign_count=7))
    await rejected(await passkey_sign_in(clone, authenticator, sign_count=3))
    reasons = await fetch_val(
        app,
        """SELECT string_agg(details->>'reason', ',' ORDER BY seq) FROM security_events
            WHERE kind = 'passkey_failed'""",
    )
    assert reasons == "sign_count,sign_count"
    assert (await passkey_sign_in(clone, authenticator, sign_count=8)).status_code == 200


async def test_a_key_that_never_counts_signs_in_again(app: Quart, signed_in: Client) -> None:
    authenticator = await added(signed_in)
    for _ in range(2):
        response = await passkey_sign_in(app.test_client(), authenticator, sign_count=0)
        assert response.status_code == 200


async def test_one_challenge_used_twice_at_once_signs_in_once(
    app: Quart, signed_in: Client
) -> None:
    authenticator = await added(signed_in)
    client = app.test_client()
    options = await sign_in_options(client)
    credential = authenticator.get(options, sign_count=0)
    answers = await asyncio.gather(
        *(client.post("/api/auth/passkey", json={"credential": credential}) for _ in range(4))
    )
    assert sorted(each.status_code for each in answers) == [200, 401, 401, 401]


async def test_a_deactivated_account_does_not_sign_in(app: Quart, signed_in: Client) -> None:
    authenticator = await added(signed_in)
    await execute(app, "UPDATE users SET is_active = false")
    await rejected(await passkey_sign_in(app.test_client(), authenticator))


async def test_a_locked_account_signs_in_with_its_passkey(app: Quart, signed_in: Client) -> None:
    """The lockout is against guessed passwords; a passkey cannot be guessed, and a stranger
    who knows a key's id must not lock its owner out."""
    authenticator = await added(signed_in)
    await execute(app, "UPDATE users SET locked_until = now() + interval '1 hour'")
    assert (await passkey_sign_in(app.test_client(), authenticator)).status_code == 200
    assert await fetch_val(app, "SELECT failed_logins FROM users") == 0


# --- a passkey as the second factor --------------------------------------------------------


async def test_a_passkey_is_the_second_factor_after_a_password(
    app: Quart, signed_in: Client, make_user: MakeUser
) -> None:
    authenticator = await added(signed_in)
    client = app.test_client()
    first = await client.post("/api/auth/login", json={"email": EMAIL, "password": PASSWORD})
    assert first.status_code == 202
    assert (await first.get_json())["methods"] == ["webauthn"]
    options = await sign_in_options(client)
    assert len(options["allowCredentials"]) == 1  # the password named the account
    assert options["userVerification"] == "preferred"
    second = await client.post(
        "/api/auth/mfa", json={"credential": authenticator.get(options, uv=False)}
    )
    assert second.status_code == 200, await second.get_data(as_text=True)
    assert await amr_of(client) == ["pwd", "hwk"]

    # Another user's passkey is no second factor of Alice's.
    await make_user("bob@example.com")
    bob = app.test_client()
    await bob.post("/api/auth/login", json={"email": "bob@example.com", "password": PASSWORD})
    bobs = await added(bob)
    client = app.test_client()
    await client.post("/api/auth/login", json={"email": EMAIL, "password": PASSWORD})
    options = await sign_in_options(client)
    wrong = await client.post("/api/auth/mfa", json={"credential": bobs.get(options)})
    assert wrong.status_code == 400
    assert (await wrong.get_json())["code"] == "MFA_CODE_INVALID"
    assert (await client.get("/api/me")).status_code == 401
    # A challenge made for a passkey alone (before the password) is none for the second factor.
    client = app.test_client()
    alone = await sign_in_options(client)
    await client.post("/api/auth/login", json={"email": EMAIL, "password": PASSWORD})
    response = await client.post("/api/auth/mfa", json={"credential": authenticator.get(alone)})
    assert response.status_code == 400


async def test_with_totp_and_a_passkey_both_are_offered(
    app: Quart, signed_in: Client, clock: Clock
) -> None:
    mid_step(clock)
    await enrol(signed_in, clock)
    await signed_in.post("/api/auth/reauth", json={"password": PASSWORD})
    await added(signed_in)
    first = await app.test_client().post(
        "/api/auth/login", json={"email": EMAIL, "password": PASSWORD}
    )
    assert (await first.get_json())["methods"] == ["totp", "recovery_code", "webauthn"]


@pytest.mark.settings(MFA_REQUIRED="true", RATE_LIMIT_ENABLED="false")
async def test_a_passkey_satisfies_mfa_required(signed_in: Client) -> None:
    assert (await signed_in.get("/api/me")).status_code == 403
    await added(signed_in)
    assert (await signed_in.get("/api/me")).status_code == 200
