"""Work that a request leaves for after its answer (Quart's background tasks), for rules that
know nothing of requests: the answer goes out first, so its timing tells nothing of the work."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from quart import current_app


def after_answer(work: Callable[..., Awaitable[Any]], *args: Any) -> None:
    """Run `work(*args)` once the answer is sent (in the app's context; the server waits for
    it on shutdown)."""
    current_app.add_background_task(work, *args)
