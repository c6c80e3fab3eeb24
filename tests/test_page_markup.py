"""Every page, as markup: one layout, labelled inputs, errors tied to fields, no inline code,
strict headers, and the layout's error pages for browsers while API clients get JSON."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from html.parser import HTMLParser
from pathlib import Path

import pytest
from quart import Quart, abort
from quart.typing import TestClientProtocol as Client

from authapp import create_app
from authapp.models.users import User
from tests.conftest import Clock, settings_for
from tests.forms import HTML, api_client, csrf_from, form_login, page_text, post_form

MakeUser = Callable[..., Awaitable[User]]


class Page(HTMLParser):
    """What the checks below need to know about one page."""

    def __init__(self, html: str) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.h1_count = 0
        self.inline_scripts = 0
        self.tags_in_title = 0
        self._in_title = False
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        self.tags_in_title += self._in_title
        self._in_title = self._in_title or tag == "title"
        self.tags.append((tag, attributes))
        self.h1_count += tag == "h1"
        self.inline_scripts += tag == "script" and "src" not in attributes

    def handle_endtag(self, tag: str) -> None:
        self._in_title = self._in_title and tag != "title"

    def all(self, tag: str) -> list[dict[str, str | None]]:
        return [attributes for name, attributes in self.tags if name == tag]

    def ids(self) -> list[str]:
        return [str(attributes["id"]) for _, attributes in self.tags if attributes.get("id")]


def check_markup(html: str) -> None:
    page = Page(html)
    assert page.all("html")[0].get("lang") == "en"
    assert page.h1_count == 1
    assert len(page.all("header")) == len(page.all("main")) == 1  # the shared layout
    labelled = {str(label["for"]) for label in page.all("label")}
    for field in page.all("input"):
        if field.get("type") == "hidden" or "hidden" in field:
            continue
        assert field.get("id") in labelled, f"input {field} has no label"
    assert page.tags_in_title == 0, "markup inside <title>"
    ids = page.ids()
    assert len(ids) == len(set(ids)), f"an id used twice: {sorted(ids)}"
    for _, attributes in page.tags:
        for described_by in str(attributes.get("aria-describedby") or "").split():
            assert described_by in ids, f"aria-describedby points at a missing {described_by}"
        assert "style" not in attributes, "inline style"
        assert not any(name.startswith("on") for name in attributes), "inline event handler"
        for link in ("href", "src", "action"):
            value = attributes.get(link)
            if link == "href" and "download" in attributes and str(value).startswith("data:"):
                continue  # a file the link carries itself (the recovery codes)
            assert value is None or value.startswith(("/", "#")), f"{link}={value} leaves the site"
    assert page.inline_scripts == 0
    assert not page.all("style")


def check_headers(response: object) -> None:
    headers = response.headers  # type: ignore[attr-defined]
    policy = headers["Content-Security-Policy"]
    assert "unsafe-inline" not in policy
    assert "frame-ancestors 'none'" in policy
    assert headers["X-Frame-Options"] == "DENY"
    assert headers["Referrer-Policy"] == "same-origin"
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["Cache-Control"] == "no-store"


@pytest.mark.parametrize("path", ["/auth/login", "/auth/register", "/nowhere"])
async def test_the_pages_of_a_visitor(client: Client, path: str) -> None:
    response = await client.get(path, headers=HTML)
    check_markup(await page_text(response))
    check_headers(response)


@pytest.mark.parametrize("stale", [False, True], ids=["fresh", "stale"])
@pytest.mark.parametrize(
    "path",
    ["/", "/account", "/protected", "/account/tokens", "/auth/reauth?next=/account",
     "/account/security"],
)  # fmt: skip
async def test_the_pages_behind_sign_in(
    app: Quart, client: Client, make_user: MakeUser, clock: Clock, path: str, stale: bool
) -> None:
    """Each page, with a second session and a token to list, on a fresh session and on one
    that must confirm the password before its sensitive forms."""
    await make_user()
    await form_login(client, await csrf_from(client))
    await post_form(client, "/account/tokens", {"name": "ci", "scopes": "profile:read"})
    await api_client(app)
    if stale:
        clock.advance(minutes=16)
    response = await client.get(path, headers=HTML)
    assert response.status_code == 200
    check_markup(await page_text(response))
    check_headers(response)


async def test_the_pages_with_errors_on_them(client: Client, make_user: MakeUser) -> None:
    await make_user()
    wrong = await form_login(client, await csrf_from(client), password="wrong password!")
    check_markup(await page_text(wrong))
    bad = {"email": "nope", "password": "x", "password_confirm": "y"}
    check_markup(await page_text(await post_form(client, "/auth/register", bad)))
    await form_login(client, await csrf_from(client))
    refused = await post_form(client, "/account/password", {"current_password": ""}, "/account")
    check_markup(await page_text(refused))
    wrong = await post_form(client, "/auth/reauth", {"password": "not my password"})
    check_markup(await page_text(wrong))
    no_scope = {"name": "", "expires_in_days": "9999"}
    check_markup(await page_text(await post_form(client, "/account/tokens", no_scope)))


async def test_the_page_that_shows_a_new_token(client: Client, make_user: MakeUser) -> None:
    await make_user()
    await form_login(client, await csrf_from(client))
    form = {"name": "ci", "scopes": "profile:read"}
    created = await post_form(client, "/account/tokens", form)
    assert created.status_code == 200
    check_markup(await page_text(created))
    check_headers(created)


@pytest.fixture
async def faulty_app(database_url: str, tmp_path: Path) -> AsyncIterator[Quart]:
    """The app plus two routes of the kind a team adds: one forbids, one breaks."""
    app = create_app(settings_for(database_url, tmp_path))

    @app.get("/forbidden")
    async def forbidden() -> str:
        abort(403)

    @app.get("/broken")
    async def broken() -> str:
        raise RuntimeError("a bug with a secret-ish detail")

    async with app.test_app():
        yield app


ERRORS = [  # (method, path, form, status, heading, code)
    ("POST", "/auth/login", {}, 400, "That did not work", "CSRF_FAILED"),
    ("GET", "/forbidden", None, 403, "Not allowed", "FORBIDDEN"),
    ("GET", "/nowhere", None, 404, "Page not found", "NOT_FOUND"),
    ("GET", "/auth/logout", None, 405, "Not allowed here", "METHOD_NOT_ALLOWED"),
    ("GET", "/broken", None, 500, "Something went wrong", "INTERNAL_ERROR"),
]


@pytest.mark.parametrize(("method", "path", "form", "status", "heading", "code"), ERRORS)
@pytest.mark.parametrize("accept", ["text/html", "application/json"])
async def test_errors_are_pages_in_the_layout_for_browsers_and_json_for_programs(
    faulty_app: Quart,
    accept: str,
    method: str,
    path: str,
    form: dict[str, str] | None,
    status: int,
    heading: str,
    code: str,
) -> None:
    client = faulty_app.test_client()
    response = await client.open(path, method=method, form=form, headers={"Accept": accept})
    assert response.status_code == status
    assert response.mimetype == accept
    if accept == "application/json":
        body = await response.get_json()
        assert body["code"] == code
        assert body["message"]
        return
    html = await page_text(response)
    assert f"<h1>{heading}</h1>" in html
    assert f"<code>{code}</code>" in html
    assert "Traceback" not in html
    assert "secret-ish" not in html
    check_markup(html)
    check_headers(response)
