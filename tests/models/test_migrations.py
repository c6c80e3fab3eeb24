"""Migrations that move data: each runs on a database at the migration before it, holding rows
as an older release left them."""

from __future__ import annotations

import secrets
import shutil
import unicodedata
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest
from quart import Quart
from quart_db import QuartDB

from tests.conftest import ROOT, _admin, _with_database

HASH = "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA"


@pytest.fixture
async def old_database(server_url: str) -> AsyncIterator[str]:
    name = f"authapp_migration_{secrets.token_hex(6)}"
    await _admin(server_url, f'CREATE DATABASE "{name}"')
    try:
        yield _with_database(server_url, name)
    finally:
        await _admin(server_url, f'DROP DATABASE "{name}" WITH (FORCE)')


def copy_migrations(folder: Path, up_to: int) -> None:
    folder.mkdir(exist_ok=True)
    for number in range(up_to + 1):
        shutil.copy(ROOT / "migrations" / f"{number}.py", folder / f"{number}.py")


async def migrate(url: str, folder: Path, up_to: int) -> None:
    """Apply migrations 0 to `up_to` of this release, as start-up does (quart-db, under its
    lock, each in a transaction)."""
    copy_migrations(folder, up_to)
    quart_db = QuartDB(Quart(__name__), url=url, migrations_folder=str(folder))
    quart_db._backend = quart_db._create_backend()
    await quart_db.migrate()


async def add_user(connection: asyncpg.Connection, email: str) -> str:
    user_id = await connection.fetchval(
        "INSERT INTO users (email, password_hash, display_name) VALUES ($1, $2, 'X') RETURNING id",
        email,
        HASH,
    )
    return str(user_id)


async def add_user_with_key(connection: asyncpg.Connection, email: str) -> str:
    user_id = await connection.fetchval(
        """INSERT INTO users (email, email_key, password_hash, display_name)
                VALUES ($1, $1, $2, 'X') RETURNING id""",
        email,
        HASH,
    )
    return str(user_id)


async def test_5_keys_every_address_and_drops_the_locale_index(
    old_database: str, tmp_path: Path
) -> None:
    await migrate(old_database, tmp_path / "migrations", 4)
    connection = await asyncpg.connect(old_database)
    try:
        # Under a UTF-8 locale lower() made `jİm@` hold `jim@`; the key keeps them apart.
        dotted = await add_user(connection, "j\u0130m@example.com")
        dotless = await add_user(connection, "j\u0131m@example.com")
        plain = await add_user(connection, "Joe@Example.com")
        await migrate(old_database, tmp_path / "migrations", 5)
        keys = dict(await connection.fetch("SELECT id::text, email_key FROM users"))
        assert keys == {
            dotted: "j\u0130m@example.com",
            dotless: "j\u0131m@example.com",
            plain: "joe@example.com",
        }
        await add_user_with_key(connection, "jim@example.com")  # the real owner, at last
        stamps = await connection.fetchval("SELECT count(DISTINCT security_stamp) FROM users")
        assert stamps == 4
        indexes = await connection.fetchval(
            "SELECT string_agg(indexname, ' ') FROM pg_indexes WHERE tablename = 'users'"
        )
        assert "users_email_key_key" in indexes
        assert "users_email_lower_key" not in indexes
    finally:
        await connection.close()


async def test_5_refuses_to_merge_accounts_and_names_them(
    old_database: str, tmp_path: Path
) -> None:
    """Rows written before addresses were normalised: one address in NFC and in NFD, which
    lower(email) kept apart and the key makes one. The migration changes nothing and says who."""
    await migrate(old_database, tmp_path / "migrations", 4)
    connection = await asyncpg.connect(old_database)
    try:
        composed = await add_user(connection, unicodedata.normalize("NFC", "jos\u00e9@example.com"))
        decomposed = await add_user(
            connection, unicodedata.normalize("NFD", "jos\u00e9@example.com")
        )
        with pytest.raises(Exception, match="held by more than one account") as refused:
            await migrate(old_database, tmp_path / "migrations", 5)
        assert composed in str(refused.value)
        assert decomposed in str(refused.value)
        assert await connection.fetchval("SELECT version FROM schema_migration") == 4
        columns = await connection.fetchval(
            """SELECT count(*) FROM information_schema.columns
                WHERE table_name = 'users' AND column_name = 'email_key'"""
        )
        assert columns == 0
    finally:
        await connection.close()


async def test_10_binds_each_outstanding_link_to_its_users_stamp(
    old_database: str, tmp_path: Path
) -> None:
    """Links mailed before the upgrade keep working until a change of credentials."""
    await migrate(old_database, tmp_path / "migrations", 9)
    connection = await asyncpg.connect(old_database)
    try:
        user_id = await add_user_with_key(connection, "jim@example.com")
        await connection.execute(
            """INSERT INTO email_tokens (id, user_id, purpose, email, created_at, expires_at)
                    VALUES ($1, $2, 'reset_password', 'jim@example.com', now(),
                            now() + interval '1 hour')""",
            secrets.token_bytes(32),
            user_id,
        )
        await migrate(old_database, tmp_path / "migrations", 10)
        bound = await connection.fetchval(
            """SELECT t.security_stamp = u.security_stamp
                 FROM email_tokens t JOIN users u ON u.id = t.user_id"""
        )
        assert bound is True
        nullable = await connection.fetchval(
            """SELECT is_nullable FROM information_schema.columns
                WHERE table_name = 'email_tokens' AND column_name = 'security_stamp'"""
        )
        assert nullable == "NO"
    finally:
        await connection.close()
