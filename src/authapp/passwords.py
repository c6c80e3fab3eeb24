"""Passwords: argon2id hashing in worker threads, verification, rehash checks and the policy."""

from __future__ import annotations

import asyncio
import unicodedata
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TypeVar

from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

T = TypeVar("T")

MAX_PASSWORD_LENGTH = 1024
# The dummy hash is checked against this, so unknown accounts cost a full verification.
_DUMMY_PASSWORD = "authapp dummy password that nobody has"  # noqa: S105


class PasswordPolicyError(ValueError):
    def __init__(self, type_: str, message: str) -> None:
        super().__init__(message)
        self.type = type_
        self.message = message


def normalize_password(password: str) -> str:
    """NFKC, so the same password typed on different keyboards or systems hashes the same."""
    return unicodedata.normalize("NFKC", password)


def check_policy(password: str, *, min_length: int, email: str | None = None) -> str:
    """Return the normalised password, or raise PasswordPolicyError (no composition rules)."""
    normalized = normalize_password(password)
    length = len(normalized)  # code points, not bytes
    if length < min_length:
        raise PasswordPolicyError("password_too_short", f"Use at least {min_length} characters.")
    if length > MAX_PASSWORD_LENGTH:
        raise PasswordPolicyError(
            "password_too_long", f"Use at most {MAX_PASSWORD_LENGTH} characters."
        )
    if not normalized.strip():
        raise PasswordPolicyError("password_blank", "The password cannot be only spaces.")
    if email is not None and normalized.casefold() == email.strip().casefold():
        raise PasswordPolicyError("password_is_email", "The password cannot be your email address.")
    return normalized


@dataclass
class PasswordHashing:
    """argon2id with the OWASP parameters; the work runs in threads so the event loop never waits.

    argon2-cffi releases the GIL while hashing, so a pool of one thread per core gives real
    parallelism and also caps how much memory (memory_cost per hash) a login flood can take.
    """

    time_cost: int
    memory_cost: int
    parallelism: int
    threads: int
    _hasher: PasswordHasher = field(init=False)
    _executor: ThreadPoolExecutor = field(init=False)
    _dummy_hash: str | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        self._hasher = PasswordHasher(
            time_cost=self.time_cost,
            memory_cost=self.memory_cost,
            parallelism=self.parallelism,
            hash_len=32,
            salt_len=16,
            type=Type.ID,
        )
        self._executor = ThreadPoolExecutor(self.threads, thread_name_prefix="argon2")

    async def _run(self, func: Callable[..., T], *args: str) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, func, *args)

    async def hash(self, password: str) -> str:
        return await self._run(self._hasher.hash, password)

    async def verify(self, password_hash: str, password: str) -> bool:
        return await self._run(self._verify_sync, password_hash, password)

    def _verify_sync(self, password_hash: str, password: str) -> bool:
        try:
            return self._hasher.verify(password_hash, password)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False

    def needs_rehash(self, password_hash: str) -> bool:
        try:
            return self._hasher.check_needs_rehash(password_hash)
        except InvalidHashError:
            return True

    async def verify_dummy(self, password: str) -> None:
        """Spend the time of a real verification for an account that does not exist."""
        if self._dummy_hash is None:
            self._dummy_hash = await self.hash(_DUMMY_PASSWORD)
        await self.verify(self._dummy_hash, password)

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
