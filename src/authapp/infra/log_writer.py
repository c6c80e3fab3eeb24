"""Infrastructure: the thread that writes a serving process's log lines (write_off_the_loop),
so neither a slow standard error nor formatting ever stalls the event loop; the lines' shape and
redaction are logs.py's."""

from __future__ import annotations

import atexit
import logging
import threading
from collections.abc import Callable
from queue import Empty, SimpleQueue

from .logs import AuthappLogHandler, OffTheLoopHandler

# How long the writing thread sleeps between two batches of lines.
WRITE_INTERVAL = 0.05


class _Writer(threading.Thread):
    """Writes the queued lines in batches, every WRITE_INTERVAL: logging's QueueListener
    waits on the queue, so every line woke it, and it then waited for the event loop's GIL;
    5 context switches per request served (1 without it) and a fifth of /healthz's CPU,
    measured under make bench. Lines are at most WRITE_INTERVAL late."""

    def __init__(self, queue: SimpleQueue[logging.LogRecord], handler: logging.Handler) -> None:
        super().__init__(name="authapp-log-writer", daemon=True)
        self.queue = queue
        self.handler = handler
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.wait(WRITE_INTERVAL):
            self.write_waiting()
        self.write_waiting()

    def write_waiting(self) -> None:
        while True:
            try:
                record = self.queue.get_nowait()
            except Empty:
                return
            if record.levelno >= self.handler.level:
                self.handler.handle(record)

    def stop(self) -> None:
        self.stopped.set()
        self.join()


def write_off_the_loop() -> Callable[[], None]:
    """From now on, authapp's handler formats and writes its lines on a thread of its own,
    so a slow standard error (a full pipe, a stalled collector) never stalls the event loop,
    and neither does formatting. Lines still waiting are written when the process exits.
    For serving processes (authapp serve's workers); once per process. Returns what writes
    the waiting lines and stops the thread (atexit calls it)."""
    root = logging.getLogger()
    ours = [handler for handler in root.handlers if isinstance(handler, AuthappLogHandler)]
    writers = []
    for handler in ours:
        queued = OffTheLoopHandler(handler)
        writers.append(_Writer(queued.queue, handler))
        root.removeHandler(handler)
        root.addHandler(queued)
        writers[-1].start()

    def stop() -> None:
        for writer in writers:
            writer.stop()

    atexit.register(stop)  # before logging's own shutdown (atexit runs the last first)
    return stop
