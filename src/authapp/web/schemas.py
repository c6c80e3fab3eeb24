"""Field types shared by the JSON models and the form models."""

from __future__ import annotations

import unicodedata
from typing import Annotated

from pydantic import AfterValidator, Field, StringConstraints

from ..accounts.emails import normalize_email
from ..accounts.passwords import MAX_PASSWORD_LENGTH
from ..state import state

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

# A role's name, as migration 8 allows one (a wrong one is simply not found).
RoleName = Annotated[str, StringConstraints(min_length=1, max_length=40)]


class NoContent:
    """No content."""


MAX_SCOPES = 64  # scopes in one token, whatever a product registers


def _known_scope(name: str) -> str:
    return state().scopes.check(name)


def _no_more_scopes_than_exist(names: list[str]) -> list[str]:
    if len(names) > len(state().scopes):
        raise ValueError(f"There are {len(state().scopes)} scopes: name each at most once.")
    return names


# A scope a token of this app may have (authapp's, or one the product registered on it).
ScopeName = Annotated[str, StringConstraints(max_length=63), AfterValidator(_known_scope)]
ScopeList = Annotated[
    list[ScopeName],
    Field(max_length=MAX_SCOPES),
    AfterValidator(_no_more_scopes_than_exist),
]
