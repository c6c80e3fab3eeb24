"""Which spellings of an address are one account, decided by one key (authapp.emails.email_key)
and nowhere else: registration, sign-in, the rate limits and password recovery all agree.

One account: ASCII case, NFC and NFD, full-width letters in the domain, IDNA's Unicode and
punycode domains. Two accounts: anything in the local part beyond ASCII case (`İ`, `ı` and `i`,
`ß` and `ss`, `Σ`, `σ` and `ς`, `Ä` and `ä`, full-width letters): a mail server may deliver
those to different people, so an account holding one must not hold the other's recovery.
"""  # noqa: RUF002 (the look-alikes are the point)

from __future__ import annotations

import unicodedata

import pytest
from quart import Quart
from quart.typing import TestClientProtocol as Client

from authapp.accounts.emails import email_key
from tests.conftest import PASSWORD, fetch_val
from tests.forms import field_error, page_text, post_form
from tests.mailbox import Mailbox, drain

NFC_JOSE = unicodedata.normalize("NFC", "jos\u00e9@example.com")
NFD_JOSE = unicodedata.normalize("NFD", "jos\u00e9@example.com")
# "example.com" in full-width letters and a full-width full stop.
FULL_WIDTH_DOMAIN = "".join(chr(ord(char) + 0xFEE0) for char in "example.com")
FULL_WIDTH_ALICE = "".join(chr(ord(char) + 0xFEE0) for char in "alice") + "@example.com"
WRONG = "not the password at all"

# (case, the spelling registered first, what is stored, other spellings of the same address)
SAME = [
    ("case", "alice@example.com", "alice@example.com",
     ["Alice@EXAMPLE.com", "ALICE@example.COM"]),
    ("NFD local part, then NFC", NFD_JOSE, NFC_JOSE, [NFC_JOSE]),
    ("NFC local part, then NFD", NFC_JOSE, NFC_JOSE, [NFD_JOSE, "JOS\u00e9@example.com"]),
    ("full-width domain", f"alice@{FULL_WIDTH_DOMAIN}", "alice@example.com",
     ["alice@example.com", "alice@EXAMPLE\uff0ecom"]),
    ("Unicode domain, then punycode", "alice@b\u00fccher.example", "alice@b\u00fccher.example",
     ["alice@xn--bcher-kva.example", "alice@XN--BCHER-KVA.EXAMPLE", "alice@B\u00dcCHER.example"]),
    ("punycode, then Unicode domain", "alice@xn--bcher-kva.example", "alice@b\u00fccher.example",
     ["alice@b\u00fccher.example"]),
]  # fmt: skip

# (case, one address, another address that is another account)
DISTINCT = [
    ("dotted capital I", "j\u0130m@example.com", "jim@example.com"),
    ("dotless i", "j\u0131m@example.com", "jim@example.com"),
    ("sharp s", "stra\u00dfe@example.com", "strasse@example.com"),
    ("capital sigma", "\u03a3\u03bf\u03c6\u03b9\u03b1@example.com",
     "\u03c3\u03bf\u03c6\u03b9\u03b1@example.com"),
    ("final sigma", "\u03bf\u03c3@example.com", "\u03bf\u03c2@example.com"),
    ("non-ASCII case", "\u00c4rger@example.com", "\u00e4rger@example.com"),
    ("full-width local part", FULL_WIDTH_ALICE, "alice@example.com"),
]  # fmt: skip

# Registering one address again and again: its budgets per address would answer 429 first.
LENIENT = {
    "MAIL_RATE_LIMIT_ACCOUNT": "100/hour",
    "MAIL_RATE_LIMIT_CLIENT_ACCOUNT": "100/hour",
    "LOGIN_RATE_LIMIT_IP": "100/minute",
}


def test_the_key_is_the_tables() -> None:
    """The one function agrees with both tables (the app's paths are checked below)."""
    for _, first, _, others in SAME:
        assert {email_key(spelling) for spelling in [first, *others]} == {email_key(first)}
    for _, one, other in DISTINCT:
        assert email_key(one) != email_key(other)
    assert email_key("not an address") is None


@pytest.mark.settings(**LENIENT)
@pytest.mark.parametrize(("case", "first", "stored", "others"), SAME, ids=[row[0] for row in SAME])
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


@pytest.mark.settings(**LENIENT)
@pytest.mark.parametrize(("case", "first", "stored", "others"), SAME, ids=[row[0] for row in SAME])
async def test_every_spelling_spends_one_budget_and_recovers_one_mailbox(
    app: Quart, mailbox: Mailbox, case: str, first: str, stored: str, others: list[str]
) -> None:
    await app.test_client().post("/api/auth/register", json={"email": first, "password": PASSWORD})
    # Five failures (the account's budget) spread over the spellings, from five addresses.
    spellings = [first, *others]
    for number in range(5):
        wrong = await app.test_client().post(
            "/api/auth/login",
            json={"email": spellings[number % len(spellings)], "password": WRONG},
            scope_base={"client": (f"192.0.2.{number}", 40000)},
        )
        assert wrong.status_code == 401
    for spelling in spellings:
        refused = await app.test_client().post(
            "/api/auth/login", json={"email": spelling, "password": WRONG},
            scope_base={"client": ("192.0.2.99", 40000)},
        )  # fmt: skip
        assert refused.status_code == 429, spelling

    for spelling in spellings:
        asked = await app.test_client().post("/api/auth/forgot-password", json={"email": spelling})
        assert asked.status_code == 202
    await drain(app)
    # The verification mail of the registration, and one reset link per spelling.
    messages = await mailbox.wait_for(1 + len(spellings))
    resets = [message for message in messages if message["Subject"] == "Reset your password"]
    assert len(resets) == len(spellings)
    assert {str(message["To"]) for message in resets} == {stored}


@pytest.mark.settings(**LENIENT)
@pytest.mark.parametrize(("case", "one", "other"), DISTINCT, ids=[row[0] for row in DISTINCT])
async def test_look_alikes_are_other_accounts(
    app: Quart, mailbox: Mailbox, case: str, one: str, other: str
) -> None:
    """Registered in either order, both are accounts of their own: each signs in with its own
    password, spends its own budget, and a reset for one reaches only its own mailbox."""
    passwords = {one: "the first passphrase here", other: "a second passphrase there"}
    for email in (one, other):
        created = await app.test_client().post(
            "/api/auth/register", json={"email": email, "password": passwords[email]}
        )
        assert created.status_code == 201, (email, await created.get_data(as_text=True))
    assert await fetch_val(app, "SELECT count(*) FROM users") == 2

    for email in (one, other):
        own = await app.test_client().post(
            "/api/auth/login", json={"email": email, "password": passwords[email]}
        )
        assert own.status_code == 200, email
        assert (await own.get_json())["email"] == unicodedata.normalize("NFC", email)
        theirs = next(each for each in passwords if each != email)
        crossed = await app.test_client().post(
            "/api/auth/login", json={"email": email, "password": passwords[theirs]}
        )
        assert crossed.status_code == 401, email

    # The look-alike's budget runs out; the other account's stays whole.
    for number in range(6):
        await app.test_client().post(
            "/api/auth/login", json={"email": one, "password": WRONG},
            scope_base={"client": (f"198.51.100.{number}", 40000)},
        )  # fmt: skip
    spared = await app.test_client().post(
        "/api/auth/login", json={"email": other, "password": passwords[other]},
        scope_base={"client": ("198.51.100.200", 40000)},
    )  # fmt: skip
    assert spared.status_code == 200

    await app.test_client().post("/api/auth/forgot-password", json={"email": other})
    await drain(app)
    messages = await mailbox.wait_for(3)  # two verification mails and the reset
    (reset,) = [message for message in messages if message["Subject"] == "Reset your password"]
    assert str(reset["To"]) == unicodedata.normalize("NFC", other)


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


async def test_an_address_change_compares_keys(signed_in: Client) -> None:
    """Another spelling of your own address is no change; a look-alike is another address."""
    same = await signed_in.post(
        "/api/me/email", json={"new_email": "ALICE@Example.COM", "password": PASSWORD}
    )
    assert same.status_code == 400
    assert (await same.get_json())["details"][0]["type"] == "same"
    look_alike = await signed_in.post(
        "/api/me/email", json={"new_email": "al\u0130ce@example.com", "password": PASSWORD}
    )
    assert look_alike.status_code == 202
