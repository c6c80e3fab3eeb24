"""Passkeys (WebAuthn): each user's random user handle (what an authenticator stores instead of
the user's id or email), their credentials, and the challenges of the ceremonies (server-side,
single use, 5 minutes)."""

from typing import Any


async def migrate(connection: Any) -> None:
    await connection.execute(
        """
        CREATE TABLE webauthn_user_handles (
            user_id uuid PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
            -- 32 random bytes: never the user's id or email, so a passkey names nobody.
            user_handle bytea NOT NULL UNIQUE
                CONSTRAINT webauthn_user_handles_length CHECK (octet_length(user_handle) = 32)
        );

        CREATE TABLE webauthn_credentials (
            id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
            user_id uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
            -- Unique over every account: one authenticator's key is never two accounts' key.
            credential_id bytea NOT NULL UNIQUE
                CONSTRAINT webauthn_credentials_id_length CHECK (
                    octet_length(credential_id) BETWEEN 16 AND 1023
                ),
            public_key bytea NOT NULL,  -- COSE_Key, as the attestation carried it
            sign_count bigint NOT NULL DEFAULT 0
                CONSTRAINT webauthn_credentials_sign_count_range CHECK (
                    sign_count BETWEEN 0 AND 4294967295
                ),
            transports text[] NOT NULL DEFAULT '{}',
            backed_up boolean NOT NULL,
            device_type text NOT NULL
                CONSTRAINT webauthn_credentials_device_type_known CHECK (
                    device_type IN ('single_device', 'multi_device')
                ),
            name text NOT NULL
                CONSTRAINT webauthn_credentials_name_length CHECK (
                    char_length(name) BETWEEN 1 AND 64
                ),
            created_at timestamptz NOT NULL,
            last_used_at timestamptz,
            CONSTRAINT webauthn_credentials_name_unique UNIQUE (user_id, name)
        );

        CREATE TABLE webauthn_challenges (
            -- The SHA-256 of a reference in the client's cookie (a sign-in with a passkey), or
            -- of the challenge itself (adding one, bound to the signed-in user).
            id bytea PRIMARY KEY
                CONSTRAINT webauthn_challenges_id_is_sha256 CHECK (octet_length(id) = 32),
            challenge bytea NOT NULL
                CONSTRAINT webauthn_challenges_length CHECK (octet_length(challenge) = 32),
            purpose text NOT NULL
                CONSTRAINT webauthn_challenges_purpose_known CHECK (
                    purpose IN ('register', 'authenticate')
                ),
            user_id uuid REFERENCES users (id) ON DELETE CASCADE,
            created_at timestamptz NOT NULL,
            expires_at timestamptz NOT NULL,
            used_at timestamptz,
            CONSTRAINT webauthn_challenges_register_has_user CHECK (
                purpose <> 'register' OR user_id IS NOT NULL
            ),
            CONSTRAINT webauthn_challenges_expires_after_created CHECK (expires_at > created_at)
        );
        CREATE INDEX webauthn_challenges_expires_idx ON webauthn_challenges (expires_at);
        """
    )


async def valid_migration(connection: Any) -> bool:
    tables = await connection.fetch_val(
        """SELECT count(*) FROM information_schema.tables
            WHERE table_schema = current_schema()
              AND table_name IN ('webauthn_user_handles', 'webauthn_credentials',
                                 'webauthn_challenges')"""
    )
    return bool(tables == 3)
