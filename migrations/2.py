"""Single-use tokens sent by email: verify an address, reset a password, confirm a new address.

Only the SHA-256 of a token is kept; the token itself exists only in the mail.
"""

from typing import Any


async def migrate(connection: Any) -> None:
    await connection.execute(
        """
        CREATE TABLE email_tokens (
            id bytea PRIMARY KEY
                CONSTRAINT email_tokens_id_is_sha256 CHECK (octet_length(id) = 32),
            user_id uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
            purpose text NOT NULL
                CONSTRAINT email_tokens_purpose CHECK (
                    purpose IN ('verify_email', 'reset_password', 'change_email')
                ),
            email text NOT NULL
                CONSTRAINT email_tokens_email_shape CHECK (
                    char_length(email) BETWEEN 3 AND 254 AND position('@' IN email) > 1
                ),
            created_at timestamptz NOT NULL,
            expires_at timestamptz NOT NULL,
            used_at timestamptz,
            CONSTRAINT email_tokens_expire_after_created CHECK (expires_at > created_at),
            CONSTRAINT email_tokens_used_after_created CHECK (
                used_at IS NULL OR used_at >= created_at
            )
        );

        CREATE INDEX email_tokens_user_id_idx ON email_tokens (user_id, purpose);
        """
    )


async def valid_migration(connection: Any) -> bool:
    tables = await connection.fetch_val(
        """SELECT count(*) FROM information_schema.tables
            WHERE table_schema = current_schema() AND table_name = 'email_tokens'"""
    )
    return bool(tables == 1)
