"""Sessions people can see (a public id, the last address seen, when the password was last
proved) and personal API tokens, kept as the SHA-256 of the token."""

from typing import Any


async def migrate(connection: Any) -> None:
    # No values are bound here, so the ':' in the scope names is safe from named parameters.
    await connection.execute(
        """
        ALTER TABLE sessions
            ADD COLUMN public_id uuid NOT NULL DEFAULT gen_random_uuid(),
            ADD COLUMN authenticated_at timestamptz,
            ADD COLUMN last_seen_ip inet;
        UPDATE sessions SET authenticated_at = created_at, last_seen_ip = ip;
        ALTER TABLE sessions
            ALTER COLUMN authenticated_at SET NOT NULL,
            ALTER COLUMN authenticated_at SET DEFAULT now(),
            ADD CONSTRAINT sessions_authenticated_after_created CHECK (
                authenticated_at >= created_at
            );
        CREATE UNIQUE INDEX sessions_public_id_key ON sessions (public_id);

        CREATE TABLE api_tokens (
            id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
            token_hash bytea NOT NULL
                CONSTRAINT api_tokens_hash_is_sha256 CHECK (octet_length(token_hash) = 32),
            user_id uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
            name text NOT NULL
                CONSTRAINT api_tokens_name_shape CHECK (
                    char_length(name) BETWEEN 1 AND 100 AND name = btrim(name)
                ),
            scopes text[] NOT NULL
                CONSTRAINT api_tokens_scopes_known CHECK (
                    cardinality(scopes) >= 1
                    AND scopes <@ ARRAY['profile:read', 'profile:write',
                                        'sessions:read', 'sessions:write']
                ),
            created_at timestamptz NOT NULL,
            last_used_at timestamptz,
            expires_at timestamptz NOT NULL,
            CONSTRAINT api_tokens_expire_after_created CHECK (expires_at > created_at),
            CONSTRAINT api_tokens_used_after_created CHECK (
                last_used_at IS NULL OR last_used_at >= created_at
            )
        );

        CREATE UNIQUE INDEX api_tokens_token_hash_key ON api_tokens (token_hash);
        CREATE UNIQUE INDEX api_tokens_user_name_key ON api_tokens (user_id, lower(name));
        """
    )


async def valid_migration(connection: Any) -> bool:
    tables = await connection.fetch_val(
        """SELECT count(*) FROM information_schema.tables
            WHERE table_schema = current_schema() AND table_name = 'api_tokens'"""
    )
    return bool(tables == 1)
