"""Password hashing (argon2id parameters, verification, rehash, never blocking the loop) and
the policy: length, similarity to the email and the name, the list of common passwords."""

from __future__ import annotations

import asyncio
import statistics
import time
import tracemalloc
import unicodedata
from pathlib import Path

import pytest

from authapp.accounts.passwords import (
    COMMON_PASSWORDS_PATH,
    DIGEST_SIZE,
    CommonPasswords,
    PasswordPolicyError,
    check_policy,
    common_passwords,
    email_variants,
    name_variants,
    resembles,
)
from authapp.infra.hashing import PasswordHashing


def full_width(text: str) -> str:
    """The same text in full-width forms (U+FF21 for "A"), as some keyboards type it."""
    return "".join(chr(ord(char) + 0xFEE0) if "!" <= char <= "~" else char for char in text)


@pytest.fixture
def hashing() -> PasswordHashing:
    return PasswordHashing(time_cost=2, memory_cost=19456, parallelism=1, threads=2)


async def test_hashes_are_owasp_argon2id(hashing: PasswordHashing) -> None:
    digest = await hashing.hash("a long enough passphrase")
    assert digest.startswith("$argon2id$v=19$m=19456,t=2,p=1$")
    assert await hashing.verify(digest, "a long enough passphrase")
    assert not await hashing.verify(digest, "a long enough passphrasE")
    assert not await hashing.verify("not a hash", "anything")
    assert not hashing.needs_rehash(digest)


async def test_weaker_or_foreign_hashes_need_a_rehash(hashing: PasswordHashing) -> None:
    stronger = PasswordHashing(time_cost=3, memory_cost=19456, parallelism=1, threads=1)
    assert stronger.needs_rehash(await hashing.hash("a long enough passphrase"))
    assert hashing.needs_rehash("$2b$12$notargon")


async def test_hashing_never_blocks_the_event_loop(hashing: PasswordHashing) -> None:
    """While hashes run, a ticker on the loop keeps its rhythm."""
    started = time.perf_counter()
    await hashing.hash("warm up the pool")
    one_hash = time.perf_counter() - started
    gaps: list[float] = []
    stop = asyncio.Event()

    async def ticker() -> None:
        last = time.perf_counter()
        while not stop.is_set():
            await asyncio.sleep(0.001)
            now = time.perf_counter()
            gaps.append(now - last)
            last = now

    task = asyncio.create_task(ticker())
    await asyncio.gather(*(hashing.hash(f"passphrase number {n}") for n in range(6)))
    stop.set()
    await task
    # A loop that ran the hashes itself would tick about once per hash; this one keeps ticking.
    # (Counts and the median, not the longest gap: a busy machine can pause any thread.)
    assert len(gaps) > 30, len(gaps)
    assert statistics.median(gaps) < one_hash / 4, (statistics.median(gaps), one_hash)


async def test_dummy_verification_costs_a_real_verification(hashing: PasswordHashing) -> None:
    await hashing.verify_dummy("warm")  # computes the dummy hash once
    digest = await hashing.hash("a long enough passphrase")
    started = time.perf_counter()
    await hashing.verify(digest, "wrong guess here")
    real = time.perf_counter() - started
    started = time.perf_counter()
    await hashing.verify_dummy("wrong guess here")
    dummy = time.perf_counter() - started
    assert dummy > real / 4  # same order of magnitude, not a shortcut


@pytest.mark.parametrize(
    ("password", "expected"),
    [
        ("twelve chars", "twelve chars"),
        ("\ufb01ne passphrase", "fine passphrase"),  # NFKC folds the ligature
        (full_width("Quiet rivers"), "Quiet rivers"),
        ("ünïcödé pässwörd", "ünïcödé pässwörd"),
        ("x" * 1024, "x" * 1024),  # never truncated
    ],
)
def test_policy_normalises(password: str, expected: str) -> None:
    assert check_policy(password, min_length=12) == expected


@pytest.mark.parametrize(
    ("password", "type_"),
    [
        ("elevenchars", "password_too_short"),
        ("x" * 1025, "password_too_long"),
        ("            ", "password_blank"),
        ("Owner@Example.com", "password_too_similar"),  # the email itself, in any case
        ("password1234", "password_too_common"),
    ],
)
def test_policy_refuses(password: str, type_: str) -> None:
    with pytest.raises(PasswordPolicyError) as error:
        check_policy(password, min_length=12, email="owner@example.com")
    assert error.value.type == type_


def test_policy_has_no_composition_rules() -> None:
    assert check_policy("all lowercase words only", min_length=12)


# --- too similar to the email or the name ---------------------------------------------------

EMAIL = "ada.lovelace@example.com"
NAME = "Ada Lovelace"

# (password, like the email, like the name): case, separators and symbols do not count.
SIMILARITY = [
    ("ada.lovelace@example.com", True, True),  # the address itself
    ("ADA.LOVELACE@EXAMPLE.COM", True, True),
    ("Ada Lovelace", True, True),  # the name, and the email's local part
    ("ada_lovelace!!", True, True),
    ("lovelace-lovelace", True, True),  # nothing but one word of it
    ("Lovelace2024", True, True),  # mostly a word of it: 8 of 12 letters and digits
    ("ada!!!!!!!!!!!", True, True),
    ("4da.l0velace.", True, True),  # close enough by Django's measure (ratio >= 0.7)
    ("lovelace@example.org", True, False),  # like the address by ratio; the name is 8 of 18
    ("lovelace", True, True),  # part of the address
    ("ada@example.com!!", True, False),  # the address without the name's second word
    ("lovelace analytical engine notes", False, False),  # the name is a small part
    ("ada was the first programmer", False, False),
    ("correct horse battery staple", False, False),
    ("~~~~~~~~~~~~", False, False),  # no letters or digits to compare
]


@pytest.mark.parametrize(("password", "like_email", "like_name"), SIMILARITY)
def test_similarity_to_the_email_and_the_name(
    password: str, like_email: bool, like_name: bool
) -> None:
    assert resembles(password, email_variants(EMAIL)) is like_email
    assert resembles(password, name_variants(NAME)) is like_name


def test_short_names_are_not_held_against_passphrases() -> None:
    # "Al" and "Jo" would refuse every passphrase with "al" or "jo" in it.
    assert not resembles("always jolly mornings", name_variants("Al Jo"))
    assert not resembles("always jolly mornings", email_variants("al.jo@example.com"))


@pytest.mark.parametrize(
    ("password", "message"),
    [
        ("Ada.Lovelace@Example.com", "like your email address"),
        ("countess lovelace", "like your name"),  # "countess" is not in the address
    ],
)
def test_policy_refuses_passwords_like_the_email_or_the_name(password: str, message: str) -> None:
    with pytest.raises(PasswordPolicyError) as error:
        check_policy(password, min_length=12, email="ada@example.com", display_name="Lovelace")
    assert error.value.type == "password_too_similar"
    assert message in error.value.message


# --- too common -----------------------------------------------------------------------------


def test_the_shipped_list_holds_a_sorted_set_of_at_least_100000_digests() -> None:
    data = COMMON_PASSWORDS_PATH.read_bytes()
    entries = [data[i : i + DIGEST_SIZE] for i in range(0, len(data), DIGEST_SIZE)]
    assert len(entries) >= 100_000
    assert entries == sorted(set(entries))  # sorted and unique, or bisection would miss
    assert len(common_passwords()) == len(entries)


@pytest.mark.parametrize(
    "password",
    [
        "password1234",  # from the top of the list
        "qwertyuiop123",
        "iloveyou2010",
        "PASSWORD1234",  # whatever the case
        "Qwertyuiop123",
        full_width("password1234"),  # NFKC first
    ],
)
def test_common_passwords_are_found_whatever_the_case_or_width(password: str) -> None:
    assert password in common_passwords()
    with pytest.raises(PasswordPolicyError) as error:
        check_policy(password, min_length=12)
    assert error.value.type == "password_too_common"


@pytest.mark.parametrize(
    "password", ["correct horse battery staple", "a long enough passphrase", "password1234!?"]
)
def test_other_passwords_are_not(password: str) -> None:
    assert password not in common_passwords()


def test_a_list_file_round_trips(tmp_path: Path) -> None:
    decomposed = unicodedata.normalize("NFD", "Crème Brûlée")
    path = tmp_path / "list.bin"
    written = CommonPasswords.write(
        path, ["sunshine", "SUNSHINE", "short", "letmein!", decomposed, full_width("sunshine")]
    )
    assert written == 3  # one sunshine in any case or width, no "short", letmein!, the crème
    assert path.stat().st_size == 3 * DIGEST_SIZE
    listed = CommonPasswords(path)
    assert "Sunshine" in listed
    assert "letmein!" in listed
    assert "crème brûlée" in listed  # composed or not, one password after NFKC
    assert "sunshine1" not in listed
    assert "short" not in listed


def test_an_empty_list_file_lists_nothing(tmp_path: Path) -> None:
    path = tmp_path / "empty.bin"
    assert CommonPasswords.write(path, ["short"]) == 0
    assert len(CommonPasswords(path)) == 0
    assert "short" not in CommonPasswords(path)


def test_a_damaged_list_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "list.bin"
    path.write_bytes(b"\x00" * (DIGEST_SIZE + 1))
    with pytest.raises(ValueError, match="digests"):
        CommonPasswords(path)


def test_a_check_takes_constant_memory() -> None:
    """A check reads a few entries of the mapped file; it never loads the list."""
    listed = common_passwords()
    "warm up" in listed  # noqa: B015
    tracemalloc.start()
    try:
        for number in range(2000):
            assert f"not a common password {number}" not in listed
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    size = COMMON_PASSWORDS_PATH.stat().st_size
    assert peak < 4096, peak  # a few small objects, against a list of megabytes
    assert size > 1000 * peak
