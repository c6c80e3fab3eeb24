"""Field types shared by the JSON models and the form models."""

from __future__ import annotations

import unicodedata
from typing import Annotated

from pydantic import AfterValidator, Field, StringConstraints

from ..accounts.emails import normalize_email
from ..accounts.passwords import MAX_PASSWORD_LENGTH
from ..accounts.tokens import known_scope

_BIDI_CONTROLS = set("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def _plain_text(value: str) -> str:
    if any(unicodedata.category(char) == "Cc" or char in _BIDI_CONTROLS for char in value):
        raise ValueError("must not contain control characters")
    return value


Email = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=3, max_length=254),
    AfterValidator(normalize_email),
    Field(json_schema_extra={"format": "email"}),
]
LoginEmail = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=320)]
Password = Annotated[str, Field(min_length=1, max_length=MAX_PASSWORD_LENGTH)]
DisplayName = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=100),
    AfterValidator(_plain_text),
]

TokenName = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=100),
    AfterValidator(_plain_text),
]


class NoContent:
    """No content."""


MAX_SCOPES = 64  # scopes in one token, whatever a product registers
# A scope a token may have (authapp's, or one a product registered), checked when it arrives.
ScopeName = Annotated[str, StringConstraints(max_length=63), AfterValidator(known_scope)]
