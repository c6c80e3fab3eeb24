"""Key rotation (`authapp keys rotate`): every stored authenticator secret re-encrypted under the
first key of AUTHAPP_ENCRYPTION_KEYS, so that the keys after it can be removed."""

from __future__ import annotations

import logging
from uuid import UUID

from ..infra.database import Database
from ..infra.encryption import DecryptionFailed, Encryption
from ..models.mfa import select_totp_secrets_after, update_totp_secret

log = logging.getLogger("authapp.keys")  # see authapp.infra.logs

# Rows locked and rewritten per transaction: short locks (an enrolment or a sign-in that needs
# a row waits for one batch at most), and few round trips for a large table.
ROTATE_BATCH = 500


class UnreadableSecret(Exception):
    """A stored secret that no key decrypts: rotating stops there, the key it needs is missing."""

    def __init__(self, user_id: UUID, rotated: int) -> None:
        super().__init__(
            f"no key in AUTHAPP_ENCRYPTION_KEYS decrypts the authenticator secret of user "
            f"{user_id}: add the key it was encrypted with and run this again "
            f"({rotated} other secret(s) were re-encrypted)"
        )
        self.user_id = user_id
        self.rotated = rotated


async def rotate_encryption_keys(
    db: Database, encryption: Encryption, *, batch_size: int = ROTATE_BATCH
) -> int:
    """Re-encrypt every authenticator secret under the first key, `batch_size` per transaction,
    in user order; return how many. A secret no key decrypts raises UnreadableSecret and leaves its
    batch as it was (the batches before it stay rotated, and running again is harmless: a
    secret under the first key already is only encrypted anew)."""
    rotated = 0
    after: UUID | None = None
    while True:
        async with db.transaction() as connection:
            batch = await select_totp_secrets_after(connection, after, batch_size)
            for user_id, secret_encrypted in batch:
                try:
                    rotated_secret = encryption.rotate(secret_encrypted)
                except DecryptionFailed:
                    raise UnreadableSecret(user_id, rotated) from None
                await update_totp_secret(connection, user_id, rotated_secret)
        rotated += len(batch)  # committed
        if batch:
            after = batch[-1][0]
        if len(batch) < batch_size:
            log.info("re-encrypted %d authenticator secret(s) with the first key", rotated)
            return rotated
