"""What `make bench` tuned, kept in place: each of these was measured under load (README,
Performance) and would silently come undone otherwise."""

from __future__ import annotations

import gc
import os
import threading
from pathlib import Path

from quart import Quart

from authapp.infra.hashing import HASH_THREAD_NAME, HASH_THREAD_NICENESS
from tests.conftest import app_state


def _niceness() -> int:
    return os.getpriority(os.PRIO_PROCESS, threading.get_native_id())


async def test_hashing_threads_yield_the_cpu_to_the_event_loop(app: Quart) -> None:
    # Under a sign-in flood, signed-in requests kept their speed only once the hashing
    # threads ran below the event loop's priority.
    hashing = app_state(app).hashing
    loop = _niceness()
    thread = await hashing._run(_niceness)
    assert thread == min(loop + HASH_THREAD_NICENESS, 19)
    assert _niceness() == loop  # the loop's own thread is untouched


def _system_name() -> str:
    return Path(f"/proc/self/task/{threading.get_native_id()}/comm").read_text().strip()


async def test_hashing_threads_carry_a_name_the_system_shows(app: Quart) -> None:
    # make bench tells the hashing threads' CPU from the loop's by this name (top -H too).
    assert await app_state(app).hashing._run(_system_name) == HASH_THREAD_NAME
    assert _system_name() != HASH_THREAD_NAME


async def test_objects_built_at_start_up_are_kept_out_of_full_collections(app: Quart) -> None:
    # The app (started by the fixture) froze what it built; full collections skip it.
    assert gc.get_freeze_count() > 0
