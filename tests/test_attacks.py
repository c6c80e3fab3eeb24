"""The attack table: every JSON and form route that takes input, found by walking
app.url_map, against what a hostile client sends. Each attack must end in a clear 4xx with a
stable code (never a 5xx) and change nothing it should not.

Bodies: SQL injection and NUL characters in every string field (and path parameter), 10 MB
bodies, wrong content types, malformed and deeply nested JSON, wrong types, missing and unknown
fields. Emails: overlong and unicode tricks. Sessions: tampered cookies, a planted (fixated)
cookie, a cookie replayed after logout, on every signed-in route. Login timing for a known and
an unknown email. CSRF on every form has its own table in tests/test_csrf.py (six bad tokens
on every form) and tests/test_route_policy.py (every form post, walking url_map); here a form
route also refuses a JSON body and a JSON route refuses what a cross-site form can send.
"""

from __future__ import annotations

import re
import statistics
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import pytest
from argon2 import PasswordHasher
from pydantic import BaseModel
from quart import Quart
from quart.typing import TestClientProtocol as Client
from quart_schema.validation import QUART_SCHEMA_REQUEST_ATTRIBUTE

from authapp.accounts import roles
from authapp.models.users import User
from tests.conftest import PASSWORD, app_state, execute, fetch_val, session_cookie
from tests.forms import HTML, csrf_from, form_login
from tests.mailbox import Mailbox, drain

MakeUser = Callable[..., Awaitable[User]]
ALICE = "alice@example.com"
NEW_PASSWORD = "another long passphrase"
JSON_ACCEPT = {"Accept": "application/json"}
NO_LIMITS = pytest.mark.settings(RATE_LIMIT_ENABLED="false")  # hundreds of posts, one address

# A valid value for every field of every request model. A route with a field not named here
# fails the table until it is added, so no new route escapes the attacks.
FIELD_VALUES: dict[str, Any] = {
    "email": ALICE,
    "new_email": "alice.new@example.com",
    "password": PASSWORD,
    "password_confirm": PASSWORD,
    "current_password": PASSWORD,
    "new_password": NEW_PASSWORD,
    "new_password_confirm": NEW_PASSWORD,
    "email_password": PASSWORD,
    "delete_password": PASSWORD,
    "display_name": "Alice",
    "token": "x" * 43,
    "name": "backup",
    "scopes": ["profile:read"],
    "expires_in_days": 30,
    "remember": False,
    "code": "123456",
    "recovery_code": "k7fq-29xm-pd",
    "roles": ["admin"],
    "confirm": "yes",
    # A passkey's answer is an object (PublicKeyCredential.toJSON()): its members are bytes in
    # base64url that py_webauthn decodes, never text a statement takes; as a whole it gets the
    # wrong-type attack (a string where the object belongs).
    "credential": {"id": "AAAA", "rawId": "AAAA", "type": "public-key", "response": {}},
}
# Fields where empty is a valid answer: a user may hold no role.
EMPTY_MEANS_NONE = {"roles"}
# A password field's confirmation gets the same attack, so the attack passes the match check.
CONFIRMATIONS = {"password": "password_confirm", "new_password": "new_password_confirm"}
# A JSON null for a field (None leaves the field out).
NULL = object()
# A wrong JSON type for a field, by the type of its valid value.
WRONG_TYPES: dict[type, Any] = {
    str: 12345, list: "profile:read", bool: "yes", int: "30", dict: "an object's text",
}  # fmt: skip


@dataclass(frozen=True)
class Route:
    """A route that takes input: its rule, method and request model (None: no body)."""

    endpoint: str
    rule: str
    method: str
    model: type[BaseModel] | None

    @property
    def is_form(self) -> bool:
        return self.endpoint.split(".")[0] != "api"

    @property
    def label(self) -> str:
        return f"{self.method} {self.rule}"

    @property
    def path_params(self) -> list[str]:
        """The string parameters of the path (UUIDs are refused by the router itself)."""
        return re.findall(r"<(?:string:)?(\w+)>", self.rule)

    def path(self, **values: str) -> str:
        path = re.sub(r"<uuid:\w+>", str(uuid.uuid4()), self.rule)
        return re.sub(r"<(?:string:)?(\w+)>", lambda m: quote(values.get(m[1], "x" * 43)), path)

    @property
    def fields(self) -> dict[str, Any]:
        return (
            {}
            if self.model is None
            else {name: FIELD_VALUES[name] for name in self.model.model_fields}
        )

    @property
    def string_fields(self) -> list[str]:
        return [name for name, value in self.fields.items() if isinstance(value, str | list)]

    def required(self, name: str) -> bool:
        return self.model is not None and self.model.model_fields[name].is_required()


def routes_taking_input(app: Quart) -> list[Route]:
    """Every state-changing route of the API and the pages, walking app.url_map."""
    found = []
    for rule in app.url_map.iter_rules():
        if rule.endpoint.split(".")[0] not in {"api", "auth", "second_step", "protected",
                                               "security", "admin"}:  # fmt: skip
            continue
        view = app.view_functions[rule.endpoint]
        model, _ = getattr(view, QUART_SCHEMA_REQUEST_ATTRIBUTE, (None, None))
        for method in sorted(rule.methods & {"POST", "PUT", "PATCH", "DELETE"}):
            found.append(Route(rule.endpoint, rule.rule, method, model))
    assert len(found) >= 30
    return found


def with_models(app: Quart, *, forms: bool | None = None) -> list[Route]:
    return [route for route in routes_taking_input(app) if route.model is not None
            and (forms is None or route.is_form == forms)]  # fmt: skip


def form_fields(fields: dict[str, Any]) -> dict[str, str]:
    """The fields as a browser posts them: one value of a list, no unchecked checkbox."""
    return {name: str(value[0]) if isinstance(value, list) else str(value)
            for name, value in fields.items() if not isinstance(value, bool)}  # fmt: skip


class Visitor:
    """Alice in a browser, signed in by the form (so the cookie works on the API too), who
    signs in again if an attack ended her session and whose password the scene keeps."""

    def __init__(self, app: Quart) -> None:
        self.app = app
        self.client = app.test_client()

    async def keep_password(self) -> None:
        """An attack string can be a valid new password; it must not become the one that
        the next attack (a deletion's) proves."""
        await execute(self.app, "UPDATE users SET password_hash = :h WHERE email = :e",
                      {"h": self.password_hash, "e": ALICE})  # fmt: skip

    async def sign_in(self) -> None:
        self.client = self.app.test_client()
        assert (await form_login(self.client, await csrf_from(self.client))).status_code == 302

    async def start(self) -> Visitor:
        self.password_hash = await fetch_val(
            self.app, "SELECT password_hash FROM users WHERE email = :e", {"e": ALICE}
        )
        await self.sign_in()
        return self

    async def form_token(self) -> str:
        page = await self.client.get("/", headers=HTML)
        if page.status_code != 200:  # an attack signed her out (or in as someone else)
            await self.sign_in()
            page = await self.client.get("/", headers=HTML)
        match = re.search(r'name="csrf_token" value="([^"]+)"', await page.get_data(as_text=True))
        assert match is not None
        return match[1]

    async def send(
        self,
        route: Route,
        fields: dict[str, Any] | None = None,
        *,
        path: str | None = None,
        raw: bytes | None = None,
        content_type: str | None = None,
    ) -> Any:
        """The route's valid body with `fields` changed (None removes a field), or `raw`."""
        try:
            return await self._send(route, fields, path or route.path(), raw, content_type)
        finally:
            await self.keep_password()

    async def _send(
        self,
        route: Route,
        fields: dict[str, Any] | None,
        path: str,
        raw: bytes | None,
        content_type: str | None,
    ) -> Any:
        if raw is not None:
            headers = {**JSON_ACCEPT, **({"Content-Type": content_type} if content_type else {})}
            return await self.client.open(path, method=route.method, data=raw, headers=headers)
        body = {**route.fields, **(fields or {})}
        body = {name: None if value is NULL else value
                for name, value in body.items() if value is not None}  # fmt: skip
        if route.is_form:
            form = {**form_fields(body), "csrf_token": await self.form_token()}
            return await self.client.open(path, method=route.method, form=form, headers=JSON_ACCEPT)
        return await self.client.open(path, method=route.method, json=body, headers=JSON_ACCEPT)


@pytest.fixture
async def visitor(app: Quart, make_user: MakeUser) -> Visitor:
    await make_user(display_name="Alice")
    # An admin, so the admin routes (guarded before their input is read) meet the attacks too.
    await roles.grant_by_email(app_state(app).db, ALICE, "admin")
    return await Visitor(app).start()


async def answer(response: Any) -> tuple[int, str | None]:
    """The status and the error code, from a JSON error or from an error page."""
    text = await response.get_data(as_text=True)
    if response.content_type == "application/json":
        return response.status_code, (await response.get_json() or {}).get("code")
    found = re.search(r"<code>([A-Z_]+)</code>", text)
    return response.status_code, found[1] if found else None


def no_server_error(failures: list[str], route: Route, case: str, status: int) -> None:
    if status >= 500:
        failures.append(f"{route.label} [{case}]: {status}")


# --- SQL injection and NUL characters in every string -------------------------------------

SQL_INJECTIONS = [
    "' OR '1'='1' --",
    "alice@example.com'; DROP TABLE users; --",
    "x'); UPDATE users SET is_active = false; --",
    "'; SELECT pg_sleep(3); --",
    "\\' UNION SELECT password_hash FROM users --",
]


@NO_LIMITS
@pytest.mark.parametrize("payload", SQL_INJECTIONS)
async def test_sql_injection_in_every_string_field(
    app: Quart, visitor: Visitor, payload: str
) -> None:
    failures: list[str] = []
    sent = 0
    for route in routes_taking_input(app):
        targets: list[tuple[str, dict[str, Any], str | None]] = [
            (name, {name: [payload] if isinstance(FIELD_VALUES[name], list) else payload,
                    **({CONFIRMATIONS[name]: payload} if name in CONFIRMATIONS else {})}, None)
            for name in route.string_fields
        ]  # fmt: skip
        targets += [(name, {}, route.path(**{name: payload})) for name in route.path_params]
        for name, fields, path in targets:
            started = time.monotonic()
            status, code = await answer(await visitor.send(route, fields, path=path))
            sent += 1
            no_server_error(failures, route, name, status)
            if time.monotonic() - started > 2.5:  # pg_sleep(3) would have run
                failures.append(f"{route.label} [{name}]: took {time.monotonic() - started:.1f}s")
            if status >= 400 and not route.is_form and code is None:
                failures.append(f"{route.label} [{name}]: {status} without a code")
    assert not failures, failures
    assert sent >= 40
    # The statements never ran: the tables stand and Alice is as she was.
    assert await fetch_val(app, "SELECT count(*) FROM users WHERE email = :e AND is_active",
                           {"e": ALICE}) == 1  # fmt: skip
    # And a value reaches the database as sent, quotes and all.
    me = visitor.client
    assert (await me.patch("/api/me", json={"display_name": payload})).status_code == 200
    assert (await (await me.get("/api/me")).get_json())["display_name"] == payload.strip()


@NO_LIMITS
async def test_a_nul_character_in_every_string_field(app: Quart, visitor: Visitor) -> None:
    """PostgreSQL text cannot hold NUL: JSON and forms refuse it before any SQL."""
    failures: list[str] = []
    for route in routes_taking_input(app):
        for name in route.string_fields:
            value = FIELD_VALUES[name]
            poisoned = [f"{value[0]}\x00"] if isinstance(value, list) else f"{value}\x00x"
            status, code = await answer(await visitor.send(route, {name: poisoned}))
            if (status, code) != (400, "INVALID_BODY"):
                failures.append(f"{route.label} [{name}]: {status} {code}")
        for name in route.path_params:
            status, _ = await answer(await visitor.send(route, path=route.path(**{name: "a\x00b"})))
            if not 400 <= status < 500:
                failures.append(f"{route.label} [path {name}]: {status}")
    assert not failures, failures


# --- whole bodies ----------------------------------------------------------------------------

TEN_MEGABYTES = 10 * 1024 * 1024


@NO_LIMITS
async def test_a_ten_megabyte_body_to_every_route(app: Quart, visitor: Visitor) -> None:
    failures: list[str] = []
    json_body = b'{"email": "' + b"a" * TEN_MEGABYTES + b'"}'
    form_body = b"email=" + b"a" * TEN_MEGABYTES
    for route in with_models(app):  # the others never read a body
        if route.is_form:
            raw, content_type = form_body, "application/x-www-form-urlencoded"
        else:
            raw, content_type = json_body, "application/json"
        status, code = await answer(await visitor.send(route, raw=raw, content_type=content_type))
        if (status, code) != (413, "PAYLOAD_TOO_LARGE"):
            failures.append(f"{route.label}: {status} {code}")
    assert not failures, failures


# What a page on another site can post without a CORS preflight, and other strangers.
FOREIGN_CONTENT_TYPES = ["text/plain", "application/x-www-form-urlencoded",
                         "multipart/form-data; boundary=x", "application/xml", None]  # fmt: skip


@NO_LIMITS
@pytest.mark.parametrize("content_type", FOREIGN_CONTENT_TYPES, ids=str)
async def test_json_routes_refuse_other_content_types(
    app: Quart, visitor: Visitor, content_type: str | None
) -> None:
    """A JSON body under another content type (a cross-site form's `enctype="text/plain"`
    trick among them) is refused, so the session cookie alone cannot drive the API."""
    failures = []
    for route in with_models(app, forms=False):
        raw = (
            b'{"email": "alice@example.com", "password": "correct horse battery staple", '
            b'"display_name": "Mallory", "token": "x", "name": "x", "scopes": ["profile:read"]}'
        )
        status, code = await answer(await visitor.send(route, raw=raw, content_type=content_type))
        if (status, code) != (400, "UNSUPPORTED_MEDIA_TYPE"):
            failures.append(f"{route.label}: {status} {code}")
    assert not failures, failures
    assert (await (await visitor.client.get("/api/me")).get_json())["display_name"] == "Alice"


@NO_LIMITS
async def test_form_routes_refuse_a_json_body_even_with_a_good_token(
    app: Quart, visitor: Visitor
) -> None:
    failures = []
    for route in routes_taking_input(app):
        if not route.is_form:
            continue
        body = {**form_fields(route.fields), "csrf_token": await visitor.form_token()}
        response = await visitor.client.open(
            route.path(), method=route.method, json=body, headers=JSON_ACCEPT
        )
        status, code = await answer(response)
        if (status, code) != (400, "CSRF_FAILED"):
            failures.append(f"{route.label}: {status} {code}")
    assert not failures, failures


# (case, raw body, status, code)
BAD_JSON = [
    ("malformed", b'{"email": ', 400, "MALFORMED_JSON"),
    ("empty", b"", 400, "MALFORMED_JSON"),
    ("NaN", b'{"n": NaN}', 400, "MALFORMED_JSON"),
    ("Infinity", b'{"n": -Infinity}', 400, "MALFORMED_JSON"),
    ("invalid UTF-8", b'{"email": "\xff\xfe@example.com"}', 400, "INVALID_BODY"),
    ("nested 5000 deep", b"[" * 5000 + b"]" * 5000, 400, "INVALID_BODY"),
    ("nested 40 deep", b'{"email": ' + b"[" * 40 + b"]" * 40 + b"}", 400, "INVALID_BODY"),
    ("NUL escaped in a key", b'{"em\\u0000ail": "x"}', 400, "INVALID_BODY"),
    ("an array", b"[]", 400, "VALIDATION_ERROR"),
    ("a string", b'"hello"', 400, "VALIDATION_ERROR"),
    ("null", b"null", 400, "VALIDATION_ERROR"),
    ("a number", b"1e999", 400, "VALIDATION_ERROR"),
]


@NO_LIMITS
@pytest.mark.parametrize(("case", "raw", "status", "code"), BAD_JSON, ids=[c[0] for c in BAD_JSON])
async def test_bad_json_to_every_json_route(
    app: Quart, visitor: Visitor, case: str, raw: bytes, status: int, code: str
) -> None:
    failures = []
    for route in with_models(app, forms=False):
        found = await answer(await visitor.send(route, raw=raw, content_type="application/json"))
        if found != (status, code):
            failures.append(f"{route.label}: {found}")
    assert not failures, failures


@NO_LIMITS
async def test_every_json_field_refuses_wrong_types_absence_and_strangers(
    app: Quart, visitor: Visitor
) -> None:
    """For each field of each JSON route: a wrong type, empty, null and left out (when it is
    required); and an unknown field. Each a 400 VALIDATION_ERROR naming the field."""
    failures = []
    for route in with_models(app, forms=False):
        cases: list[tuple[str, str, dict[str, Any]]] = [
            ("unknown field", "is_admin", {"is_admin": True})
        ]
        for name, value in route.fields.items():
            cases.append((f"{name} of a wrong type", name, {name: WRONG_TYPES[type(value)]}))
            if isinstance(value, str | list) and name not in EMPTY_MEANS_NONE:
                cases.append((f"{name} empty", name, {name: type(value)()}))
            if route.required(name):
                cases.append((f"{name} null", name, {name: NULL}))
                cases.append((f"{name} left out", name, {name: None}))
        for case, field, change in cases:
            response = await visitor.send(route, change)
            body = await response.get_json()
            named = [detail["field"].split(".")[0] for detail in body.get("details", [])]
            if (response.status_code, body["code"]) != (
                400,
                "VALIDATION_ERROR",
            ) or field not in named:
                failures.append(f"{route.label} [{case}]: {response.status_code} {body}")
        null = await answer(
            await visitor.send(route, raw=b'{"x": null}', content_type="application/json")
        )
        if null != (400, "VALIDATION_ERROR"):
            failures.append(f"{route.label} [null]: {null}")
    assert not failures, failures


# --- emails ----------------------------------------------------------------------------------

# (case, email, is it Alice's own address?) Equivalent spellings reach Alice's account; every
# look-alike must not: no sign-in as her, no mail to her, no second account on her address.
EMAIL_TRICKS = [
    ("upper case", "ALICE@EXAMPLE.COM", True),
    (
        "full-width domain (IDNA maps it)",
        "alice@\uff45\uff58\uff41\uff4d\uff50\uff4c\uff45.com",
        True,
    ),
    ("overlong", "a" * 243 + "@example.com", False),
    ("far too long", "a" * 400 + "@example.com", False),
    ("right-to-left override", "alice\u202e@example.com", False),
    ("zero-width space", "ali\u200bce@example.com", False),
    ("full-width local part", "\uff41\uff4c\uff49\uff43\uff45@example.com", False),
    ("Cyrillic a", "\u0430lice@example.com", False),
    ("combining accent", "alice\u0301@example.com", False),
    ("ideographic at sign", "alice\uff20example.com", False),
    ("header injection", "alice@example.com\r\nBcc: mallory@example.com", False),
    ("trailing dot", "alice@example.com.", False),
]


@NO_LIMITS
@pytest.mark.parametrize(
    ("case", "email", "is_alice"), EMAIL_TRICKS, ids=[t[0] for t in EMAIL_TRICKS]
)
async def test_unicode_and_overlong_emails(
    app: Quart, make_user: MakeUser, mailbox: Mailbox, case: str, email: str, is_alice: bool
) -> None:
    alice = await make_user()
    client = app.test_client()
    login = await client.post("/api/auth/login", json={"email": email, "password": PASSWORD})
    if is_alice:
        assert login.status_code == 200
        assert (await login.get_json())["id"] == str(alice.id)
    else:
        assert login.status_code in {400, 401}, await login.get_data(as_text=True)

    forgot = await client.post("/api/auth/forgot-password", json={"email": email})
    assert forgot.status_code in {202, 400}
    await drain(app)
    await mailbox.settle()
    to_alice = [message for message in mailbox.messages if ALICE in str(message["To"]).lower()]
    assert len(to_alice) == (1 if is_alice else 0)
    assert all("mallory" not in str(message["Bcc"] or "") for message in mailbox.messages)

    register = await client.post("/api/auth/register", json={"email": email, "password": PASSWORD})
    body = await register.get_json()
    assert register.status_code in {201, 400, 409}, body
    if register.status_code == 400:
        assert body["details"][0]["field"] == "email"
    if is_alice:
        assert register.status_code == 409
    # Whatever the outcome, one account has Alice's address, and it is hers.
    assert (
        await fetch_val(app, "SELECT count(*) FROM users WHERE lower(email) = :e", {"e": ALICE})
        == 1
    )
    if register.status_code == 201:
        assert body["id"] != str(alice.id)
        assert body["email"].casefold() != ALICE


# --- session cookies ---------------------------------------------------------------------------


def signed_in_routes(app: Quart) -> list[tuple[str, str]]:
    """(method, path) of every route of the API and pages behind a sign-in."""
    from tests.test_route_policy import PUBLIC, _path

    found = []
    for rule in app.url_map.iter_rules():
        if rule.endpoint.split(".")[0] not in {"api", "protected"} or rule.endpoint in PUBLIC:
            continue
        found += [
            (method, _path(rule.rule)) for method in sorted(rule.methods - {"HEAD", "OPTIONS"})
        ]
    found.append(("POST", "/auth/reauth"))  # the one page of auth behind a sign-in
    assert len(found) >= 25
    return found


async def refused_everywhere(app: Quart, cookie: str, csrf: str) -> list[str]:
    """Every signed-in route, called with `cookie` (and a form token), that let it through."""
    client = app.test_client()
    through = []
    for method, path in signed_in_routes(app):
        response = await client.open(
            path, method=method, form={"csrf_token": csrf},
            headers={**JSON_ACCEPT, "Cookie": cookie},
        )  # fmt: skip
        status, code = await answer(response)
        if (status, code) not in {(401, "UNAUTHENTICATED"), (400, "CSRF_FAILED")}:
            through.append(f"{method} {path}: {status} {code}")
    return through


def cookie_value(cookie: str) -> str:
    return cookie.split("=", 1)[1]


TAMPERINGS: dict[str, Callable[[Quart, str], str]] = {
    "garbage": lambda app, value: "garbage",
    "empty": lambda app, value: "",
    "unsigned token": lambda app, value: "A" * 43,
    "a character flipped": lambda app, value: (
        value[:10] + ("B" if value[10] != "B" else "C") + value[11:]
    ),
    "signature cut off": lambda app, value: value.rsplit(".", 1)[0],
    "signed with another key": lambda app, value: _sign(app, "A" * 43, "k" * 48),
    "our key, an unknown token": lambda app, value: _sign(app, "A" * 43),
}


def _sign(app: Quart, token: str, key: str | None = None) -> str:
    auth = app.extensions["QUART_AUTH"][0]
    if key is None:
        return str(auth.dump_token(token, app=app))
    original = app.secret_key
    app.secret_key = key
    try:
        return str(auth.dump_token(token, app=app))
    finally:
        app.secret_key = original


@NO_LIMITS
@pytest.mark.parametrize("tampering", TAMPERINGS)
async def test_a_tampered_cookie_is_refused_on_every_signed_in_route(
    app: Quart, visitor: Visitor, tampering: str
) -> None:
    value = visitor.client.cookie_jar and next(
        cookie.value
        for cookie in visitor.client.cookie_jar
        if cookie.name == "__Host-authapp_session"
    )
    assert value
    forged = TAMPERINGS[tampering](app, value)
    csrf = await visitor.form_token()
    assert await refused_everywhere(app, f"__Host-authapp_session={forged}", csrf) == []
    # The genuine cookie still works: the refusals were the tampering's.
    assert (await visitor.client.get("/api/me")).status_code == 200


SIGN_INS = ["api login", "form login", "form registration"]
SESSION, CSRF = "__Host-authapp_session", "__Host-authapp_csrf"


@NO_LIMITS
@pytest.mark.parametrize("sign_in", SIGN_INS)
async def test_a_planted_cookie_is_worthless_after_sign_in(
    app: Quart, make_user: MakeUser, sign_in: str
) -> None:
    """Session fixation: Mallory plants in Alice's browser her own live session cookie and the
    CSRF cookie of a visit of hers (she can make form tokens for it); Alice signs in. Alice
    gets a new session and a new CSRF secret: what Mallory kept is worthless."""
    await make_user("mallory@example.com")
    if sign_in != "form registration":
        await make_user()
    mallory = app.test_client()
    mallory_token = await csrf_from(mallory)
    csrf_cookie = next(cookie.value for cookie in mallory.cookie_jar or [] if cookie.name == CSRF)
    signed_in = app.test_client()
    response = await signed_in.post(
        "/api/auth/login", json={"email": "mallory@example.com", "password": PASSWORD}
    )
    planted = cookie_value(session_cookie(response).split(";")[0])

    alice = app.test_client()
    alice.set_cookie("localhost", CSRF, csrf_cookie)
    alice.set_cookie("localhost", SESSION, planted)
    credentials = {"email": ALICE, "password": PASSWORD}
    if sign_in == "api login":
        response = await alice.post("/api/auth/login", json=credentials)
        assert response.status_code == 200
    elif sign_in == "form login":
        assert (await form_login(alice, mallory_token)).status_code == 302
    else:
        form = {**credentials, "password_confirm": PASSWORD, "csrf_token": mallory_token}
        assert (await alice.post("/auth/register", form=form, headers=HTML)).status_code == 302
    now = {cookie.name: cookie.value for cookie in alice.cookie_jar or []}
    assert now[SESSION] != planted
    assert (await (await alice.get("/api/me")).get_json())["email"] == ALICE

    # Mallory's copy is neither Alice's session nor her own any more ...
    copy = {"Cookie": f"{SESSION}={planted}"}
    assert (await app.test_client().get("/api/me", headers=copy)).status_code == 401
    # ... and her form tokens no longer pass in Alice's browser.
    if sign_in != "api login":  # the API never reads the CSRF cookie, so it stays as planted
        form = {"display_name": "pwned", "csrf_token": mallory_token}
        forged = await alice.post("/account/profile", form=form, headers=HTML)
        assert await answer(forged) == (400, "CSRF_FAILED")


@NO_LIMITS
@pytest.mark.parametrize("logout", ["/api/auth/logout", "/auth/logout"])
async def test_a_cookie_replayed_after_logout_is_refused_on_every_signed_in_route(
    app: Quart, visitor: Visitor, logout: str
) -> None:
    csrf = await visitor.form_token()
    kept = "; ".join(f"{cookie.name}={cookie.value}" for cookie in visitor.client.cookie_jar or [])
    assert (await refused_everywhere(app, kept, csrf)) != []  # alive before: the check can fail
    response = await visitor.client.post(logout, form={"csrf_token": csrf}, headers=HTML)
    assert response.status_code in {204, 302}
    assert "Max-Age=0" in session_cookie(response)
    assert await refused_everywhere(app, kept, csrf) == []


# --- login timing ------------------------------------------------------------------------------


class CountingVerifications:
    """Counts argon2 verifications (each still runs for real) and the hashes verified."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.hashes: list[str] = []
        verify = PasswordHasher.verify

        def counting(hasher: PasswordHasher, password_hash: str, password: str) -> bool:
            self.hashes.append(password_hash)
            return bool(verify(hasher, password_hash, password))

        monkeypatch.setattr(PasswordHasher, "verify", counting)


@NO_LIMITS
async def test_login_costs_the_same_for_a_known_and_an_unknown_email(
    app: Quart, client: Client, make_user: MakeUser, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An unknown email verifies a dummy hash of the same parameters (one argon2 verification
    each way), so timing tells no one which addresses have accounts."""
    alice = await make_user()
    counter = CountingVerifications(monkeypatch)
    timings: dict[str, list[float]] = {"known": [], "unknown": []}
    for attempt in range(8):
        for kind, email in (("known", ALICE), ("unknown", f"nobody{attempt}@example.com")):
            before = len(counter.hashes)
            started = time.perf_counter()
            response = await client.post(
                "/api/auth/login", json={"email": email, "password": "wrong guess!!"}
            )
            timings[kind].append(time.perf_counter() - started)
            assert response.status_code == 401
            assert len(counter.hashes) == before + 1, kind  # exactly one verification each
            verified = counter.hashes[-1]
            if kind == "known":
                assert verified == alice.password_hash
            else:  # the dummy: not Alice's, but made with the same parameters
                assert verified != alice.password_hash
                assert verified.rsplit("$", 2)[0] == alice.password_hash.rsplit("$", 2)[0]
    known, unknown = statistics.median(timings["known"]), statistics.median(timings["unknown"])
    assert 0.5 < unknown / known < 2, timings  # loose: the same order, not a shortcut
