"""Each mailed link keeps the security stamp it was issued under: a link that a change of
credentials ends (a reset, a change of address) stops working once the stamp moves on, even
when it was written after the change spent the links it could see (an intruder's request,
its password proved just before the owner's reset landed)."""

from typing import Any


async def migrate(connection: Any) -> None:
    await connection.execute(
        """
        ALTER TABLE email_tokens ADD COLUMN security_stamp uuid;
        UPDATE email_tokens t SET security_stamp = u.security_stamp
          FROM users u WHERE u.id = t.user_id;
        ALTER TABLE email_tokens ALTER COLUMN security_stamp SET NOT NULL;
        """
    )


async def valid_migration(connection: Any) -> bool:
    columns = await connection.fetch_val(
        """SELECT count(*) FROM information_schema.columns
            WHERE table_schema = current_schema() AND table_name = 'email_tokens'
              AND column_name = 'security_stamp'"""
    )
    return bool(columns == 1)
