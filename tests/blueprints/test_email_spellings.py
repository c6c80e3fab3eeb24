"""Look-alike spellings of one address are one account: registering a second spelling is 409
EMAIL_TAKEN, and every spelling signs in. Emails are stored NFC, with the domain lower-cased
and in its Unicode (IDNA-decoded) form, as email-validator normalises them."""

from __future__ import annotations

import unicodedata

import pytest
from quart import Quart
from quart.typing import TestClientProtocol as Client

from tests.conftest import PASSWORD, fetch_val
from tests.forms import field_error, page_text, post_form

NFC_JOSE = unicodedata.normalize("NFC", "jos\u00e9@example.com")
NFD_JOSE = unicodedata.normalize("NFD", "jos\u00e9@example.com")
# "example.com" in full-width letters and a full-width full stop.
FULL_WIDTH_DOMAIN = "".join(chr(ord(char) + 0xFEE0) for char in "example.com")

# (case, the spelling registered first, what is stored, other spellings of the same address)
SPELLINGS = [
    ("case", "alice@example.com", "alice@example.com",
     ["Alice@EXAMPLE.com", "ALICE@example.COM"]),
    ("NFD local part, then NFC", NFD_JOSE, NFC_JOSE, [NFC_JOSE]),
    ("NFC local part, then NFD", NFC_JOSE, NFC_JOSE, [NFD_JOSE]),
    ("full-width domain", f"alice@{FULL_WIDTH_DOMAIN}", "alice@example.com",
     ["alice@example.com", "alice@EXAMPLE\uff0ecom"]),
    ("Unicode domain, then punycode", "alice@b\u00fccher.example", "alice@b\u00fccher.example",
     ["alice@xn--bcher-kva.example", "alice@XN--BCHER-KVA.EXAMPLE", "alice@B\u00dcCHER.example"]),
    ("punycode, then Unicode domain", "alice@xn--bcher-kva.example", "alice@b\u00fccher.example",
     ["alice@b\u00fccher.example"]),
]  # fmt: skip


# Each spelling registers the one address again; its per-address registration budget (3 an
# hour, the mail limit) would answer 429 before the fourth could show its 409.
@pytest.mark.settings(MAIL_RATE_LIMIT_ACCOUNT="100/hour")
@pytest.mark.parametrize(
    ("case", "first", "stored", "others"), SPELLINGS, ids=[row[0] for row in SPELLINGS]
)
async def test_every_spelling_of_an_address_is_one_account(
    client: Client, app: Quart, case: str, first: str, stored: str, others: list[str]
) -> None:
    created = await client.post("/api/auth/register", json={"email": first, "password": PASSWORD})
    assert created.status_code == 201, await created.get_data(as_text=True)
    user = await created.get_json()
    assert user["email"] == stored
    assert await fetch_val(app, "SELECT email FROM users") == stored

    for spelling in others:
        again = await client.post(
            "/api/auth/register", json={"email": spelling, "password": PASSWORD}
        )
        assert again.status_code == 409, spelling
        assert (await again.get_json())["code"] == "EMAIL_TAKEN"
    assert await fetch_val(app, "SELECT count(*) FROM users") == 1

    for spelling in [first, *others]:
        signed_in = await app.test_client().post(
            "/api/auth/login", json={"email": spelling, "password": PASSWORD}
        )
        assert signed_in.status_code == 200, spelling
        assert (await signed_in.get_json())["id"] == user["id"]


async def test_the_register_page_says_a_look_alike_is_taken(client: Client, app: Quart) -> None:
    await client.post(
        "/api/auth/register", json={"email": "alice@b\u00fccher.example", "password": PASSWORD}
    )
    form = {"email": "Alice@XN--BCHER-KVA.example", "password": PASSWORD,
            "password_confirm": PASSWORD}  # fmt: skip
    response = await post_form(client, "/auth/register", form)
    assert response.status_code == 409
    assert "already exists" in (field_error(await page_text(response), "email") or "")
    assert await fetch_val(app, "SELECT count(*) FROM users") == 1


async def test_a_full_width_local_part_is_another_mailbox(client: Client, app: Quart) -> None:
    """email-validator keeps a local part as typed (only NFC): its mail server decides what it
    means, so full-width letters there name another mailbox, which a link must reach."""
    full_width = "".join(chr(ord(char) + 0xFEE0) for char in "alice") + "@example.com"
    for email in ("alice@example.com", full_width):
        response = await client.post(
            "/api/auth/register", json={"email": email, "password": PASSWORD}
        )
        assert response.status_code == 201
    assert await fetch_val(app, "SELECT count(*) FROM users") == 2


async def test_a_non_ascii_local_part_in_another_case_is_one_account(
    client: Client, app: Quart
) -> None:
    """The unique index is on PostgreSQL's lower(email), which folds non-ASCII letters only
    when the database's LC_CTYPE is a UTF-8 locale (not "C")."""
    if await fetch_val(app, "SELECT lower('\u00c4')") != "\u00e4":
        pytest.skip("this database's lower() folds only ASCII (LC_CTYPE C)")
    first = await client.post(
        "/api/auth/register", json={"email": "\u00c4rger@example.com", "password": PASSWORD}
    )
    assert first.status_code == 201
    again = await client.post(
        "/api/auth/register", json={"email": "\u00e4rger@example.com", "password": PASSWORD}
    )
    assert again.status_code == 409
    signed_in = await client.post(
        "/api/auth/login", json={"email": "\u00c4RGER@example.com", "password": PASSWORD}
    )
    assert signed_in.status_code == 200
