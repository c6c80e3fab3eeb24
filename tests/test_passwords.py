"""Password hashing: argon2id parameters, verification, rehash, and never blocking the loop."""

from __future__ import annotations

import asyncio
import statistics
import time

import pytest

from authapp.passwords import PasswordHashing, PasswordPolicyError, check_policy


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
        ("\uff21" * 12, "A" * 12),  # full-width letters
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
        ("Owner@Example.com", "password_is_email"),
    ],
)
def test_policy_refuses(password: str, type_: str) -> None:
    with pytest.raises(PasswordPolicyError) as error:
        check_policy(password, min_length=12, email="owner@example.com")
    assert error.value.type == type_


def test_policy_has_no_composition_rules() -> None:
    assert check_policy("all lowercase words only", min_length=12)
