"""Safe redirects: `next` may only lead to a path on this site."""

from __future__ import annotations

from urllib.parse import unquote, urlsplit

DEFAULT_NEXT = "/"


def safe_next(target: str | None, default: str = DEFAULT_NEXT) -> str:
    """Return `target` when it is a same-site relative path, else `default`.

    Refuses scheme-relative (`//host`), backslash tricks (`/\\host`, which browsers read as
    `//host`), absolute URLs, `javascript:` and control characters (header injection), also
    when percent-encoded.
    """
    if not target or len(target) > 2048:
        return default
    for candidate in (target, unquote(target)):
        if not candidate.startswith("/") or candidate.startswith(("//", "/\\")):
            return default
        if "\\" in candidate or any(ord(char) < 0x20 or ord(char) == 0x7F for char in candidate):
            return default
        parts = urlsplit(candidate)
        if parts.scheme or parts.netloc:
            return default
    return target
