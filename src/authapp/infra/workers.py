"""Processes that end with their parent: the workers, and `authapp serve` under make.

The workers (of `authapp serve`, or of plain Hypercorn) are multiprocessing children that their
parent stops when it stops; a parent killed outright (SIGKILL, a crash, the OOM killer) stops
nothing, and its workers would go on answering on the port with nobody to stop them. So each
worker watches its parent, and ends when the parent is gone (the worker is then adopted by another
process: its parent id changes).
`make run` asks the same of `authapp serve` (--exit-with-parent), so killing make stops it.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import threading
import time

PARENT_POLL = 0.5  # seconds between looks at the parent
_watching = False


def exit_with_parent(parent: int | None = None) -> None:
    """SIGTERM this process once its parent (`parent`, by default the current one) has ended:
    a worker of `authapp serve` stops listening at once and finishes its requests (a plain
    Hypercorn worker of several has no handler for it and ends at once); `authapp serve` stops
    gracefully, as on a plain kill."""
    global _watching
    if _watching:
        return
    _watching = True
    parent = os.getppid() if parent is None else parent

    def watch_parent() -> None:
        while os.getppid() == parent:
            time.sleep(PARENT_POLL)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch_parent, name="authapp-parent-watch", daemon=True).start()


def exit_worker_with_parent() -> None:
    """In a multiprocessing child (a worker), exit_with_parent; elsewhere nothing."""
    parent = multiprocessing.parent_process()
    if parent is not None and parent.pid is not None:
        exit_with_parent(parent.pid)  # if it has already ended, the first look sees it
