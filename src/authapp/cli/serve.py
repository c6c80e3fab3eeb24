"""`authapp serve`: Hypercorn's workers under a supervisor, the address checked first, and the
start-up lines said once."""

from __future__ import annotations

import errno
import logging
import os
import socket
import tomllib
from pathlib import Path
from typing import Any

import click
from hypercorn.config import Config as HypercornConfig

from .. import resolve_settings
from ..config import Settings, load_settings, parse_bind
from ..infra import supervisor
from ..infra import workers as workers_module
from ..infra.logs import AccessLogger, configure_logging
from ..infra.mail import OUTBOX_FOLDER, parse_smtp_url
from . import common
from .common import fail

log = logging.getLogger("authapp.cli")  # the start-up lines' logger, whatever the module


class _ServeLogger(AccessLogger):
    """Hypercorn's logger without its "Running on" line from every worker: `serve` says where
    it listens once, with the rest of its start-up lines."""

    async def info(self, message: str, *args: Any, **kwargs: Any) -> None:
        if not message.startswith("Running on "):
            await super().info(message, *args, **kwargs)


@click.command()
@click.option(
    "--config",
    "config_path",
    default="hypercorn.toml",
    show_default=True,
    help="Hypercorn settings (TOML); skipped when the file does not exist.",
)
@click.option(
    "--bind",
    multiple=True,
    help="Address to listen on, like 127.0.0.1:8000 (default: AUTHAPP_BIND, 127.0.0.1:8000).",
)
@click.option("--workers", type=int, help="Worker processes.")
@click.option(
    "--exit-with-parent",
    is_flag=True,
    help="Stop when the process that started this one ends (make run: killing make stops it).",
)
def serve(
    config_path: str, bind: tuple[str, ...], workers: int | None, exit_with_parent: bool
) -> None:
    """Serve the app with Hypercorn's workers; one that dies is replaced (see supervisor.py)."""
    if exit_with_parent:
        workers_module.exit_with_parent()
    settings = load_settings()
    configure_logging(settings)
    hypercorn_config = _hypercorn_config(Path(config_path))
    hypercorn_config.bind = list(bind) or [settings.bind]
    if workers is not None:
        hypercorn_config.workers = workers
    supervisor.check(hypercorn_config)
    for address in hypercorn_config.bind:  # before the database starts: the usual mistake
        if problem := bind_problem(address):
            fail(problem)

    # Settle the settings once here, so a bad one is one line, and so every worker shares
    # the same embedded database and development secret.
    embedded = settings.database_url is None
    settings = resolve_settings()
    os.environ["AUTHAPP_DATABASE_URL"] = settings.database_url or ""
    os.environ["AUTHAPP_SECRET_KEY"] = settings.secret_key or ""
    os.environ["AUTHAPP_ENCRYPTION_KEYS"] = ",".join(settings.encryption_keys)
    if not settings.hash_workers:
        os.environ["AUTHAPP_HASH_WORKERS"] = str(hash_threads_per_worker(hypercorn_config.workers))
    hypercorn_config.application_path = f"{common._factory}()"
    hypercorn_config.logger_class = _ServeLogger
    announce(settings, hypercorn_config, embedded=embedded)
    try:
        supervisor.supervise(hypercorn_config)
    except supervisor.StartupFailure as error:
        fail(str(error), 1)
    except OSError as error:  # taken between the check above and now
        if error.errno != errno.EADDRINUSE:
            raise
        taken = ", ".join(hypercorn_config.bind)
        fail(f"{taken} is in use: set AUTHAPP_BIND or stop the other server")


def hash_threads_per_worker(workers: int) -> int:
    """The server's hashing threads, one per core, shared among its workers (rounded up, so no
    core waits). Each thread keeps its own argon2 memory (memory_cost, 19 MiB by default)
    once it has hashed, so a pool of one per core in every worker cost each worker 19 MiB a
    core, and let a sign-in flood run twice as many hashes as cores."""
    return max(1, -(-(os.cpu_count() or 1) // max(1, workers)))


def _hypercorn_config(path: Path) -> HypercornConfig:
    if not path.is_file():
        return HypercornConfig()
    if "bind" in tomllib.loads(path.read_text()):
        fail(f"{path} sets bind, which `authapp serve` does not read: set AUTHAPP_BIND instead")
    return HypercornConfig.from_toml(path)


def bind_problem(address: str) -> str | None:
    """Why Hypercorn could not listen on `address`, found by trying (as Hypercorn binds, but
    never sharing the port: another server sharing it would be one in the way), or None."""
    if address.startswith(("unix:", "fd://")):
        return None
    try:
        host, port = parse_bind(address)
    except ValueError as error:  # AUTHAPP_BIND is checked with the settings: this is --bind
        return f"--bind: {error}"
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as error:
            if error.errno == errno.EADDRINUSE:
                return f"port {port} is in use: set AUTHAPP_BIND or stop the other server"
            return f"cannot listen on {address}: {error.strerror}"
    return None


def announce(settings: Settings, config: HypercornConfig, *, embedded: bool) -> None:
    """The start-up lines, once, in the log's format: where it listens, the docs, the data,
    the mail."""
    scheme = "https" if config.ssl_enabled else "http"
    urls = [a if a.startswith(("unix:", "fd://")) else f"{scheme}://{a}" for a in config.bind]
    log.info("authapp (%s) listening on %s", settings.env, ", ".join(urls))
    log.info("API docs: %s/docs", urls[0])
    instance = Path(settings.instance_path)
    if embedded:
        log.info("data: embedded PostgreSQL in %s", instance / "pgdata")
    else:
        log.info("data: PostgreSQL at %s", _without_password(settings.database_url or ""))
    if settings.smtp_url:
        target = parse_smtp_url(settings.smtp_url)
        log.info("mail: SMTP server %s:%d (TLS: %s)", target.hostname, target.port, target.tls)
    else:
        # /dev/outbox is served in development only, and only with the pages (blueprints/dev.py).
        outbox_page = settings.env == "development" and settings.pages
        page = f"; latest at {urls[0]}/dev/outbox" if outbox_page else ""
        log.info("mail: files in %s (no AUTHAPP_SMTP_URL); links also in this log%s",
                 instance / OUTBOX_FOLDER, page)  # fmt: skip


def _without_password(url: str) -> str:
    scheme, separator, rest = url.partition("://")
    credentials, at, location = rest.rpartition("@")
    if not at:
        return url
    user = credentials.partition(":")[0]
    return f"{scheme}{separator}{user}@{location}"
