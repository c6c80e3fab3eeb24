"""Passwords: argon2id hashing in worker threads, verification, rehash checks and the policy."""

from __future__ import annotations

import bisect
import functools
import hashlib
import mmap
import re
import unicodedata
from collections.abc import Iterable
from difflib import SequenceMatcher
from pathlib import Path

MAX_PASSWORD_LENGTH = 1024


class PasswordPolicyError(ValueError):
    def __init__(self, type_: str, message: str) -> None:
        super().__init__(message)
        self.type = type_
        self.message = message


def normalize_password(password: str) -> str:
    """NFKC, so the same password typed on different keyboards or systems hashes the same."""
    return unicodedata.normalize("NFKC", password)


def check_policy(
    password: str,
    *,
    min_length: int,
    email: str | None = None,
    display_name: str | None = None,
) -> str:
    """Return the normalised password, or raise PasswordPolicyError (no composition rules)."""
    normalized = normalize_password(password)
    length = len(normalized)  # code points, not bytes
    if length < min_length:
        raise PasswordPolicyError("password_too_short", f"Use at least {min_length} characters.")
    if length > MAX_PASSWORD_LENGTH:
        raise PasswordPolicyError(
            "password_too_long", f"Use at most {MAX_PASSWORD_LENGTH} characters."
        )
    if not normalized.strip():
        raise PasswordPolicyError("password_blank", "The password cannot be only spaces.")
    if email is not None and resembles(normalized, email_variants(email)):
        raise PasswordPolicyError(
            "password_too_similar", "The password is too much like your email address."
        )
    if display_name is not None and resembles(normalized, name_variants(display_name)):
        raise PasswordPolicyError(
            "password_too_similar", "The password is too much like your name."
        )
    if is_common(normalized):
        raise PasswordPolicyError(
            "password_too_common",
            "This password is on a list of common passwords that attackers try first.",
        )
    return normalized


# --- too similar to the email or the name ---------------------------------------------------

# Django's UserAttributeSimilarityValidator's default: a password this close to an attribute
# (difflib's ratio, 1.0 = the same) is refused.
MAX_SIMILARITY = 0.7
# Parts shorter than this ("al", "jo") would refuse too many good passphrases.
MIN_PART_LENGTH = 3
_SEPARATORS = re.compile(r"[\W_]+")


def _letters_and_digits(text: str) -> str:
    """Compared this way: NFKC, case-folded, separators and symbols dropped."""
    return "".join(_SEPARATORS.split(normalize_password(text).casefold()))


def _parts(text: str) -> list[str]:
    """The whole of a value and each word in it, as letters and digits."""
    words = _SEPARATORS.split(normalize_password(text).casefold())
    return [_letters_and_digits(text), *words]


def email_variants(email: str) -> set[str]:
    """The whole address, its local part and the local part's words ("ada", "lovelace")."""
    local_part = email.strip().rpartition("@")[0] or email
    return {_letters_and_digits(email), *_parts(local_part)}


def name_variants(display_name: str) -> set[str]:
    """The whole name and each of its words."""
    return set(_parts(display_name))


def resembles(password: str, variants: Iterable[str]) -> bool:
    """Whether the password, as letters and digits and whatever its case, is part of one of
    the variants, is mostly one (at least half of it), or is as close as Django allows."""
    key = _letters_and_digits(password)
    if len(key) < MIN_PART_LENGTH:
        return False  # nearly all symbols: nothing to compare
    for variant in variants:
        if len(variant) < MIN_PART_LENGTH:
            continue
        if key in variant:
            return True
        if variant in key and 2 * len(key.replace(variant, "")) <= len(key):
            return True
        matcher = SequenceMatcher(a=key, b=variant, autojunk=False)
        if matcher.quick_ratio() >= MAX_SIMILARITY and matcher.ratio() >= MAX_SIMILARITY:
            return True
    return False


# --- too common -----------------------------------------------------------------------------

COMMON_PASSWORDS_PATH = Path(__file__).resolve().parents[1] / "data" / "common-passwords.bin"
DIGEST_SIZE = 8  # bytes of SHA-256 per entry: at 500,000 entries a false match is ~1 in 10^13


def common_digest(password: str) -> bytes:
    """The key of a password in the list: SHA-256 of its NFKC, case-folded UTF-8, truncated."""
    key = normalize_password(password).casefold().encode("utf-8", "surrogatepass")
    return hashlib.sha256(key).digest()[:DIGEST_SIZE]


class CommonPasswords:
    """A sorted file of fixed-width digests, searched by bisection on a read-only memory map.

    Opening costs no reading; a check touches about log2(n) entries (a few pages), so the
    memory a check takes does not grow with the list, and the pages are shared by every
    worker process through the page cache.
    """

    def __init__(self, path: Path) -> None:
        self._map: mmap.mmap | bytes = b""  # mmap refuses an empty file
        with path.open("rb") as file:
            if path.stat().st_size:
                self._map = mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ)
        if len(self._map) % DIGEST_SIZE:
            raise ValueError(f"{path} is not a list of {DIGEST_SIZE}-byte digests")

    def __len__(self) -> int:
        return len(self._map) // DIGEST_SIZE

    def __getitem__(self, index: int) -> bytes:
        start = index * DIGEST_SIZE
        return self._map[start : start + DIGEST_SIZE]

    def __contains__(self, password: object) -> bool:
        if not isinstance(password, str):
            return False
        digest = common_digest(password)
        index = bisect.bisect_left(self, digest)
        return index < len(self) and self[index] == digest

    @staticmethod
    def write(path: Path, passwords: Iterable[str], *, min_length: int = 8) -> int:
        """Write the list file for these passwords; return how many distinct entries it holds.

        Shorter passwords than the smallest AUTHAPP_PASSWORD_MIN_LENGTH are left out: the
        length rule refuses them before the list is asked.
        """
        digests = {
            common_digest(password)
            for password in passwords
            if len(normalize_password(password)) >= min_length
        }
        path.write_bytes(b"".join(sorted(digests)))
        return len(digests)


@functools.cache
def common_passwords() -> CommonPasswords:
    """The shipped list, mapped once per process on first use."""
    return CommonPasswords(COMMON_PASSWORDS_PATH)


def is_common(password: str) -> bool:
    return password in common_passwords()
