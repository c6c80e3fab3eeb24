"""Where each user signed in from, and the sign-in before it, for the dashboard."""

from typing import Any


async def migrate(connection: Any) -> None:
    await connection.execute(
        """
        ALTER TABLE users
            ADD COLUMN last_login_ip inet,
            ADD COLUMN previous_login_at timestamptz,
            ADD COLUMN previous_login_ip inet;
        """
    )


async def valid_migration(connection: Any) -> bool:
    columns = await connection.fetch_val(
        """SELECT count(*) FROM information_schema.columns
            WHERE table_schema = current_schema() AND table_name = 'users'
              AND column_name IN ('last_login_ip', 'previous_login_at', 'previous_login_ip')"""
    )
    return bool(columns == 3)
