"""The supervisor of `authapp serve`: Hypercorn's workers, kept serving, sharing the load.

Hypercorn's own `run` (0.18) shuts every worker down when one exits, and its exit status then
races: one worker killed by the OOM killer took the whole server down, with status 0 and nothing
logged. This runs Hypercorn's asyncio worker (`worker_serve`) in processes of its own, as
gunicorn's arbiter does:

- A worker that dies is logged (its pid, and the signal or exit status) and replaced at once;
  the others keep serving meanwhile.
- A worker that dies before it serves (start-up failed: a bad setting, too little memory, a
  missing module) is replaced after a back-off that doubles; after STARTUP_FAILURE_LIMIT such
  deaths in a row (across all workers) the server stops, and `authapp serve` exits 1 with one
  line naming the last cause.
- SIGTERM or SIGINT stops the workers gracefully: each closes its sockets, finishes its requests
  (up to Hypercorn's graceful_timeout) and its app's shutdown; one still running STOP_ALLOWANCE
  seconds later is killed. A second signal kills them at once. Exit status 0.

Sockets: on Linux (SO_REUSEPORT) each worker has a listening socket of its own on the same port
and the kernel spreads new connections over the sockets that listen. With one shared socket,
which Hypercorn uses, the worker that wakes first takes nearly every new connection (31 of 32
measured). A worker's socket listens only once the worker serves, and closes when it dies, so a
starting or dead worker takes no connections. Elsewhere, and for unix: or fd:// addresses, the
workers share sockets as under Hypercorn.

Workers ignore SIGINT (Ctrl+C in a terminal reaches every process; the supervisor decides), and
SIGTERM stops a serving worker gracefully and a starting one at once. One worker (`workers = 1`,
the default) is supervised the same way, so it is replaced too; Hypercorn also runs a single
worker beside a parent that waits.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import importlib.util
import logging
import multiprocessing
import os
import signal
import socket
import ssl
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from multiprocessing import resource_tracker
from multiprocessing.connection import Connection, wait
from multiprocessing.process import BaseProcess
from typing import Any

from hypercorn.asyncio.run import worker_serve
from hypercorn.config import Config, Sockets
from hypercorn.utils import LifespanFailureError, load_application, write_pid_file

from ..config import ConfigError, parse_bind
from .log_writer import write_off_the_loop

log = logging.getLogger("authapp.supervisor")  # see authapp.infra.logs

STARTUP_FAILURE_LIMIT = 5  # workers dead before serving, in a row, before the server gives up
RESTART_DELAY = 0.25  # seconds before replacing a worker dead at start-up; doubles each time
RESTART_DELAY_MAX = 4.0
STOP_ALLOWANCE = 5.0  # seconds past graceful_timeout for a worker's shutdown (its pool, its mail)
WORKER_CLASSES = ("asyncio", "uvloop")  # Quart runs on asyncio: not trio
_STOP_SIGNALS = {signal.SIGINT, signal.SIGTERM}
_SERVING = "serving"  # what a worker tells the supervisor once every socket of it listens


class StartupFailure(Exception):
    """Workers kept dying before they served; the message names the last cause."""


def check(config: Config) -> None:
    """Refuse the Hypercorn settings the supervisor would otherwise quietly not honour."""
    if config.workers < 1:
        raise ConfigError(f"workers must be at least 1, not {config.workers}")
    if config.worker_class not in WORKER_CLASSES:
        raise ConfigError(
            f"worker_class {config.worker_class!r}: authapp serve runs "
            + " or ".join(WORKER_CLASSES)
        )
    if config.worker_class == "uvloop" and importlib.util.find_spec("uvloop") is None:
        raise ConfigError("worker_class 'uvloop': uvloop is not installed (pip install uvloop)")
    if config.use_reloader:
        raise ConfigError("use_reloader: authapp serve does not reload; plain hypercorn does")


def own_sockets(config: Config) -> bool:
    """Whether each worker gets listening sockets of its own (see the module's docstring)."""
    if sys.platform != "linux" or not hasattr(socket, "SO_REUSEPORT"):
        return False  # BSD and macOS accept SO_REUSEPORT but do not spread connections
    if config.ssl_enabled and (config.insecure_bind or config.quic_bind):
        return False
    try:
        for address in config.bind:
            parse_bind(address)
    except ValueError:  # unix:, fd://
        return False
    return True


def supervise(config: Config) -> None:
    """Serve with `config.workers` workers until SIGTERM or SIGINT, then stop them gracefully.
    Raises StartupFailure when workers die before serving STARTUP_FAILURE_LIMIT times in a row."""
    check(config)
    if config.pid_path is not None:
        write_pid_file(config.pid_path)
    supervisor = _Supervisor(config)
    try:
        with _signals_to(supervisor.wakeup_writer):
            supervisor.run()
    finally:
        supervisor.close()


# --- the supervisor ------------------------------------------------------------------------


@dataclass
class _Worker:
    process: BaseProcess
    channel: Connection | None  # what it tells us; None once it has closed
    serving: bool = False
    cause: str | None = None  # why it failed at start-up, in its words

    @property
    def pid(self) -> int:
        assert self.process.pid is not None  # started
        return self.process.pid


class _Supervisor:
    def __init__(self, config: Config) -> None:
        self.config = config
        self.context = multiprocessing.get_context("spawn")  # as Hypercorn: nothing inherited
        # Started now, not by the first worker's start: starting it unblocks SIGINT and
        # SIGTERM, which _start keeps blocked while a worker is spawned.
        resource_tracker.ensure_running()
        # Shared sockets are made once and held here, so they outlive any one worker.
        self.shared = None if own_sockets(config) else config.create_sockets()
        self.workers: dict[int, _Worker] = {}
        self.restarts: list[tuple[float, int]] = []  # (when, the pid of the worker it replaces)
        self.failures = 0  # workers dead before serving, in a row
        self.failure: str | None = None  # set when they were too many: why the server stops
        self.stopping = False
        self.kill_at: float | None = None  # when stopping: the end of the workers' time
        self.wakeup, self.wakeup_writer = socket.socketpair()

    def run(self) -> None:
        try:
            for _ in range(self.config.workers):
                self._start(replacing=None)
            while self.workers or (self.restarts and not self.stopping):
                self._start_due_restarts()
                channels = [w.channel for w in self.workers.values() if w.channel is not None]
                sentinels = [w.process.sentinel for w in self.workers.values()]
                ready = wait([self.wakeup, *channels, *sentinels], self._timeout())
                if self.wakeup in ready:
                    self._on_signals()
                for worker in list(self.workers.values()):
                    self._read(worker)
                    if worker.process.exitcode is not None:
                        self._on_exit(worker)
                if self.kill_at is not None and time.monotonic() >= self.kill_at:
                    self._kill_the_rest()
        finally:
            for worker in self.workers.values():  # only when the supervisor itself failed
                worker.process.kill()
        if self.failure is not None:
            raise StartupFailure(self.failure)

    # --- workers ---------------------------------------------------------------------------

    def _start(self, replacing: int | None) -> None:
        sockets, own = self._sockets()
        reader, writer = self.context.Pipe(duplex=False)
        process = self.context.Process(
            target=_work,
            kwargs={"config": self.config, "sockets": sockets, "channel": writer},
            daemon=True,  # should the supervisor fail, multiprocessing stops its workers
        )
        # Blocked until the worker has set up its own handling (a Ctrl+C while it starts
        # reaches the supervisor, not a half-started worker); here, delivered right after.
        blocked = signal.pthread_sigmask(signal.SIG_BLOCK, _STOP_SIGNALS)
        try:
            process.start()
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
            writer.close()  # the worker's end: its death closes the pipe
            for sock in own:
                sock.close()  # the worker's alone now, so it closes when the worker dies
        worker = _Worker(process, reader)
        self.workers[worker.pid] = worker
        if replacing is None:
            log.debug("worker %d started", worker.pid)
        else:
            log.info("worker %d started in place of worker %d", worker.pid, replacing)

    def _sockets(self) -> tuple[Sockets, list[socket.socket]]:
        """The sockets of a new worker, and those of them that are its own."""
        if self.shared is not None:
            return self.shared, []
        own = [_listening_socket(address) for address in self.config.bind]
        if self.config.ssl_enabled:
            return Sockets(own, [], []), own
        return Sockets([], own, []), own

    def _read(self, worker: _Worker) -> None:
        while worker.channel is not None and worker.channel.poll():
            try:
                message = worker.channel.recv()
            except EOFError:  # the worker has ended
                worker.channel.close()
                worker.channel = None
                return
            if message == _SERVING:
                worker.serving = True
                self.failures = 0
            else:
                worker.cause = str(message)

    def _on_exit(self, worker: _Worker) -> None:
        worker.process.join()
        self._read(worker)  # what it said just before it ended
        if worker.channel is not None:
            worker.channel.close()
        del self.workers[worker.pid]
        how = _how_it_ended(worker.process.exitcode)
        if self.stopping:
            log.debug("worker %d stopped (%s)", worker.pid, how)
        elif worker.serving:
            if worker.process.exitcode == 0:  # its max_requests served
                log.info("worker %d exited (%s)", worker.pid, how)
            else:
                log.warning("worker %d died (%s)", worker.pid, how)
            self.restarts.append((time.monotonic(), worker.pid))
        else:
            self.failures += 1
            cause = f"{how}: {worker.cause}" if worker.cause else how
            if self.failures >= STARTUP_FAILURE_LIMIT:
                self.failure = (
                    f"workers failed at start-up {self.failures} times in a row; the last: {cause}"
                )
                log.error("worker %d failed at start-up (%s): stopping", worker.pid, cause)
                self._stop()
                return
            delay = min(RESTART_DELAY * 2 ** (self.failures - 1), RESTART_DELAY_MAX)
            log.error(
                "worker %d failed at start-up (%s), %d in a row; another starts in %g s",
                worker.pid, cause, self.failures, delay,
            )  # fmt: skip
            self.restarts.append((time.monotonic() + delay, worker.pid))

    def _start_due_restarts(self) -> None:
        if self.stopping:
            return
        now = time.monotonic()
        due = [pid for when, pid in self.restarts if when <= now]
        self.restarts = [(when, pid) for when, pid in self.restarts if when > now]
        for pid in due:
            self._start(replacing=pid)

    def _timeout(self) -> float | None:
        moments = [] if self.stopping else [when for when, _ in self.restarts]
        if self.kill_at is not None:
            moments.append(self.kill_at)
        return max(0.0, min(moments) - time.monotonic()) if moments else None

    # --- stopping --------------------------------------------------------------------------

    def _on_signals(self) -> None:
        with contextlib.suppress(BlockingIOError):
            for number in self.wakeup.recv(64):
                name = signal.Signals(number).name
                if self.stopping:
                    log.warning("%s while stopping: killing the workers", name)
                    self._kill_the_rest()
                else:
                    log.info("%s: stopping", name)
                    self._stop()

    def _stop(self) -> None:
        self.stopping = True
        self.kill_at = time.monotonic() + self.config.graceful_timeout + STOP_ALLOWANCE
        self.restarts.clear()
        for worker in self.workers.values():
            worker.process.terminate()  # SIGTERM: a serving worker finishes its requests

    def _kill_the_rest(self) -> None:
        for worker in self.workers.values():
            if worker.process.exitcode is None:
                log.warning("worker %d had not stopped: killed", worker.pid)
                worker.process.kill()
        self.kill_at = None  # nothing more to wait for but their ends

    def close(self) -> None:
        if self.shared is not None:
            for sock in (*self.shared.secure_sockets, *self.shared.insecure_sockets):
                sock.close()
            for sock in self.shared.quic_sockets:
                sock.close()
        self.wakeup.close()
        self.wakeup_writer.close()


@contextlib.contextmanager
def _signals_to(writer: socket.socket) -> Iterator[None]:
    """SIGTERM and SIGINT wake the supervisor's wait: Python writes each signal's number to
    `writer` (set_wakeup_fd), whose other end the supervisor waits on with its workers' ends.
    A Python handler alone would run only once that wait ended by itself."""
    writer.setblocking(False)
    previous_fd = signal.set_wakeup_fd(writer.fileno(), warn_on_full_buffer=False)
    previous = {number: signal.signal(number, _noted) for number in _STOP_SIGNALS}
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
        signal.set_wakeup_fd(previous_fd)


def _noted(number: int, frame: object) -> None:
    """The signal's number is already on its way to the supervisor (see _signals_to)."""


def _how_it_ended(exitcode: int | None) -> str:
    if exitcode is not None and exitcode < 0:
        return f"killed by {signal.Signals(-exitcode).name}"
    return f"exit status {exitcode}"


def _listening_socket(address: str) -> socket.socket:
    """A socket of one worker for `address` (Hypercorn's options, and SO_REUSEPORT); it
    listens once its worker serves (asyncio's start_server)."""
    host, port = parse_bind(address)
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    sock.setblocking(False)
    return sock


# --- a worker (a spawned process) ----------------------------------------------------------


def _work(config: Config, sockets: Sockets, channel: Connection) -> None:
    """Hypercorn's asyncio worker (as hypercorn.asyncio.run.asyncio_worker), telling the
    supervisor once it serves, or why it could not start."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, _STOP_SIGNALS)  # blocked by the supervisor
    serving = False

    async def serve_until_terminated() -> None:
        # worker_serve awaits its shutdown trigger once every socket listens.
        nonlocal serving
        stop = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        serving = True
        with contextlib.suppress(OSError):  # the supervisor is gone: the parent watch stops us
            channel.send(_SERVING)
        await stop.wait()

    try:
        loop_factory = _loop_factory(config.worker_class)
        app = load_application(config.application_path, config.wsgi_max_body_size)
        write_off_the_loop()  # the app has set up logging: its lines never stall the loop
        with asyncio.Runner(debug=config.debug, loop_factory=loop_factory) as runner:
            runner.get_loop().set_exception_handler(_ignore_tls_handshake_failures)
            runner.run(
                worker_serve(app, config, sockets=sockets, shutdown_trigger=serve_until_terminated)
            )
    except Exception as error:
        if isinstance(error, LifespanFailureError) and error.__context__ is not None:
            # The app's start-up failed: Quart has logged its exception, which Hypercorn's
            # error (holding only the message) has as its context.
            cause: BaseException = error.__context__
        else:
            cause = error
            log.error("worker %d failed", os.getpid(), exc_info=error)
        if not serving:
            with contextlib.suppress(OSError):
                channel.send(f"{type(cause).__name__}: {cause}".splitlines()[0][:300])
        sys.exit(1)


def _loop_factory(worker_class: str) -> Any:
    if worker_class == "uvloop":  # not a dependency: `pip install uvloop` to use it
        return importlib.import_module("uvloop").new_event_loop
    return None


def _ignore_tls_handshake_failures(
    loop: asyncio.AbstractEventLoop, context: dict[str, Any]
) -> None:
    # As Hypercorn's workers do: a client's failed TLS handshake is not the server's error.
    if not isinstance(context.get("exception"), ssl.SSLError):
        loop.default_exception_handler(context)
