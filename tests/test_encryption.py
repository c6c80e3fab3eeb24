"""Secrets at rest (infra/encryption.py): Fernet under AUTHAPP_ENCRYPTION_KEYS, the first key
encrypting and every key decrypting, and rotation onto the first key."""

from __future__ import annotations

import pytest

from authapp.infra.encryption import DecryptionFailed, Encryption, generate_key

SECRET = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"  # a base32 authenticator secret


def test_a_round_trip_gives_the_plaintext_and_stores_none_of_it() -> None:
    encryption = Encryption([generate_key()])
    token = encryption.encrypt(SECRET)
    assert SECRET not in token
    assert token != encryption.encrypt(SECRET)  # a random IV each time
    assert encryption.decrypt(token) == SECRET


def test_the_first_key_encrypts_and_every_key_decrypts() -> None:
    old, new = generate_key(), generate_key()
    under_old = Encryption([old]).encrypt(SECRET)
    both = Encryption([new, old])
    assert both.decrypt(under_old) == SECRET
    assert Encryption([new]).decrypt(both.encrypt(SECRET)) == SECRET
    with pytest.raises(DecryptionFailed):
        Encryption([old]).decrypt(both.encrypt(SECRET))


def test_rotation_makes_a_token_readable_by_the_new_key_alone() -> None:
    old, new = generate_key(), generate_key()
    under_old = Encryption([old]).encrypt(SECRET)
    with pytest.raises(DecryptionFailed):
        Encryption([new]).decrypt(under_old)
    rotated = Encryption([new, old]).rotate(under_old)
    assert Encryption([new]).decrypt(rotated) == SECRET
    with pytest.raises(DecryptionFailed):
        Encryption([old]).decrypt(rotated)


def test_a_token_no_key_decrypts_raises_decryption_failed_without_the_token() -> None:
    encryption = Encryption([generate_key(), generate_key()])
    token = Encryption([generate_key()]).encrypt(SECRET)
    tampered = encryption.encrypt(SECRET)
    tampered = tampered[:-8] + ("A" if tampered[-8] != "A" else "B") + tampered[-7:]
    for unreadable in (token, tampered, "not a token at all"):
        with pytest.raises(DecryptionFailed) as error:
            encryption.decrypt(unreadable)
        assert "AUTHAPP_ENCRYPTION_KEYS" in str(error.value)
        assert unreadable not in str(error.value)
        with pytest.raises(DecryptionFailed):
            encryption.rotate(unreadable)


def test_there_is_no_encryption_without_a_key() -> None:
    with pytest.raises(ValueError, match="at least one key"):
        Encryption([])
