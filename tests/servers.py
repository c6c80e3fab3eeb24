"""authapp as a real server in a subprocess, as production runs it (hypercorn and its config),
and its answers read off a raw socket."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import httpx
import pytest

from tests.conftest import ENCRYPTION_KEY, ROOT, SECRET_KEY

BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def clean_env(**extra: str) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("AUTHAPP_")}
    return {**env, **extra}


def wait_until_serving(
    process: subprocess.Popen[bytes], port: int, seconds: float = 60, log: IO[bytes] | None = None
) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            output = (
                read_log(log) if log else process.stdout.read().decode() if process.stdout else ""
            )
            pytest.fail(f"the server exited with {process.returncode}:\n{output}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/docs", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            time.sleep(0.2)
    pytest.fail("the server did not start in time")


def stop(process: subprocess.Popen[bytes]) -> str:
    process.terminate()
    try:
        output, _ = process.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        output, _ = process.communicate()
    return (output or b"").decode()


def read_log(log: IO[bytes]) -> str:
    log.seek(0)
    return log.read().decode()


@contextmanager
def hypercorn(
    database_url: str,
    instance_path: Path,
    smtp_url: str,
    *,
    args: Sequence[str] = (),
    output: list[str] | None = None,
    log_path: Path | None = None,
    host: str = "127.0.0.1",
    **settings: str,
) -> Iterator[str]:
    """hypercorn with the repository's hypercorn.toml on a free port; yields its base URL.

    Mail goes to `smtp_url` (to the outbox when it is ""); links in it start with the server's
    own URL unless AUTHAPP_BASE_URL is given. `settings` are extra AUTHAPP_* variables;
    everything else is production's defaults. What the server printed is appended to `output`
    once it stops; with `log_path`, it is also in that file, which a test may read meanwhile.
    `host` names the server in its URL (it listens on 127.0.0.1 either way): WebAuthn takes
    `localhost` as a relying party, never an address.
    """
    port = free_port()
    env = clean_env(
        AUTHAPP_SECRET_KEY=SECRET_KEY,
        AUTHAPP_ENCRYPTION_KEYS=ENCRYPTION_KEY,
        AUTHAPP_DATABASE_URL=database_url,
        AUTHAPP_INSTANCE_PATH=str(instance_path),
        AUTHAPP_SMTP_URL=smtp_url,
        AUTHAPP_MAIL_RETRY_DELAY="0",
        **{"AUTHAPP_BASE_URL": f"http://{host}:{port}", **settings},
    )
    # A file, not a pipe: a server that logs more than a pipe holds would block on writing.
    with open(log_path, "w+b") if log_path else tempfile.TemporaryFile() as log:
        process = subprocess.Popen(
            [BIN / "hypercorn", "--config", "hypercorn.toml", "--bind", f"127.0.0.1:{port}",
             *args, "authapp:create_app()"],
            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        try:
            wait_until_serving(process, port, log=log)
            yield f"http://{host}:{port}"
        finally:
            stop(process)
            if output is not None:
                output.append(read_log(log))


@dataclass(frozen=True)
class Answer:
    """One HTTP/1.1 answer, as read off a raw socket."""

    status: int
    headers: dict[str, str]
    body: bytes

    @property
    def code(self) -> str | None:
        if not self.headers.get("content-type", "").startswith("application/json"):
            return None
        code: str = json.loads(self.body)["code"]
        return code


def read_answer(sock: socket.socket) -> Answer:
    """The next answer on `sock` (its body has a Content-Length, as all of authapp's do)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"the server closed the connection without an answer (got {data!r})"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    length = int(headers["content-length"])
    while len(body) < length:
        chunk = sock.recv(65536)
        assert chunk, "the server closed the connection in the middle of an answer"
        body += chunk
    assert len(body) == length, "more bytes than the answer's Content-Length"
    return Answer(int(status_line.split()[1]), headers, body)
