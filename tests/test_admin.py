"""Roles, permissions and the admin API: who may do what to whom, resolved at every request."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from quart import Quart
from quart.typing import TestClientProtocol as Client

from authapp.accounts import roles
from authapp.models.users import User
from authapp.web.guards import GUARD_ATTRIBUTE
from tests.conftest import Clock, app_state, fetch_val
from tests.forms import api_client

MakeUser = Callable[..., Awaitable[User]]
ZERO = "00000000-0000-4000-8000-000000000000"


async def grant(app: Quart, email: str, role: str) -> None:
    await roles.grant_by_email(app_state(app).db, email, role)


async def make_role(app: Quart, name: str, *permissions: str) -> None:
    state = app_state(app)
    await roles.create_role(state.db, state.scopes, name, f"The {name}s.", list(permissions))


@pytest.fixture
async def cast(app: Quart, make_user: MakeUser) -> dict[str, User]:
    """Ada the admin, Sam of support (users:read, audit:read), and Bob, who holds nothing."""
    await make_role(app, "support", "users:read", "audit:read")
    people = {
        "ada": await make_user("ada@example.com", display_name="Ada"),
        "sam": await make_user("sam@example.com", display_name="Sam"),
        "bob": await make_user("bob@example.com", display_name="Bob"),
    }
    await grant(app, "ada@example.com", "admin")
    await grant(app, "sam@example.com", "support")
    return people


async def token_of(client: Client, *scopes: str) -> dict[str, str]:
    created = await client.post("/api/tokens", json={"name": "t", "scopes": list(scopes)})
    assert created.status_code == 201, await created.get_json()
    return {"Authorization": f"Bearer {(await created.get_json())['token']}"}


# Every route of the admin API: (method, path with {id} for the target, body).
ROUTES: dict[str, tuple[str, str, dict[str, Any] | None]] = {
    "api.list_users": ("GET", "/api/admin/users", None),
    "api.get_user": ("GET", "/api/admin/users/{id}", None),
    "api.list_roles": ("GET", "/api/admin/roles", None),
    "api.deactivate_user": ("POST", "/api/admin/users/{id}/deactivate", None),
    "api.activate_user": ("POST", "/api/admin/users/{id}/activate", None),
    "api.revoke_user_sessions": ("POST", "/api/admin/users/{id}/sessions/revoke-all", None),
    "api.reset_user_access": ("POST", "/api/admin/users/{id}/reset-access", None),
    "api.send_password_reset": ("POST", "/api/admin/users/{id}/send-password-reset", None),
    "api.set_user_roles": ("PUT", "/api/admin/users/{id}/roles", {"roles": ["support"]}),
    "api.delete_user": ("DELETE", "/api/admin/users/{id}", None),
}
READS = {"api.list_users", "api.get_user", "api.list_roles"}
ADMIN_FRESH_ROUTES = {name: route for name, route in ROUTES.items() if name not in READS}


def test_every_admin_route_needs_a_permission_and_every_write_a_fresh_session(app: Quart) -> None:
    found = {}
    for rule in app.url_map.iter_rules():
        if not rule.rule.startswith(("/api/admin", "/admin")):
            continue
        guard = getattr(app.view_functions[rule.endpoint], GUARD_ATTRIBUTE, None)
        assert guard is not None, rule.endpoint
        assert guard.permission is not None, rule.endpoint
        writes = bool(rule.methods & {"POST", "PUT", "PATCH", "DELETE"})
        assert guard.fresh == writes, rule.endpoint
        assert guard.permission.endswith(":write") == writes, rule.endpoint
        found[rule.endpoint] = guard.permission
    assert {endpoint for endpoint in found if endpoint.startswith("api.")} == set(ROUTES)
    assert len(found) == len(ROUTES) + 9  # the pages: the table, a user, seven acts


@pytest.mark.settings(RATE_LIMIT_ENABLED="false")
@pytest.mark.parametrize("endpoint", ROUTES)
@pytest.mark.parametrize("who", ["bob", "sam", "ada"])
async def test_the_permission_table(
    app: Quart, cast: dict[str, User], endpoint: str, who: str
) -> None:
    """No role: 403 everywhere; support: reads only; admin: everything."""
    method, path, body = ROUTES[endpoint]
    target = await app_state_user(app, "zoe@example.com")
    client = await api_client(app, f"{who}@example.com")
    response = await client.open(path.format(id=target.id), method=method, json=body)
    allowed = who == "ada" or (who == "sam" and endpoint in READS)
    if allowed:
        assert response.status_code < 300, await response.get_json()
    else:
        assert response.status_code == 403
        assert (await response.get_json())["code"] == "FORBIDDEN"


async def app_state_user(app: Quart, email: str) -> User:
    from authapp.accounts import registration

    state = app_state(app)
    return await registration.register(
        state.db, state.hashing, state.settings, email=email, password="another long passphrase",
        display_name=None,
    )  # fmt: skip


@pytest.mark.settings(RATE_LIMIT_ENABLED="false")
@pytest.mark.parametrize("endpoint", ADMIN_FRESH_ROUTES)
async def test_a_stale_admin_session_confirms_its_password_first(
    app: Quart, cast: dict[str, User], clock: Clock, endpoint: str
) -> None:
    method, path, body = ADMIN_FRESH_ROUTES[endpoint]
    ada = await api_client(app, "ada@example.com")
    clock.advance(minutes=16)
    response = await ada.open(path.format(id=cast["bob"].id), method=method, json=body)
    assert (response.status_code, (await response.get_json())["code"]) == (401, "REAUTH_REQUIRED")
    assert (await ada.post("/api/auth/reauth", json={"password": PASSWORD})).status_code == 204
    response = await ada.open(path.format(id=cast["bob"].id), method=method, json=body)
    assert response.status_code < 300, await response.get_json()


PASSWORD = "correct horse battery staple"


async def test_a_token_whose_user_lost_the_role_is_refused_on_the_next_request(
    app: Quart, cast: dict[str, User]
) -> None:
    sam = await api_client(app, "sam@example.com")
    bearer = await token_of(sam, "users:read")
    script = app.test_client()
    assert (await script.get("/api/admin/users", headers=bearer)).status_code == 200
    ada = await api_client(app, "ada@example.com")
    taken = await ada.put(f"/api/admin/users/{cast['sam'].id}/roles", json={"roles": []})
    assert taken.status_code == 200
    refused = await script.get("/api/admin/users", headers=bearer)
    assert (refused.status_code, (await refused.get_json())["code"]) == (403, "FORBIDDEN")
    # And Sam's own session, signed in while Sam held the role, is refused as well.
    assert (await sam.get("/api/admin/users")).status_code == 403
    assert (await sam.get("/api/me")).status_code == 200


async def test_a_token_needs_the_permission_as_a_scope_and_its_user_to_hold_it(
    app: Quart, cast: dict[str, User]
) -> None:
    sam = await api_client(app, "sam@example.com")
    plain = await token_of(sam, "profile:read")
    refused = await app.test_client().get("/api/admin/users", headers=plain)
    assert (refused.status_code, (await refused.get_json())["code"]) == (403, "INSUFFICIENT_SCOPE")
    # Nobody gets a token of a permission they do not hold.
    bob = await api_client(app, "bob@example.com")
    made = await bob.post("/api/tokens", json={"name": "t", "scopes": ["users:read"]})
    assert made.status_code == 400
    assert (await made.get_json())["details"][0]["field"] == "scopes"
    # A token never writes: every write needs a fresh session.
    ada = await api_client(app, "ada@example.com")
    bearer = await token_of(ada, "users:read", "users:write")
    path = f"/api/admin/users/{cast['bob'].id}/deactivate"
    response = await app.test_client().post(path, headers=bearer)
    assert (response.status_code, (await response.get_json())["code"]) == (
        403, "INSUFFICIENT_SCOPE"
    )  # fmt: skip


async def test_the_last_admin_stays(app: Quart, cast: dict[str, User]) -> None:
    state = app_state(app)
    with pytest.raises(Exception, match="last active admin"):
        await roles.revoke_by_email(state.db, "ada@example.com", "admin")
    # An operator may not deactivate them either (the CLI's path).
    from authapp.accounts import admin

    with pytest.raises(Exception, match="last active admin"):
        await admin.set_active(state.db, state.settings, "ada@example.com", False)
    # An account holding every permission without the admin role cannot remove the last admin.
    await make_role(app, "deputy", "users:read", "users:write", "roles:write", "audit:read")
    await grant(app, "sam@example.com", "deputy")
    sam = await api_client(app, "sam@example.com")
    for method, path, body in [
        ("PUT", f"/api/admin/users/{cast['ada'].id}/roles", {"roles": []}),
        ("POST", f"/api/admin/users/{cast['ada'].id}/deactivate", None),
        ("DELETE", f"/api/admin/users/{cast['ada'].id}", None),
    ]:
        response = await sam.open(path, method=method, json=body)
        assert (response.status_code, (await response.get_json())["code"]) == (409, "LAST_ADMIN")
    assert await fetch_val(app, "SELECT count(*) FROM user_roles WHERE role = 'admin'") == 1


@pytest.mark.settings(RATE_LIMIT_ENABLED="false")
async def test_two_admins_demoting_each_other_at_once_leave_one(
    app: Quart, cast: dict[str, User], make_user: MakeUser
) -> None:
    await grant(app, "sam@example.com", "admin")
    ada = await api_client(app, "ada@example.com")
    sam = await api_client(app, "sam@example.com")
    for _ in range(3):
        answers = await asyncio.gather(
            ada.put(f"/api/admin/users/{cast['sam'].id}/roles", json={"roles": []}),
            sam.put(f"/api/admin/users/{cast['ada'].id}/roles", json={"roles": []}),
        )
        statuses = sorted(answer.status_code for answer in answers)
        # The second, once the first committed, acts as no admin (403) or on the last (409).
        assert statuses in ([200, 403], [200, 409]), statuses
        admins = await fetch_val(app, "SELECT count(*) FROM user_roles WHERE role = 'admin'")
        assert admins == 1
        await grant(app, "ada@example.com", "admin")
        await grant(app, "sam@example.com", "admin")


async def test_nobody_grants_what_they_do_not_hold_nor_acts_on_their_own_account(
    app: Quart, cast: dict[str, User]
) -> None:
    await make_role(app, "roler", "users:read", "roles:write")
    await grant(app, "bob@example.com", "roler")
    bob = await api_client(app, "bob@example.com")
    # Bob may grant roles, but not one holding permissions he lacks: not even to himself.
    for target in (cast["bob"], cast["sam"]):
        response = await bob.put(
            f"/api/admin/users/{target.id}/roles", json={"roles": ["roler", "admin"]}
        )
        assert response.status_code in {403, 409}
    own = await bob.put(f"/api/admin/users/{cast['bob'].id}/roles", json={"roles": ["roler"]})
    assert (own.status_code, (await own.get_json())["code"]) == (409, "OWN_ACCOUNT")
    # Nor take Sam's support role (it holds audit:read, which Bob lacks), nor touch Ada.
    sam = await bob.put(f"/api/admin/users/{cast['sam'].id}/roles", json={"roles": []})
    assert (sam.status_code, (await sam.get_json())["code"]) == (403, "FORBIDDEN")
    await make_role(app, "reader", "users:read")
    zoe = await app_state_user(app, "zoe@example.com")
    given = await bob.put(f"/api/admin/users/{zoe.id}/roles", json={"roles": ["reader"]})
    assert given.status_code == 200
    assert (await given.get_json())["granted"] == ["reader"]
    held = "SELECT array_agg(role ORDER BY role) FROM user_roles WHERE user_id = :id"
    assert await fetch_val(app, held, {"id": cast["bob"].id}) == ["roler"]
    unknown = await bob.put(f"/api/admin/users/{zoe.id}/roles", json={"roles": ["nope"]})
    assert unknown.status_code == 400


async def test_deactivation_ends_a_live_cookie_and_a_live_token_at_once(
    app: Quart, cast: dict[str, User]
) -> None:
    bob = await api_client(app, "bob@example.com")
    bearer = await token_of(bob, "profile:read")
    script = app.test_client()
    assert (await bob.get("/api/me")).status_code == 200
    assert (await script.get("/api/me", headers=bearer)).status_code == 200
    ada = await api_client(app, "ada@example.com")
    done = await ada.post(f"/api/admin/users/{cast['bob'].id}/deactivate")
    assert done.status_code == 200
    assert (await done.get_json())["sessions_revoked"] == 1
    assert (await bob.get("/api/me")).status_code == 401
    assert (await script.get("/api/me", headers=bearer)).status_code == 401
    # Bob reads it in his events once back: "by an administrator"; Ada's say what she did.
    again = await ada.post(f"/api/admin/users/{cast['bob'].id}/activate")
    assert (await again.get_json())["is_active"] is True
    bob = await api_client(app, "bob@example.com")
    events = (await (await bob.get("/api/me/events")).get_json())["events"]
    by_admin = [(event["kind"], event["details"].get("by")) for event in events[1:3]]
    assert by_admin == [("account_activated", "administrator"),
                        ("account_deactivated", "administrator")]  # fmt: skip
    ada_events = (await (await ada.get("/api/me/events")).get_json())["events"]
    assert [e["details"]["action"] for e in ada_events[:2]] == ["activate", "deactivate"]
    assert ada_events[0]["details"]["target_email"] == "bob@example.com"


async def test_no_id_of_another_kind_opens_anything(app: Quart, cast: dict[str, User]) -> None:
    """IDOR: a support user reads but never writes, whatever the id; an unknown id is a 404;
    an ordinary user's own routes never reach another account."""
    sam = await api_client(app, "sam@example.com")
    for method, path, body in ADMIN_FRESH_ROUTES.values():
        response = await sam.open(path.format(id=cast["bob"].id), method=method, json=body)
        assert response.status_code == 403
    ada = await api_client(app, "ada@example.com")
    missing = await ada.get(f"/api/admin/users/{ZERO}")
    assert (missing.status_code, (await missing.get_json())["code"]) == (404, "USER_NOT_FOUND")
    gone = await ada.post(f"/api/admin/users/{ZERO}/deactivate")
    assert gone.status_code == 404
    bob = await api_client(app, "bob@example.com")
    sessions = await (await ada.get(f"/api/admin/users/{cast['bob'].id}")).get_json()
    session_id = sessions["sessions"][0]["id"]
    # Bob's session id in Ada's hands is not one of Ada's sessions.
    assert (await ada.delete(f"/api/sessions/{session_id}")).status_code == 404
    assert (await bob.get("/api/me")).status_code == 200


async def test_the_table_searches_by_address_key_and_pages_in_a_stable_order(
    app: Quart, cast: dict[str, User], make_user: MakeUser, clock: Clock
) -> None:
    for number in range(5):
        clock.advance(seconds=1)
        await make_user(f"User{number}_x@example.com")
    await make_user("per%cent@example.com")
    ada = await api_client(app, "ada@example.com")

    async def emails(query: str, **more: Any) -> list[str]:
        answer = await ada.get("/api/admin/users", query_string={"query": query, **more})
        assert answer.status_code == 200, await answer.get_json()
        return [user["email"] for user in (await answer.get_json())["users"]]

    assert await emails("user1") == ["User1_x@example.com"]
    assert await emails("USER1_X@EXAMPLE.COM") == ["User1_x@example.com"]
    assert await emails("%") == ["per%cent@example.com"]  # a wildcard matches itself
    assert await emails("_x") == [f"User{n}_x@example.com" for n in reversed(range(5))]
    assert await emails("Sam") == ["sam@example.com"]
    assert await emails("", role="admin") == ["ada@example.com"]
    first = await (await ada.get("/api/admin/users", query_string={"limit": 4})).get_json()
    rest = await (
        await ada.get("/api/admin/users", query_string={"after": first["next_after"]})
    ).get_json()
    everyone = [u["email"] for u in first["users"]] + [u["email"] for u in rest["users"]]
    assert len(everyone) == len(set(everyone)) == 9
    assert rest["next_after"] is None
    bad = await ada.get("/api/admin/users", query_string={"after": "!!"})
    assert bad.status_code == 400


async def test_reset_access_ends_every_way_in_but_the_password(
    app: Quart, cast: dict[str, User]
) -> None:
    bob = await api_client(app, "bob@example.com")
    await token_of(bob, "profile:read")
    ada = await api_client(app, "ada@example.com")
    reset = await ada.post(f"/api/admin/users/{cast['bob'].id}/reset-access")
    assert await reset.get_json() == {
        "sessions_revoked": 1, "tokens_revoked": 1, "second_factor_removed": False
    }  # fmt: skip
    assert (await bob.get("/api/me")).status_code == 401
    detail = await (await ada.get(f"/api/admin/users/{cast['bob'].id}")).get_json()
    assert (detail["sessions"], detail["api_tokens"]) == ([], 0)
    assert detail["events"][0]["kind"] == "access_reset"
    # Sam, without audit:read in a token, sees no events.
    sam = await api_client(app, "sam@example.com")
    bearer = await token_of(sam, "users:read")
    seen = await app.test_client().get(f"/api/admin/users/{cast['bob'].id}", headers=bearer)
    assert (await seen.get_json())["events"] is None


async def test_deleting_a_user_keeps_who_it_was_in_the_actors_events(
    app: Quart, cast: dict[str, User]
) -> None:
    ada = await api_client(app, "ada@example.com")
    assert (await ada.delete(f"/api/admin/users/{cast['bob'].id}")).status_code == 204
    assert await fetch_val(app, "SELECT count(*) FROM users WHERE email = 'bob@example.com'") == 0
    events = (await (await ada.get("/api/me/events")).get_json())["events"]
    assert events[0]["details"] == {
        "action": "delete_user", "target_id": str(cast["bob"].id),
        "target_email": "bob@example.com",
    }  # fmt: skip
