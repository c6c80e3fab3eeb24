"""The API docs page: Swagger UI 5 served from the openapi-ui-bundles package, never a CDN."""

from __future__ import annotations

import openapi_ui_bundles.swagger_ui
from quart import Blueprint, ResponseReturnValue, render_template, send_from_directory
from quart_rate_limiter import rate_exempt
from quart_schema import hide
from werkzeug.exceptions import NotFound

bp = Blueprint("docs", __name__)

SWAGGER_UI = openapi_ui_bundles.swagger_ui.static_path
_ASSETS = {"swagger-ui-bundle.js", "swagger-ui.css", "favicon-32x32.png"}


@bp.get("/docs")
@rate_exempt
@hide
async def docs() -> ResponseReturnValue:
    return await render_template("docs.html")


@bp.get("/docs/assets/<name>")
@rate_exempt
@hide
async def docs_asset(name: str) -> ResponseReturnValue:
    if name not in _ASSETS:
        raise NotFound()
    return await send_from_directory(SWAGGER_UI, name, cache_timeout=86400)
