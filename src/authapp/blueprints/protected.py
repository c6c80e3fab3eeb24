"""Pages behind sign-in: the dashboard and the seeds' protected page."""

from __future__ import annotations

from urllib.parse import urlencode

from quart import Blueprint, ResponseReturnValue, redirect, render_template, request
from quart_auth import Unauthorized, login_required
from quart_rate_limiter import rate_exempt
from quart_schema import hide

from ..errors import handle_http_exception, wants_json
from ..extensions import current_account

bp = Blueprint("protected", __name__)


@bp.errorhandler(Unauthorized)
async def sign_in_first(error: Unauthorized) -> ResponseReturnValue:
    """Browsers go to the login page and come back after; API clients get a 401."""
    if wants_json():
        return await handle_http_exception(error)
    target = request.full_path.rstrip("?") if request.query_string else request.path
    return redirect("/auth/login?" + urlencode({"next": target}, safe="/"))


@bp.get("/")
@rate_exempt
@login_required
@hide
async def dashboard() -> ResponseReturnValue:
    return await render_template("protected/dashboard.html", account=await current_account())


@bp.get("/protected")
@rate_exempt
@login_required
@hide
async def protected() -> ResponseReturnValue:
    return await render_template("protected/protected.html", account=await current_account())
