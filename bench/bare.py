"""The ceiling of `make bench`: a bare Quart JSON route served as authapp is, by `authapp serve`'s
supervisor with the repository's hypercorn.toml (the same workers, sockets, worker class and
access log), so what authapp adds on top is the difference.

Its access log is on, as authapp's: Hypercorn's own atoms and line, printed by a plain handler
on the root logger (hypercorn.toml hands Hypercorn's loggers to the root), one text line each.

    python bench/bare.py --config hypercorn.toml --bind 127.0.0.1:8001 --workers 2
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import logging
import os
import secrets
import sys
from concurrent.futures import ThreadPoolExecutor
from functools import partial

import asyncpg
from argon2 import PasswordHasher
from argon2.exceptions import VerifyMismatchError
from hypercorn.config import Config
from quart import Quart, Response, make_response, request

from authapp.infra.hashing import name_hashing_thread

app = Quart(__name__)


@app.get("/hello")
async def hello() -> dict[str, str]:
    return {"hello": "world"}


# --- the sign-ins' ceiling: a bare sign-in on the same PostgreSQL (BARE_DATABASE_URL) ---------
# What any sign-in must do, and nothing else: count the attempt before the hash (one round
# trip), verify the password with argon2id on a thread of its own (authapp's parameters and
# threads per worker), then start a session and forgive the count (one round trip), and set
# the cookie. No validation, no lockout rules, no events, no device cookie, no CSRF.

_pool: asyncpg.Pool | None = None


# As many hashing threads per worker as `authapp serve` gives authapp's (main() says how many),
# named as authapp's, so make bench counts their CPU alike.
_hashing = ThreadPoolExecutor(
    max_workers=int(os.environ.get("BARE_HASH_THREADS", "1")), initializer=name_hashing_thread
)
_hasher = PasswordHasher(time_cost=2, memory_cost=19456, parallelism=1)  # authapp's defaults


@app.before_serving
async def connect() -> None:
    global _pool
    url = os.environ.get("BARE_DATABASE_URL")
    if url:
        # No reset query on release (asyncpg's default sends one, a round trip), as authapp's
        # pool: the bare routes leave no session state on a connection either.
        _pool = await asyncpg.create_pool(url, min_size=2, max_size=10, reset=_no_reset)


async def _no_reset(connection: asyncpg.Connection) -> None:
    pass


@app.post("/login")
async def login() -> Response:
    assert _pool is not None, "BARE_DATABASE_URL is not set"
    body = await request.get_json()
    email = str(body["email"]).strip().lower()
    async with _pool.acquire() as connection:
        row = await connection.fetchrow(
            "UPDATE bare_users SET failed = failed + 1 WHERE email = $1 RETURNING id, hash", email
        )
    if row is None:
        return Response('{"code":"INVALID_CREDENTIALS"}', 401, content_type="application/json")
    verified = await asyncio.get_running_loop().run_in_executor(
        _hashing, partial(_verify, row["hash"], str(body["password"]))
    )
    if not verified:
        return Response('{"code":"INVALID_CREDENTIALS"}', 401, content_type="application/json")
    token = secrets.token_urlsafe(32)
    async with _pool.acquire() as connection:
        await connection.execute(
            """WITH forgiven AS (UPDATE bare_users SET failed = 0 WHERE id = $2)
               INSERT INTO bare_sessions (id, user_id, created_at) VALUES ($1, $2, now())""",
            hashlib.sha256(token.encode()).digest(), row["id"],
        )  # fmt: skip
    response = await make_response({"id": row["id"], "email": email})
    response.set_cookie("session", token, secure=True, httponly=True, samesite="Lax")
    return response


@app.get("/me")
async def me() -> Response | dict[str, object]:
    """The signed-in requests' reference: what any revocable signed-in request must do, and
    nothing else: look its session up by the cookie's hash, one round trip a request (no
    batching, no idle expiry, no "last seen" mark, no guards)."""
    assert _pool is not None, "BARE_DATABASE_URL is not set"
    token = request.cookies.get("session", "")
    async with _pool.acquire() as connection:
        row = await connection.fetchrow(
            """SELECT u.id, u.email FROM bare_sessions s JOIN bare_users u ON u.id = s.user_id
               WHERE s.id = $1 AND s.created_at > now() - make_interval(days => 14)""",
            hashlib.sha256(token.encode()).digest(),
        )
    if row is None:
        return Response('{"code":"UNAUTHORIZED"}', 401, content_type="application/json")
    return {"id": row["id"], "email": row["email"]}


def _verify(password_hash: str, password: str) -> bool:
    try:
        return _hasher.verify(password_hash, password)
    except VerifyMismatchError:
        return False


async def create_tables(url: str, emails: list[str], password: str) -> None:
    """The bare sign-in's tables, with a user of `password` for each of `emails`."""
    connection = await asyncpg.connect(url)
    try:
        await connection.execute(
            """CREATE TABLE bare_users (id serial PRIMARY KEY, email text UNIQUE NOT NULL,
                                        hash text NOT NULL, failed int NOT NULL DEFAULT 0);
               CREATE TABLE bare_sessions (id bytea PRIMARY KEY, user_id int NOT NULL,
                                           created_at timestamptz NOT NULL)"""
        )
        await connection.executemany(
            "INSERT INTO bare_users (email, hash) VALUES ($1, $2)",
            [(email, _hasher.hash(password)) for email in emails],
        )
    finally:
        await connection.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--config", required=True)
    parser.add_argument("--bind", required=True)
    parser.add_argument("--workers", type=int, required=True)
    args = parser.parse_args()
    config = Config.from_toml(args.config)
    config.bind = [args.bind]
    config.workers = args.workers
    config.application_path = "bare:app"  # bench/ is on sys.path, and so on the workers'
    from authapp.cli.serve import hash_threads_per_worker
    from authapp.infra.supervisor import supervise

    os.environ["BARE_HASH_THREADS"] = str(hash_threads_per_worker(args.workers))  # inherited

    supervise(config)


# In each worker (which imports this module for `app`) as in the supervisor.
logging.basicConfig(stream=sys.stderr, format="%(message)s")

if __name__ == "__main__":
    main()
