"""Two-factor sign-in: an authenticator app's secret per user (encrypted, with the last time step
it accepted), single-use recovery codes (keyed digests only), sign-ins waiting for their second
factor (server-side, found by the SHA-256 of the cookie's reference), and how each session was
authenticated (RFC 8176 method names)."""

from typing import Any


async def migrate(connection: Any) -> None:
    await connection.execute(
        """
        CREATE TABLE mfa_totp (
            user_id uuid PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
            -- Fernet ciphertext (AUTHAPP_ENCRYPTION_KEYS), never the base32 secret.
            secret_encrypted text NOT NULL,
            created_at timestamptz NOT NULL,
            -- NULL while the enrolment waits for its first code.
            confirmed_at timestamptz,
            -- The latest 30-second step a code was accepted for: no code is accepted twice.
            last_used_step bigint,
            CONSTRAINT mfa_totp_confirmed_after_created CHECK (
                confirmed_at IS NULL OR confirmed_at >= created_at
            )
        );

        CREATE TABLE mfa_recovery_codes (
            user_id uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
            digest bytea NOT NULL
                CONSTRAINT mfa_recovery_codes_digest_is_sha256 CHECK (octet_length(digest) = 32),
            created_at timestamptz NOT NULL,
            used_at timestamptz,
            PRIMARY KEY (user_id, digest)
        );

        CREATE TABLE pending_sign_ins (
            id bytea PRIMARY KEY
                CONSTRAINT pending_sign_ins_id_is_sha256 CHECK (octet_length(id) = 32),
            user_id uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
            -- The user's stamp when the password proved right: any change of credentials since
            -- (a reset, a new password, a second factor switched off) ends the pending sign-in.
            security_stamp uuid NOT NULL,
            created_at timestamptz NOT NULL,
            expires_at timestamptz NOT NULL,
            attempts integer NOT NULL DEFAULT 0
                CONSTRAINT pending_sign_ins_attempts_not_negative CHECK (attempts >= 0),
            used_at timestamptz,
            remember boolean NOT NULL,
            ip inet,
            CONSTRAINT pending_sign_ins_expires_after_created CHECK (expires_at > created_at)
        );
        CREATE INDEX pending_sign_ins_user_idx ON pending_sign_ins (user_id);

        ALTER TABLE sessions
            ADD COLUMN amr text[] NOT NULL DEFAULT '{pwd}'
                CONSTRAINT sessions_amr_known CHECK (
                    cardinality(amr) BETWEEN 1 AND 4
                    AND amr <@ ARRAY['pwd', 'otp', 'recovery', 'hwk', 'user']
                );
        """
    )


async def valid_migration(connection: Any) -> bool:
    tables = await connection.fetch_val(
        """SELECT count(*) FROM information_schema.tables
            WHERE table_schema = current_schema()
              AND table_name IN ('mfa_totp', 'mfa_recovery_codes', 'pending_sign_ins')"""
    )
    return bool(tables == 3)
