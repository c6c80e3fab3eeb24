"""Password hashing: argon2id in a pool of threads below the event loop's CPU priority, so the
loop never waits on a hash and a sign-in flood slows sign-ins, not the signed-in."""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TypeVar

from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

T = TypeVar("T")

# The dummy hash is checked against this, so unknown accounts cost a full verification.
_DUMMY_PASSWORD = "authapp dummy password that nobody has"  # noqa: S105


# How much lower than the event loop the hashing threads run (Linux "nice", per thread).
HASH_THREAD_NICENESS = 10
# The hashing threads' name for the system (top -H, ps -L, /proc/PID/task/TID/comm), so their
# CPU can be told from the loop's; `make bench` counts it.
HASH_THREAD_NAME = "authapp-argon2"


def _start_hashing_thread() -> None:
    """Make this hashing thread yield the CPU to the event loop's, and name it.

    On a busy machine the kernel shares the cores among runnable threads, so a sign-in flood
    (hashing threads always runnable) would leave the event loop, and every signed-in request
    it serves, a share of a core. At niceness 10 a thread weighs a tenth of the loop's:
    hashing takes what the loop leaves. Linux only (elsewhere a thread id is not a process
    id, and this does nothing); lowering one's own priority, or naming one's own thread,
    needs no privilege.
    """
    with contextlib.suppress(OSError, AttributeError):
        thread = threading.get_native_id()
        niceness = os.getpriority(os.PRIO_PROCESS, thread) + HASH_THREAD_NICENESS
        os.setpriority(os.PRIO_PROCESS, thread, min(niceness, 19))
    name_hashing_thread()


def name_hashing_thread() -> None:
    """Give this thread HASH_THREAD_NAME for the system (Linux; elsewhere nothing happens).
    bench/bare.py's hashing threads take it too, so make bench counts both alike."""
    comm = f"/proc/self/task/{threading.get_native_id()}/comm"
    with contextlib.suppress(OSError), open(comm, "w") as file:
        file.write(HASH_THREAD_NAME)


@dataclass
class PasswordHashing:
    """argon2id with the OWASP parameters; the work runs in threads so the event loop never waits.

    argon2-cffi releases the GIL while hashing, so a pool of one thread per core gives real
    parallelism and also caps how much memory (memory_cost per hash) a login flood can take.
    The threads run at a lower CPU priority than the event loop, so a flood of sign-ins slows
    sign-ins, not the signed-in.
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
        self._executor = ThreadPoolExecutor(
            self.threads, thread_name_prefix="argon2", initializer=_start_hashing_thread
        )

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
