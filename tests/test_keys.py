"""Key rotation (accounts/keys.py) over more secrets than one batch: every batch its own
transaction, in user order, each secret re-encrypted with the first key exactly once."""

from __future__ import annotations

from uuid import UUID

import pytest
from quart import Quart

from authapp.accounts.keys import UnreadableSecret, rotate_encryption_keys
from authapp.infra.encryption import DecryptionFailed, Encryption, generate_key
from tests.conftest import app_state, execute, fetch_val

OLD, NEW, LOST = generate_key(), generate_key(), generate_key()


async def many_users(app: Quart, count: int) -> list[UUID]:
    """`count` users straight in SQL (no password to hash: none signs in), in user_id order."""
    await execute(
        app,
        """INSERT INTO users (email, email_key, password_hash, display_name)
           SELECT 'user' || n || '@example.com', 'user' || n || '@example.com', '$argon2id$x', 'U'
             FROM generate_series(1, :count) AS n""",
        {"count": count},
    )
    return list(await fetch_val(app, "SELECT array_agg(id ORDER BY id) FROM users"))


async def store_secrets(app: Quart, secrets: dict[UUID, str]) -> None:
    await execute(
        app,
        """INSERT INTO mfa_totp (user_id, secret_encrypted, created_at)
           SELECT * , now() FROM unnest(CAST(:ids AS uuid[]), CAST(:secrets AS text[]))""",
        {"ids": list(secrets), "secrets": list(secrets.values())},
    )


async def stored(app: Quart) -> dict[UUID, str]:
    rows = await fetch_val(
        app,
        "SELECT array_agg(ARRAY[user_id::text, secret_encrypted] ORDER BY user_id) FROM mfa_totp",
    )
    return {UUID(user_id): secret for user_id, secret in rows}


async def test_every_secret_of_several_batches_is_rotated_once(app: Quart) -> None:
    user_ids = await many_users(app, 10)
    old = Encryption([OLD])
    await store_secrets(app, {user_id: old.encrypt(f"SECRET{user_id.hex}") for user_id in user_ids})

    # 10 secrets: batches of 4, 4 and 2.
    count = await rotate_encryption_keys(app_state(app).db, Encryption([NEW, OLD]), batch_size=4)
    assert count == 10
    new_alone = Encryption([NEW])
    rotated = await stored(app)
    assert sorted(rotated) == user_ids
    for user_id, secret in rotated.items():
        assert new_alone.decrypt(secret) == f"SECRET{user_id.hex}"
    # Again, with the default batch (all in one): harmless.
    assert await rotate_encryption_keys(app_state(app).db, Encryption([NEW])) == 10


async def test_an_unreadable_secret_undoes_its_batch_and_keeps_the_ones_before(
    app: Quart,
) -> None:
    user_ids = await many_users(app, 10)
    old = Encryption([OLD])
    secrets = {user_id: old.encrypt(f"SECRET{user_id.hex}") for user_id in user_ids}
    secrets[user_ids[6]] = Encryption([LOST]).encrypt("SECRETLOST")  # in the second batch
    await store_secrets(app, secrets)

    with pytest.raises(UnreadableSecret) as error:
        await rotate_encryption_keys(app_state(app).db, Encryption([NEW, OLD]), batch_size=4)
    assert (error.value.user_id, error.value.rotated) == (user_ids[6], 4)
    assert str(user_ids[6]) in str(error.value)
    after = await stored(app)
    new_alone = Encryption([NEW])
    for user_id in user_ids[:4]:  # the first batch was committed
        assert new_alone.decrypt(after[user_id]) == f"SECRET{user_id.hex}"
    for user_id in user_ids[4:]:  # the second was rolled back; the third never started
        assert after[user_id] == secrets[user_id]
    with pytest.raises(DecryptionFailed):
        new_alone.decrypt(after[user_ids[4]])

    # With the lost key back in the list, running again finishes the job.
    everything = Encryption([NEW, OLD, LOST])
    assert await rotate_encryption_keys(app_state(app).db, everything, batch_size=4) == 10
    assert new_alone.decrypt((await stored(app))[user_ids[6]]) == "SECRETLOST"
