"""Rendering form pages: the values to fill back in and the errors, each tied to its field."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from quart import ResponseReturnValue, render_template, request

from .errors import ErrorDetail

# Filled back in after an error; passwords never are.
KEPT_FIELDS = ("email", "display_name", "new_email")


async def render_form(
    template: str,
    *,
    status: int = 200,
    errors: Iterable[ErrorDetail] | None = None,
    **context: Any,
) -> ResponseReturnValue:
    form = await request.form if request.method == "POST" else {}
    values = {name: form.get(name, "") for name in KEPT_FIELDS}
    field_errors = {error.field: error.message for error in errors or []}
    html = await render_template(template, values=values, errors=field_errors, **context)
    return html, status


def mismatch(field: str) -> list[ErrorDetail]:
    """The error of a confirmation field that differs from the password it confirms."""
    return [ErrorDetail(field=field, message="The passwords do not match.", type="mismatch")]
