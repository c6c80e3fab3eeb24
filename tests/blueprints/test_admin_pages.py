"""The administrators' pages: /admin only with users:read, a searchable table, a user page
whose acts each need CSRF, a ticked confirmation and a fresh session; markup as the others."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest
from quart import Quart
from quart.typing import TestClientProtocol as Client

from authapp.accounts import roles
from authapp.models.users import User
from tests.conftest import Clock, app_state, fetch_val
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
from tests.test_page_markup import check_headers, check_markup

MakeUser = Callable[..., Awaitable[User]]


@pytest.fixture
async def people(app: Quart, make_user: MakeUser) -> dict[str, User]:
    """Alice the admin, and Bob, whom she manages."""
    found = {"alice": await make_user(display_name="Alice"),
             "bob": await make_user("bob@example.com", display_name="Bob")}  # fmt: skip
    await roles.grant_by_email(app_state(app).db, "alice@example.com", "admin")
    return found


async def browser(app: Quart, email: str = "alice@example.com") -> Client:
    client = app.test_client()
    assert (await form_login(client, await csrf_from(client), email=email)).status_code == 302
    return client


async def test_only_users_read_opens_the_admin_pages(app: Quart, people: dict[str, User]) -> None:
    bob = await browser(app, "bob@example.com")
    for path in ("/admin", f"/admin/users/{people['alice'].id}"):
        refused = await bob.get(path, headers=HTML)
        assert refused.status_code == 403
        assert "<code>FORBIDDEN</code>" in await page_text(refused)
    assert 'href="/admin"' not in await page_text(await bob.get("/account", headers=HTML))
    alice = await browser(app)
    assert 'href="/admin"' in await page_text(await alice.get("/account", headers=HTML))
    signed_out = await app.test_client().get("/admin", headers=HTML)
    assert signed_out.headers["Location"] == "/auth/login?next=/admin"


@pytest.mark.parametrize("stale", [False, True], ids=["fresh", "stale"])
async def test_the_table_and_the_user_page_are_pages_like_the_others(
    app: Quart, people: dict[str, User], clock: Clock, stale: bool
) -> None:
    alice = await browser(app)
    await api_client(app, "bob@example.com")
    if stale:
        clock.advance(minutes=16)
    table = await alice.get("/admin?query=BOB&status=active", headers=HTML)
    html = await page_text(table)
    assert table.status_code == 200
    assert f'href="/admin/users/{people["bob"].id}"' in html
    assert 'href="/admin/users/' + str(people["alice"].id) not in html
    check_markup(html)
    check_headers(table)
    page = await alice.get(f"/admin/users/{people['bob'].id}", headers=HTML)
    html = await page_text(page)
    check_markup(html)
    assert ("Confirm your password" in html) == stale
    assert ('action="/admin/users/' in html) != stale
    own = await page_text(await alice.get(f"/admin/users/{people['alice'].id}", headers=HTML))
    check_markup(own)
    assert "your own account" in own
    assert 'action="/admin/users/' not in own


async def test_an_act_needs_its_box_ticked_then_happens(
    app: Quart, people: dict[str, User]
) -> None:
    alice = await browser(app)
    bob = await api_client(app, "bob@example.com")
    page = f"/admin/users/{people['bob'].id}"
    unticked = await post_form(alice, f"{page}/deactivate", {}, page)
    assert unticked.status_code == 400
    html = await page_text(unticked)
    check_markup(html)
    assert field_error(html, "confirm-deactivate") == "Tick the box to confirm."
    assert (await bob.get("/api/me")).status_code == 200
    done = await post_form(alice, f"{page}/deactivate", {"confirm": "yes"}, page)
    assert (done.status_code, done.headers["Location"]) == (302, page)
    assert (await bob.get("/api/me")).status_code == 401
    shown = await page_text(await alice.get(page, headers=HTML))
    assert flashes(shown) == [
        "bob@example.com is deactivated: every session and API token of theirs ended."
    ]
    roles_form = await post_form(alice, f"{page}/roles", {"roles": "admin", "confirm": "yes"}, page)
    assert roles_form.status_code == 302
    assert await fetch_val(app, "SELECT count(*) FROM user_roles WHERE role = 'admin'") == 2


async def test_a_stale_session_confirms_its_password_and_comes_back(
    app: Quart, people: dict[str, User], clock: Clock
) -> None:
    alice = await browser(app)
    page = f"/admin/users/{people['bob'].id}"
    token = await csrf_from(alice, page)
    clock.advance(minutes=16)
    stale = await alice.post(
        f"{page}/delete", form={"csrf_token": token, "confirm": "yes"}, headers=HTML
    )
    assert stale.headers["Location"] == f"/auth/reauth?next={page}"
    assert await fetch_val(app, "SELECT count(*) FROM users") == 2


async def test_a_refused_act_is_said_on_the_page(app: Quart, people: dict[str, User]) -> None:
    alice = await browser(app)
    own = f"/admin/users/{people['alice'].id}"
    page = f"/admin/users/{people['bob'].id}"
    refused = await post_form(alice, f"{own}/deactivate", {"confirm": "yes"}, page)
    assert refused.headers["Location"] == own
    html = await page_text(await alice.get(own, headers=HTML))
    assert flashes(html) == [
        "Manage your own account from your account&#39;s pages and routes (/account, /api/me)."
    ]
    assert await fetch_val(app, "SELECT bool_and(is_active) FROM users")
