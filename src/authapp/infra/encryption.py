"""Infrastructure: secrets at rest (authenticator-app secrets), encrypted with Fernet under the
keys of AUTHAPP_ENCRYPTION_KEYS, so a copy of the database (a dump, a backup) does not carry
anybody's second factor with it."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from ..config import check_encryption_key, new_encryption_key

if TYPE_CHECKING:
    from cryptography.fernet import MultiFernet

# cryptography is imported on the first encryption or decryption, not with the app: it costs
# each worker some 8.5 MiB, and most workers never read an authenticator-app secret (issue 20).

_UNREADABLE = (
    "no key in AUTHAPP_ENCRYPTION_KEYS decrypts this value "
    "(the key it was encrypted with was removed, or the value was altered)"
)


class DecryptionFailed(Exception):
    """No configured key decrypts a stored value: it was encrypted under a key since removed
    from AUTHAPP_ENCRYPTION_KEYS, or it was altered."""


def generate_key() -> str:
    """A new random key in the form AUTHAPP_ENCRYPTION_KEYS takes (32 bytes, url-safe
    base64): what development keeps in its instance folder and a test app makes for itself."""
    return new_encryption_key()


class Encryption:
    """Fernet (AES-128-CBC with an HMAC-SHA256: tampering is detected, not decrypted into
    garbage) over several keys, so keys rotate without a moment when stored values are
    unreadable: the first key encrypts, every key decrypts."""

    def __init__(self, keys: Sequence[str]) -> None:
        if not keys:
            raise ValueError("Encryption needs at least one key (AUTHAPP_ENCRYPTION_KEYS)")
        for key in keys:
            check_encryption_key(key)  # a wrong key fails here, as Fernet(key) would
        self._keys = tuple(keys)
        self._multi: MultiFernet | None = None

    @property
    def _fernet(self) -> MultiFernet:
        """The keys' MultiFernet, made (and cryptography imported) on first use."""
        if self._multi is None:
            from cryptography.fernet import Fernet, MultiFernet

            self._multi = MultiFernet([Fernet(key) for key in self._keys])
        return self._multi

    def encrypt(self, plaintext: str) -> str:
        """Under the first key; a random IV makes each call's token differ, even for one text."""
        return self._fernet.encrypt(plaintext.encode()).decode()

    def decrypt(self, token: str) -> str:
        """The plaintext of `token`, trying each key in turn; DecryptionFailed if none can."""
        fernet = self._fernet
        from cryptography.fernet import InvalidToken  # imported by _fernet already

        try:
            return fernet.decrypt(token.encode()).decode()
        except InvalidToken:
            raise DecryptionFailed(_UNREADABLE) from None

    def rotate(self, token: str) -> str:
        """`token` re-encrypted under the first key (whichever key made it), so that the other
        keys can be removed once every stored value is rotated; DecryptionFailed if no key
        decrypts it."""
        fernet = self._fernet
        from cryptography.fernet import InvalidToken

        try:
            return fernet.rotate(token.encode()).decode()
        except InvalidToken:
            raise DecryptionFailed(_UNREADABLE) from None
