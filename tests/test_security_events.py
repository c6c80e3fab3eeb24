"""Security events: recorded with each change they report, listed newest first by page,
readable with a session or a profile:read token, pruned after the retention, gone with the user."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from quart import Quart
from quart.typing import TestClientProtocol as Client

from authapp import create_app
from authapp.accounts import audit
from authapp.config import ConfigError, load_settings
from authapp.models.users import User
from tests.conftest import (
    EMPTY_TABLES,
    PASSWORD,
    Clock,
    app_state,
    execute,
    fetch_val,
    settings_for,
)
from tests.forms import FIREFOX, forget_device
from tests.mailbox import Mailbox, drain

MakeUser = Callable[..., Awaitable[User]]
NEW_PASSWORD = "a brand new passphrase 2026"
ADDRESS = {"client": ("192.0.2.7", 40000)}
BROWSER = {"User-Agent": FIREFOX}


async def events(client: Client, **query: Any) -> list[dict[str, Any]]:
    response = await client.get("/api/me/events", query_string=query)
    assert response.status_code == 200, await response.get_data(as_text=True)
    return list((await response.get_json())["events"])


def kinds(found: list[dict[str, Any]]) -> list[str]:
    return [event["kind"] for event in found]


async def sign_in(app: Quart, password: str = PASSWORD) -> Client:
    client = app.test_client()
    response = await client.post(
        "/api/auth/login", json={"email": "alice@example.com", "password": password},
        headers=BROWSER, scope_base=ADDRESS,
    )  # fmt: skip
    assert response.status_code == 200
    return client


def token_of(link: str) -> str:
    return urlsplit(link).path.rsplit("/", 1)[1]


async def test_every_change_is_recorded_with_its_time_address_and_device(
    app: Quart, make_user: MakeUser, mailbox: Mailbox, clock: Clock
) -> None:
    await make_user()
    stranger = app.test_client()
    await stranger.post(
        "/api/auth/login", json={"email": "alice@example.com", "password": "a wrong guess!"},
        headers=BROWSER, scope_base=ADDRESS,
    )  # fmt: skip
    alice = await sign_in(app)
    other = await sign_in(app)
    assert (await alice.post("/api/auth/reauth", json={"password": PASSWORD})).status_code == 204
    created = await alice.post("/api/tokens", json={"name": "script", "scopes": ["profile:read"]})
    token_id = (await created.get_json())["id"]
    assert (await alice.delete(f"/api/tokens/{token_id}")).status_code == 204
    listed = await (await alice.get("/api/sessions")).get_json()
    (other_session,) = [item["id"] for item in listed["sessions"] if not item["current"]]
    assert (await alice.delete(f"/api/sessions/{other_session}")).status_code == 204
    assert (await alice.post("/api/sessions/revoke-others")).status_code == 200
    changed = await alice.post(
        "/api/me/email", json={"new_email": "ada@example.com", "password": PASSWORD}
    )
    assert changed.status_code == 202
    await drain(app)
    link = mailbox.link((await mailbox.wait_for(to="ada@example.com"))[0], "/auth/confirm-email/")
    confirm = await alice.post("/api/auth/confirm-email", json={"token": token_of(link)})
    assert confirm.status_code == 204
    password = await alice.post(
        "/api/me/password", json={"current_password": PASSWORD, "new_password": NEW_PASSWORD}
    )
    assert password.status_code == 204
    assert (await alice.post("/api/auth/logout")).status_code == 204
    assert (await other.get("/api/me")).status_code == 401
    await drain(app)

    reader = app.test_client()
    login = await reader.post(
        "/api/auth/login", json={"email": "ada@example.com", "password": NEW_PASSWORD}
    )
    assert login.status_code == 200
    found = await events(reader)
    assert kinds(found) == [
        "login_succeeded", "logout", "password_changed", "email_change_confirmed",
        "email_change_requested", "sessions_revoked", "session_revoked", "token_revoked",
        "token_created", "reauthenticated", "login_succeeded", "login_succeeded", "login_failed",
    ]  # fmt: skip
    by_kind = {event["kind"]: event for event in reversed(found)}  # the newest of each kind
    failed = by_kind["login_failed"]
    assert failed["ip"] == "192.0.2.7"
    assert failed["device"] == "Firefox on Linux"
    assert failed["details"] == {"reason": "wrong_password"}
    assert failed["created_at"].startswith(clock.now.isoformat()[:19])
    assert by_kind["token_created"]["details"] == {
        "token_id": token_id, "name": "script", "scopes": ["profile:read"],
    }  # fmt: skip
    assert by_kind["token_revoked"]["details"] == {"token_id": token_id, "name": "script"}
    assert by_kind["session_revoked"]["details"] == {"session_id": other_session}
    assert by_kind["sessions_revoked"]["details"] == {"which": "others", "count": 0}
    assert by_kind["email_change_requested"]["details"] == {"new_email": "ada@example.com"}
    assert by_kind["email_change_confirmed"]["details"] == {
        "old_email": "alice@example.com", "new_email": "ada@example.com",
    }  # fmt: skip
    assert by_kind["password_changed"]["details"] == {"sessions_revoked": 0, "tokens_revoked": 0}
    assert by_kind["logout"]["details"] == {}


async def test_a_reset_and_signing_out_everywhere_are_recorded(
    app: Quart, make_user: MakeUser, mailbox: Mailbox
) -> None:
    await make_user()
    alice = await sign_in(app)
    await sign_in(app)
    assert (await alice.post("/api/sessions/revoke-all")).status_code == 200
    await alice.post("/api/auth/forgot-password", json={"email": "alice@example.com"})
    await drain(app)
    link = mailbox.link((await mailbox.wait_for(1))[0], "/auth/reset-password/")
    reset = await alice.post(
        "/api/auth/reset-password", json={"token": token_of(link), "password": NEW_PASSWORD}
    )
    assert reset.status_code == 204
    found = await events(await sign_in(app, NEW_PASSWORD))
    assert kinds(found) == [
        "login_succeeded", "password_reset", "sessions_revoked", "login_succeeded",
        "login_succeeded",
    ]  # fmt: skip
    assert found[1]["details"] == {"sessions_revoked": 0, "tokens_revoked": 0}
    assert found[2]["details"] == {"which": "all", "count": 2}


async def test_lockouts_and_wrong_current_passwords_are_recorded(
    app: Quart, signed_in: Client
) -> None:
    forget_device(signed_in)  # the lockout counts untrusted clients only
    with pytest.MonkeyPatch.context() as patch:
        settings = replace(app_state(app).settings, lockout_threshold=2)
        patch.setattr(app_state(app), "settings", settings)
        for _ in range(3):
            await signed_in.post("/api/auth/reauth", json={"password": "a wrong guess!"})
        await drain(app)
    found = await events(signed_in)
    assert kinds(found) == [
        "password_check_failed", "account_locked", "password_check_failed",
        "password_check_failed", "login_succeeded",
    ]  # fmt: skip
    assert found[0]["details"] == {"reason": "locked"}
    assert found[1]["details"]["failures"] == 2
    assert found[2]["details"] == {"reason": "wrong_password"}


async def test_an_unknown_email_records_nothing(app: Quart, client: Client) -> None:
    response = await client.post(
        "/api/auth/login", json={"email": "nobody@example.com", "password": "a wrong guess!"}
    )
    assert response.status_code == 401
    await drain(app)
    assert await fetch_val(app, "SELECT count(*) FROM security_events") == 0


async def test_nothing_is_recorded_for_a_change_that_did_not_happen(
    app: Quart, signed_in: Client
) -> None:
    body = {"name": "script", "scopes": ["profile:read"]}
    assert (await signed_in.post("/api/tokens", json=body)).status_code == 201
    assert (await signed_in.post("/api/tokens", json=body)).status_code == 409
    unknown = "00000000-0000-4000-8000-000000000000"
    assert (await signed_in.delete(f"/api/sessions/{unknown}")).status_code == 404
    assert (await signed_in.delete(f"/api/tokens/{unknown}")).status_code == 404
    assert kinds(await events(signed_in)) == ["token_created", "login_succeeded"]


async def add_events(app: Quart, user: User, count: int) -> None:
    """Events from outside any request (as the CLI would record them): no address, no device."""
    async with app_state(app).db.connection() as connection:
        for _ in range(count):
            await audit.record(connection, user.id, "reauthenticated")


async def test_pages_run_newest_first_without_gaps_or_repeats(
    app: Quart, make_user: MakeUser, clock: Clock
) -> None:
    user = await make_user()
    await add_events(app, user, 24)  # all at the same instant: the order of insertion decides
    alice = await sign_in(app)
    newest = await events(alice, limit=100)
    assert len(newest) == 25
    assert newest[0]["kind"] == "login_succeeded"
    assert newest[1]["ip"] is None
    assert newest[1]["device"] is None
    pages, before = [], None
    while True:
        query = {"limit": 10} if before is None else {"limit": 10, "before": before}
        page = await (await alice.get("/api/me/events", query_string=query)).get_json()
        pages.append(page["events"])
        before = page["next_before"]
        if before is None:
            break
    assert [len(page) for page in pages] == [10, 10, 5]
    assert [event["id"] for page in pages for event in page] == [event["id"] for event in newest]
    assert len(await events(alice)) == 20  # the default page


async def test_only_your_own_events(app: Quart, make_user: MakeUser) -> None:
    bob = await make_user("bob@example.com")
    await add_events(app, bob, 1)
    bobs = await fetch_val(app, "SELECT id FROM security_events")
    await make_user()
    alice = await sign_in(app)
    assert kinds(await events(alice)) == ["login_succeeded"]
    response = await alice.get("/api/me/events", query_string={"before": str(bobs)})
    assert response.status_code == 400
    assert (await response.get_json())["details"][0]["field"] == "before"


@pytest.mark.parametrize(
    "query",
    [{"limit": "0"}, {"limit": "101"}, {"limit": "ten"}, {"limit": "1.5"}, {"before": "x"},
     {"before": "00000000-0000-4000-8000-000000000000"}, {"page": "2"},
     {"limit": ["1", "2"]}],
)  # fmt: skip
async def test_bad_queries_are_400(signed_in: Client, query: dict[str, Any]) -> None:
    response = await signed_in.get("/api/me/events", query_string=query)
    assert response.status_code == 400
    assert (await response.get_json())["code"] == "VALIDATION_ERROR"


async def test_a_token_reads_events_only_with_profile_read(signed_in: Client, app: Quart) -> None:
    tokens = {}
    for scopes in (["profile:read"], ["profile:write"]):
        created = await signed_in.post("/api/tokens", json={"name": scopes[0], "scopes": scopes})
        tokens[scopes[0]] = (await created.get_json())["token"]
    program = app.test_client()
    readable = await program.get(
        "/api/me/events", headers={"Authorization": f"Bearer {tokens['profile:read']}"}
    )
    assert readable.status_code == 200
    refused = await program.get(
        "/api/me/events", headers={"Authorization": f"Bearer {tokens['profile:write']}"}
    )
    assert refused.status_code == 403
    assert (await app.test_client().get("/api/me/events")).status_code == 401


async def test_events_go_with_the_user(app: Quart, signed_in: Client) -> None:
    assert await fetch_val(app, "SELECT count(*) FROM security_events") == 1
    deleted = await signed_in.delete("/api/me", json={"password": PASSWORD})
    assert deleted.status_code == 204
    assert await fetch_val(app, "SELECT count(*) FROM security_events") == 0


@pytest.mark.settings(SECURITY_EVENT_RETENTION_DAYS="30")
async def test_pruning_deletes_only_what_is_older_than_the_retention(
    app: Quart, make_user: MakeUser, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    user = await make_user()
    start = clock.now
    clock.advance(days=-31)
    await add_events(app, user, 3)
    clock.advance(days=2)
    await add_events(app, user, 2)
    clock.set(start)
    monkeypatch.setattr(audit, "SWEEP_BATCH", 2)  # several batches
    assert await audit.prune(app_state(app).db, app_state(app).settings) == 3
    assert await fetch_val(app, "SELECT count(*) FROM security_events") == 2


async def test_a_serving_app_sweeps_by_itself(
    database_url: str, tmp_path: Path, smtp_server: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(audit, "SWEEP_EVERY", 0.05)
    app = create_app(settings_for(database_url, tmp_path, SMTP_URL=smtp_server.url))
    async with app.test_app():
        await execute(app, EMPTY_TABLES)
        await execute(
            app,
            """INSERT INTO users (email, email_key, password_hash, display_name)
               VALUES ('old@example.com', 'old@example.com', '$argon2id$x', 'Old')""",
        )
        await execute(
            app,
            """INSERT INTO security_events (user_id, kind, created_at)
               SELECT id, 'logout', now() - interval '91 days' FROM users""",
        )
        deadline = time.monotonic() + 10
        while await fetch_val(app, "SELECT count(*) FROM security_events"):
            assert time.monotonic() < deadline, "the sweep never came"
            await asyncio.sleep(0.05)
        await execute(app, "DELETE FROM users")


def test_the_retention_must_be_positive() -> None:
    with pytest.raises(ConfigError, match="AUTHAPP_SECURITY_EVENT_RETENTION_DAYS must be positive"):
        load_settings(environ={"AUTHAPP_ENV": "testing",
                               "AUTHAPP_SECURITY_EVENT_RETENTION_DAYS": "0"})  # fmt: skip


@pytest.mark.settings(TRUSTED_PROXY_HOPS="1")
async def test_behind_a_trusted_proxy_the_forwarded_address_is_recorded(
    app: Quart, make_user: MakeUser
) -> None:
    await make_user()
    client = app.test_client()
    response = await client.post(
        "/api/auth/login", json={"email": "alice@example.com", "password": PASSWORD},
        headers={"X-Forwarded-For": "203.0.113.9"}, scope_base=ADDRESS,
    )  # fmt: skip
    assert response.status_code == 200
    (event,) = await events(client)
    assert event["ip"] == "203.0.113.9"


async def test_without_a_trusted_proxy_the_forwarded_address_is_ignored(
    app: Quart, make_user: MakeUser
) -> None:
    await make_user()
    client = app.test_client()
    await client.post(
        "/api/auth/login", json={"email": "alice@example.com", "password": PASSWORD},
        headers={"X-Forwarded-For": "203.0.113.9"}, scope_base=ADDRESS,
    )  # fmt: skip
    (event,) = await events(client)
    assert event["ip"] == "192.0.2.7"
