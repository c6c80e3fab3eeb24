"""A placeholder on the passkeys branch, so that 9 runs (quart-db applies migrations in an
unbroken sequence): the roles branch's 8 takes its place when both are merged."""

from typing import Any


async def migrate(connection: Any) -> None:
    await connection.execute("SELECT 1")


async def valid_migration(connection: Any) -> bool:
    return True
