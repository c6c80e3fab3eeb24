"""Email addresses: the one normalisation of an address and the one key that decides which
spellings are the same account.

Everything that compares addresses (the unique index, sign-in, recovery, the rate limits, a
change of address) compares `email_key(...)`, computed here in Python and stored in its own
column; never `lower()` in SQL, whose answer depends on the database's locale (under a UTF-8
locale PostgreSQL folds `İ` to `i`, which Python does not, so a look-alike could hold the ASCII
address and receive its reset links).
"""

from __future__ import annotations

import hashlib
import unicodedata

from email_validator import EmailNotValidError, validate_email

# Only the ASCII letters fold: every mail server treats `Alice@` and `alice@` as one mailbox,
# but whether `İ`, `ß` or `Σ` meet another letter is each server's own business, so two
# addresses that differ there may be two people's mailboxes.
_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


def normalize_email(value: str) -> str:
    """The address as stored and mailed: syntax checked (no DNS), trimmed, the local part in
    NFC as typed, the domain lower-cased in its Unicode form (email-validator's normalisation).
    ValueError, with a message for people, when it is not an address."""
    try:
        return validate_email(value, check_deliverability=False).normalized
    except EmailNotValidError as error:
        raise ValueError(str(error)) from None


def email_key(value: str) -> str | None:
    """The matching key of an address, or None when `value` is no address at all.

    The local part in NFC with only A-Z lower-cased; the domain in its IDNA ASCII form, which
    is how DNS compares it (`bücher.example`, `BÜCHER.example` and `xn--bcher-kva.example` are
    one domain; full-width letters and dots in a domain fold too). So `Alice@Example.com`
    and `alice@example.com` are one account, while `jİm@`, `jım@` and `jim@`, `straße@` and
    `strasse@`, `Σ` and `σ`, or full-width letters in the local part are not.
    """  # noqa: RUF002 (the look-alikes are the point)
    try:
        validated = validate_email(value.strip(), check_deliverability=False)
    except EmailNotValidError:
        return None
    local = unicodedata.normalize("NFC", validated.local_part).translate(_ASCII_LOWER)
    return f"{local}@{validated.ascii_domain.lower()}"


def email_key_digest(key: str) -> str:
    """A digest of an address key, for stores and cookies that must not hold the address."""
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()[:32]


def email_key_fragment(value: str) -> str:
    """A piece of an address folded as email_key folds one (for searching the key column by
    substring): a whole address is its key; anything else is trimmed, in NFC, with only A-Z
    lower-cased (a piece of a non-ASCII domain finds nothing: keys hold it as IDNA ASCII)."""
    key = email_key(value)
    if key is not None:
        return key
    return unicodedata.normalize("NFC", value.strip()).translate(_ASCII_LOWER)


def like_pattern(fragment: str) -> str:
    """A LIKE pattern (with ESCAPE '\\') matching `fragment` anywhere, its wildcards literal."""
    escaped = fragment.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"
