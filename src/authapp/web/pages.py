"""Rendering form pages: the values to fill back in and the errors, each tied to its field;
and the trips a page makes a browser take first (sign in, confirm the password)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any
from urllib.parse import urlencode

from quart import ResponseReturnValue, flash, redirect, render_template, request
from quart_auth import current_user, logout_user

from ..errors import ErrorDetail

# Filled back in after an error; passwords never are.
KEPT_FIELDS = ("email", "display_name", "new_email", "name")


async def render_form(
    template: str,
    *,
    status: int = 200,
    errors: Iterable[ErrorDetail] | None = None,
    **context: Any,
) -> ResponseReturnValue:
    form = await request.form if request.method == "POST" else {}
    values = {name: form.get(name, "") for name in KEPT_FIELDS}
    field_errors: dict[str, str] = {}
    for error in errors or []:
        # A list's item ("scopes.0") shows at the list's field: one message per field.
        field_errors.setdefault(error.field.split(".")[0], error.message)
    html = await render_template(template, values=values, errors=field_errors, **context)
    return html, status


def mismatch(field: str) -> list[ErrorDetail]:
    """The error of a confirmation field that differs from the password it confirms."""
    return [ErrorDetail(field=field, message="The passwords do not match.", type="mismatch")]


def with_next(path: str, target: str) -> str:
    return f"{path}?" + urlencode({"next": target}, safe="/")


async def send_to_sign_in(target: str, *, explain: bool = True) -> ResponseReturnValue:
    """To the login page, and back to `target` after; a dead session's cookie is cleared."""
    if current_user.auth_id is not None:  # a cookie whose session expired or was revoked
        logout_user()
        await flash("Your session has ended. Please sign in again.", "error")
    elif explain:
        await flash("Please sign in to see that page.", "info")
    return redirect(with_next("/auth/login", target))


async def send_to_reauth(target: str) -> ResponseReturnValue:
    """To confirm the password (a form needed a fresh sign-in), and back to `target` after."""
    await flash("Confirm your password to continue.", "info")
    return redirect(with_next("/auth/reauth", target))
