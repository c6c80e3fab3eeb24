"""Throttled login and registration: 429 + Retry-After, per address and per account."""

from __future__ import annotations

import asyncio
import re
import secrets
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from quart import Quart
from quart.typing import TestClientProtocol as Client

from authapp import create_app
from authapp.models.users import User
from tests.conftest import PASSWORD, Clock, app_state, settings_for
from tests.forms import api_client
from tests.mailbox import SmtpServer
from tests.servers import hypercorn

WRONG = "definitely the wrong password"
MakeUser = Callable[..., Awaitable[User]]
Login = Callable[..., Awaitable[Any]]


def from_address(address: str) -> dict[str, Any]:
    return {"scope_base": {"client": (address, 40000)}}


async def attempt(client: Client, email: str, **kwargs: Any) -> Any:
    return await client.post("/api/auth/login", json={"email": email, "password": WRONG}, **kwargs)


async def test_login_is_limited_per_address(client: Client) -> None:
    for number in range(10):
        response = await attempt(client, f"user{number}@example.com")
        assert response.status_code == 401
    response = await attempt(client, "user10@example.com")
    assert response.status_code == 429
    body = await response.get_json()
    assert body["code"] == "RATE_LIMITED"
    assert "Try again in" in body["message"]
    assert 1 <= int(response.headers["Retry-After"]) <= 60
    # Another address still gets through.
    other = await attempt(client, "user11@example.com", **from_address("192.0.2.7"))
    assert other.status_code == 401


async def test_a_rotating_x_forwarded_for_gives_no_fresh_attempts(client: Client) -> None:
    for number in range(10):
        forged = {"X-Forwarded-For": f"203.0.113.{number}", "Forwarded": f"for=203.0.113.{number}"}
        response = await attempt(client, f"user{number}@example.com", headers=forged)
        assert response.status_code == 401
    response = await attempt(
        client, "user10@example.com", headers={"X-Forwarded-For": "198.51.100.99"}
    )
    assert response.status_code == 429


@pytest.mark.settings(TRUSTED_PROXY_HOPS=1)
async def test_with_a_trusted_proxy_the_forwarded_address_counts(client: Client) -> None:
    proxy = from_address("10.0.0.1")
    for number in range(12):
        headers = {"X-Forwarded-For": f"203.0.113.{number}"}
        response = await attempt(client, f"user{number}@example.com", headers=headers, **proxy)
        assert response.status_code == 401
    for _ in range(10):
        await attempt(client, "again@example.com", headers={"X-Forwarded-For": "203.0.113.50"})
    blocked = await attempt(
        client, "again@example.com", headers={"X-Forwarded-For": "203.0.113.50"}, **proxy
    )
    assert blocked.status_code == 429


async def test_login_is_limited_per_account_across_addresses(client: Client) -> None:
    for number in range(5):
        response = await attempt(client, "victim@example.com", **from_address(f"192.0.2.{number}"))
        assert response.status_code == 401
    # Case and spaces do not make a new account key.
    response = await attempt(client, "  VICTIM@example.com ", **from_address("192.0.2.200"))
    assert response.status_code == 429
    assert int(response.headers["Retry-After"]) > 60  # the 15-minute window


async def test_the_form_login_shares_the_json_login_budget(client: Client) -> None:
    for _ in range(5):
        await attempt(client, "shared@example.com", **from_address("192.0.2.1"))
    page = await client.get("/auth/login")
    assert page.status_code == 200
    response = await client.post(
        "/auth/login",
        form={"email": "shared@example.com", "password": WRONG, "csrf_token": "whatever"},
        headers={"Accept": "text/html"},
    )
    assert response.status_code == 429
    assert "Try again in" in await response.get_data(as_text=True)


async def test_a_429_costs_no_hash_and_no_query(client: Client, app: Quart) -> None:
    state = app_state(app)
    hashes = 0
    verify, hash_ = state.hashing.verify, state.hashing.hash

    async def counting_verify(*args: Any) -> bool:
        nonlocal hashes
        hashes += 1
        return await verify(*args)

    async def counting_hash(*args: Any) -> str:
        nonlocal hashes
        hashes += 1
        return await hash_(*args)

    state.hashing.verify = counting_verify  # type: ignore[method-assign]
    state.hashing.hash = counting_hash  # type: ignore[method-assign]
    for number in range(10):
        await attempt(client, f"user{number}@example.com")
    assert hashes == 10
    queries = state.db.acquisitions
    response = await attempt(client, "user10@example.com")
    assert response.status_code == 429
    assert hashes == 10
    assert state.db.acquisitions == queries


@pytest.mark.settings(REGISTER_RATE_LIMIT_IP="2/hour")
async def test_register_is_limited_per_address(client: Client) -> None:
    for number in range(2):
        response = await client.post(
            "/api/auth/register", json={"email": f"new{number}@example.com", "password": PASSWORD}
        )
        assert response.status_code == 201
    response = await client.post(
        "/api/auth/register", json={"email": "new3@example.com", "password": PASSWORD}
    )
    assert response.status_code == 429
    assert (await response.get_json())["code"] == "RATE_LIMITED"


@pytest.mark.settings(LOGIN_RATE_LIMIT_IP="2/minute")
async def test_limits_are_settings(client: Client) -> None:
    statuses = [(await attempt(client, f"u{n}@example.com")).status_code for n in range(3)]
    assert statuses == [401, 401, 429]


@pytest.mark.settings(RATE_LIMIT_ENABLED=False)
async def test_limits_can_be_switched_off(client: Client) -> None:
    statuses = {(await attempt(client, f"u{n}@example.com")).status_code for n in range(12)}
    assert statuses == {401}


def _redis_reachable() -> bool:
    try:
        import redis

        return bool(redis.Redis(host="127.0.0.1", port=6379, socket_timeout=1).ping())
    except Exception:
        return False


@pytest.mark.skipif(not _redis_reachable(), reason="no Redis on 127.0.0.1:6379")
async def test_redis_store_shares_limits_between_apps_and_expires_keys(
    database_url: str, tmp_path: Path
) -> None:
    import redis.asyncio

    # A database number of our own and a unique address keep parallel runs apart.
    redis_url = "redis://127.0.0.1:6379/13"
    address = f"198.18.{secrets.randbelow(250)}.{secrets.randbelow(250)}"
    run = secrets.token_hex(4)
    apps = [
        create_app(
            settings_for(
                database_url, tmp_path, REDIS_URL=redis_url, LOGIN_RATE_LIMIT_IP="4/minute"
            )
        )
        for _ in range(2)
    ]
    async with apps[0].test_app(), apps[1].test_app():
        clients = [app.test_client() for app in apps]
        statuses = [
            (
                await attempt(clients[n % 2], f"r{n}.{run}@example.com", **from_address(address))
            ).status_code
            for n in range(5)
        ]
        assert statuses == [401, 401, 401, 401, 429]
        keys = redis.asyncio.from_url(redis_url)
        try:
            names = [key async for key in keys.scan_iter(match=f"*{address}*")]
            assert names
            ttls = await asyncio.gather(*(keys.pttl(name) for name in names))
            assert all(0 < ttl <= 60_000 for ttl in ttls)
        finally:
            await keys.aclose()


async def test_unicode_forms_of_one_email_share_the_account_budget(client: Client) -> None:
    """é typed composed or decomposed is one account to the lookup, so one budget too."""
    composed, decomposed = "ren\u00e9@example.com", "rene\u0301@example.com"
    for number in range(5):
        email = composed if number % 2 else decomposed
        response = await attempt(client, email, **from_address(f"192.0.2.{number}"))
        assert response.status_code == 401
    response = await attempt(client, decomposed, **from_address("192.0.2.100"))
    assert response.status_code == 429


# --- every budget is layered: per address and per account ----------------------------------


@pytest.mark.settings(MAIL_RATE_LIMIT_ACCOUNT="2/hour")
async def test_registering_one_address_is_limited_from_any_address(client: Client) -> None:
    body = {"email": "target@example.com", "password": PASSWORD}
    statuses = [
        (
            await client.post("/api/auth/register", json=body, **from_address(f"192.0.2.{n}"))
        ).status_code
        for n in range(3)
    ]
    assert statuses == [201, 409, 429]


@pytest.mark.settings(LOGIN_RATE_LIMIT_IP="3/minute", LOGIN_RATE_LIMIT_ACCOUNT="100/minute")
async def test_proving_the_password_spends_the_addresses_sign_in_budget(
    client: Client, make_user: MakeUser, login: Login
) -> None:
    await make_user()
    await login()  # a right password: it spends nothing of the address's budget
    statuses = [
        (await client.post("/api/auth/reauth", json={"password": WRONG})).status_code
        for _ in range(4)
    ]
    assert statuses == [400, 400, 400, 429]
    # The address is spent for sign-ins too, whichever account they name.
    assert (await attempt(client, "someone.else@example.com")).status_code == 429


@pytest.mark.settings(WRITE_RATE_LIMIT="2/minute")
async def test_changes_are_limited_per_address_across_accounts(
    app: Quart, make_user: MakeUser
) -> None:
    statuses = []
    for name in ("ann", "bob", "cy"):
        await make_user(email=f"{name}@example.com")
        client = await api_client(app, f"{name}@example.com")
        statuses.append((await client.patch("/api/me", json={"display_name": name})).status_code)
    assert statuses == [200, 200, 429]


@pytest.mark.settings(WRITE_RATE_LIMIT="2/minute")
async def test_changes_are_limited_per_account_across_addresses(
    client: Client, make_user: MakeUser, login: Login
) -> None:
    await make_user()
    await login()
    statuses = [
        (
            await client.patch(
                "/api/me", json={"display_name": f"A{n}"}, **from_address(f"192.0.2.{n}")
            )
        ).status_code
        for n in range(3)
    ]
    assert statuses == [200, 200, 429]


@pytest.mark.skipif(not _redis_reachable(), reason="no Redis on 127.0.0.1:6379")
def test_two_hypercorn_workers_on_one_redis_hold_the_limit_in_total(
    app: Quart, database_url: str, tmp_path: Path, smtp_server: SmtpServer
) -> None:
    """The account limit (5 per 15 minutes) holds across worker processes, not per worker."""
    log_path = tmp_path / "hypercorn.log"
    with hypercorn(
        database_url, tmp_path / "instance", smtp_server.url,
        args=["--workers", "2", "--access-logformat", "%(p)s %(m)s %(U)s %(s)s"],
        log_path=log_path,
        AUTHAPP_REDIS_URL="redis://127.0.0.1:6379/14",
        AUTHAPP_LOGIN_RATE_LIMIT_IP="1000/minute",
    ) as base:  # fmt: skip
        # The server answers once its first worker does; the flood waits for the second, or
        # the first may serve it all (a busy machine starts the second seconds later).
        deadline = time.monotonic() + 60
        while log_path.read_text().count("Running on ") < 2:
            assert time.monotonic() < deadline, log_path.read_text()[-2000:]
            time.sleep(0.05)

        def flood(email: str) -> tuple[list[int], set[str]]:
            """16 wrong passwords for one account, a connection each; the statuses, and the
            workers that served them."""

            def one_attempt(_: int) -> int:
                with httpx.Client(base_url=base, timeout=30) as http:
                    body = {"email": email, "password": WRONG}
                    return http.post("/api/auth/login", json=body).status_code

            start = len(log_path.read_text())
            with ThreadPoolExecutor(max_workers=8) as pool:
                statuses = list(pool.map(one_attempt, range(16)))
            time.sleep(0.3)  # the access log is written off the loop
            served = log_path.read_text()[start:]
            return statuses, set(re.findall(r"<(\d+)> POST /api/auth/login", served))

        # Hypercorn's workers share one socket, and the one that wakes first may accept a
        # whole burst: a flood that one worker served alone proves nothing, so another
        # account is flooded (rarely needed twice).
        for _ in range(5):
            statuses, served_by = flood(f"flood.{secrets.token_hex(4)}@example.com")
            assert sorted(statuses) == [401] * 5 + [429] * 11
            if len(served_by) == 2:
                break
        assert len(served_by) == 2, log_path.read_text()[-2000:]  # both workers took part


# --- limits punish failures, never honest success ------------------------------------------


async def test_twenty_honest_sign_ins_in_fifteen_minutes_all_succeed(
    app: Quart, make_user: MakeUser, clock: Clock
) -> None:
    """One person on many devices, from home, the office and a phone: 20 right passwords for
    one account from 3 addresses in 15 minutes. The account's budget (5 per 15 minutes)
    counts failures only, and no device here has been trusted before."""
    await make_user()
    addresses = ["192.0.2.1", "198.51.100.2", "203.0.113.3"]
    statuses = []
    for number in range(20):
        device = app.test_client()  # a new device each time: none presents a device cookie
        response = await device.post(
            "/api/auth/login", json={"email": "alice@example.com", "password": PASSWORD},
            **from_address(addresses[number % 3]),
        )  # fmt: skip
        statuses.append(response.status_code)
        clock.advance(seconds=45)
    assert statuses == [200] * 20


async def test_the_readme_session_then_an_address_change_is_not_refused(
    client: Client, app: Quart, make_user: MakeUser, login: Login
) -> None:
    """A new user's first minutes: six sign-ins, then changing the address and deleting a
    second account, each with the right password (these answered 429 when sign-ins spent the
    account's budget)."""
    await make_user()
    for _ in range(6):
        await login()
    changed = await client.post(
        "/api/me/email", json={"new_email": "ada@example.org", "password": PASSWORD}
    )
    assert changed.status_code == 202, await changed.get_data(as_text=True)
    await make_user(email="bob@example.com")
    bob = app.test_client()
    for _ in range(6):
        response = await bob.post(
            "/api/auth/login", json={"email": "bob@example.com", "password": PASSWORD}
        )
        assert response.status_code == 200
    deleted = await bob.delete("/api/me", json={"password": PASSWORD})
    assert deleted.status_code == 204


async def test_a_success_does_not_forgive_a_strangers_failures(
    app: Quart, make_user: MakeUser
) -> None:
    """The owner's right password gives back only what it spent itself."""
    await make_user()
    for number in range(4):
        stranger = await attempt(app.test_client(), "alice@example.com",
                                 **from_address(f"203.0.113.{number}"))  # fmt: skip
        assert stranger.status_code == 401
    owner = await app.test_client().post(
        "/api/auth/login", json={"email": "alice@example.com", "password": PASSWORD},
        **from_address("192.0.2.1"),
    )  # fmt: skip
    assert owner.status_code == 200
    fifth = await attempt(app.test_client(), "alice@example.com", **from_address("203.0.113.8"))
    assert fifth.status_code == 401
    sixth = await attempt(app.test_client(), "alice@example.com", **from_address("203.0.113.9"))
    assert sixth.status_code == 429


async def test_a_bad_body_spends_its_address_budget(client: Client) -> None:
    """Garbage is no free probe: it spends the address's budget, yet names no account."""
    for _ in range(10):
        response = await client.post("/api/auth/login", json={"email": 7, "password": []})
        assert response.status_code == 400
    response = await client.post("/api/auth/login", json={"email": 7, "password": []})
    assert response.status_code == 429


def _deep(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


JSON = {"Content-Type": "application/json"}
# (route, how the body is sent, the code it must get whatever other clients did)
BAD_BODIES = [
    ("/api/auth/register", {"form": {"email": "a@example.com", "password": PASSWORD}},
     "UNSUPPORTED_MEDIA_TYPE"),
    ("/api/auth/forgot-password", {"data": _deep(40), "headers": JSON}, "INVALID_BODY"),
    ("/api/auth/forgot-password", {"data": b'{"email": "a\\u0000@example.com"}', "headers": JSON},
     "INVALID_BODY"),
    ("/api/auth/forgot-password", {"data": b'{"email": "\xff"}', "headers": JSON},
     "INVALID_BODY"),
    ("/api/auth/login", {"data": b"", "headers": JSON}, "MALFORMED_JSON"),
    ("/api/auth/login", {"json": {}}, "VALIDATION_ERROR"),
    ("/api/auth/login", {"json": {"email": "alice@example.com"}}, "VALIDATION_ERROR"),
    ("/api/auth/verify-email/resend", {"json": {"email": ""}}, "VALIDATION_ERROR"),
    ("/api/auth/register", {"json": {"email": "not an address", "password": PASSWORD}},
     "VALIDATION_ERROR"),
]  # fmt: skip


@pytest.mark.parametrize(("path", "body", "code"), BAD_BODIES)
async def test_bad_bodies_get_their_own_code_whatever_others_sent(
    app: Quart, path: str, body: dict[str, Any], code: str
) -> None:
    """Another client has spent every budget of its own address with bad bodies; this one's
    bad body still gets the 400 that says what is wrong, not a 429."""
    other = app.test_client()
    for _ in range(12):
        await other.post(path, **body, **from_address("203.0.113.66"))
        await other.post("/api/auth/login", json={}, **from_address("203.0.113.66"))
    assert (await other.post(path, **body, **from_address("203.0.113.66"))).status_code == 429
    response = await app.test_client().post(path, **body, **from_address("192.0.2.33"))
    assert response.status_code == 400, await response.get_data(as_text=True)
    assert (await response.get_json())["code"] == code


async def test_the_headers_describe_the_bucket_that_decided(app: Quart) -> None:
    for number in range(4):  # four failures for one account, each from its own address
        await attempt(app.test_client(), "carol@example.com", **from_address(f"192.0.2.{number}"))
    nearly = await attempt(app.test_client(), "carol@example.com", **from_address("192.0.2.50"))
    # The account's budget (5) is nearer its end than the new address's (10).
    assert nearly.headers["RateLimit-Limit"] == "5"
    assert nearly.headers["RateLimit-Remaining"] == "0"
    refused = await attempt(app.test_client(), "carol@example.com", **from_address("192.0.2.51"))
    assert refused.status_code == 429
    assert refused.headers["RateLimit-Limit"] == "5"
    assert refused.headers["RateLimit-Remaining"] == "0"
    assert int(refused.headers["RateLimit-Reset"]) > 600
    # Another account from a busy address: the address's budget decides.
    client = app.test_client()
    for number in range(9):
        await attempt(client, f"dave{number}@example.com", **from_address("192.0.2.60"))
    last = await attempt(client, "erin@example.com", **from_address("192.0.2.60"))
    assert last.status_code == 401
    assert (last.headers["RateLimit-Limit"], last.headers["RateLimit-Remaining"]) == ("10", "0")
    over = await attempt(client, "frank@example.com", **from_address("192.0.2.60"))
    assert over.status_code == 429
    assert over.headers["RateLimit-Limit"] == "10"


async def test_an_honest_request_shows_its_budget_given_back(
    app: Quart, make_user: MakeUser
) -> None:
    await make_user()
    await attempt(app.test_client(), "alice@example.com", **from_address("192.0.2.1"))
    right = await app.test_client().post(
        "/api/auth/login", json={"email": "alice@example.com", "password": PASSWORD},
        **from_address("192.0.2.2"),
    )  # fmt: skip
    assert right.status_code == 200
    # The address spent 1 of 10 (9 left); the account still has 4 of 5, as before it.
    assert (right.headers["RateLimit-Limit"], right.headers["RateLimit-Remaining"]) == ("5", "4")


@pytest.mark.skipif(not _redis_reachable(), reason="no Redis on 127.0.0.1:6379")
async def test_redis_gives_back_what_honest_sign_ins_spent(
    database_url: str, tmp_path: Path, smtp_server: SmtpServer
) -> None:
    """The Redis store's give-back (a script of its own): right passwords cost the account
    nothing, a stranger's failures stay spent, and the headers say so."""
    run = secrets.token_hex(4)  # keys of earlier runs stay apart
    email = f"redis.{run}@example.com"
    app = create_app(
        settings_for(database_url, tmp_path, REDIS_URL="redis://127.0.0.1:6379/13",
                     SMTP_URL=smtp_server.url)
    )  # fmt: skip
    async with app.test_app():
        state = app_state(app)
        await accounts_register(app, email)
        address = f"198.19.{secrets.randbelow(250)}"
        for number in range(4):
            wrong = await attempt(app.test_client(), email, **from_address(f"{address}.{number}"))
            assert wrong.status_code == 401
        for number in range(6):
            right = await app.test_client().post(
                "/api/auth/login", json={"email": email, "password": PASSWORD},
                **from_address(f"{address}.{10 + number}"),
            )  # fmt: skip
            assert right.status_code == 200
            assert right.headers["RateLimit-Remaining"] == "1"  # 4 of 5 spent, none of it ours
        last = await attempt(app.test_client(), email, **from_address(f"{address}.30"))
        assert last.status_code == 401
        refused = await attempt(app.test_client(), email, **from_address(f"{address}.31"))
        assert refused.status_code == 429
        assert state.settings.redis_url


async def accounts_register(app: Quart, email: str) -> None:
    from authapp.accounts import registration

    state = app_state(app)
    await registration.register(state.db, state.hashing, state.settings, email=email,
                            password=PASSWORD, display_name=None)  # fmt: skip
