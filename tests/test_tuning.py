"""What `make bench` tuned, kept in place: each of these was measured under load (README,
Performance) and would silently come undone otherwise."""

from __future__ import annotations

import gc
import os
import threading

from quart import Quart

from authapp.infra.hashing import HASH_THREAD_NICENESS
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


async def test_objects_built_at_start_up_are_kept_out_of_full_collections(app: Quart) -> None:
    # The app (started by the fixture) froze what it built; full collections skip it.
    assert gc.get_freeze_count() > 0
