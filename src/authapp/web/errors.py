"""The HTTP edge's errors: the one place that turns every error into a JSON or HTML answer,
and the documentation of the error answers a route can give in the OpenAPI spec."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TypeVar, cast

from pydantic import BaseModel
from pydantic import ValidationError as PydanticValidationError
from quart import Quart, Response, current_app, render_template, request
from quart_rate_limiter import RateLimitExceeded
from quart_schema import RequestSchemaValidationError, document_response
from werkzeug.exceptions import HTTPException

from ..errors import APIError, ErrorDetail, wait_text
from ..state import state

log = logging.getLogger("authapp.errors")  # see authapp.infra.logs
T = TypeVar("T", bound=Callable[..., object])

# Stable machine-readable codes for the HTTP errors raised by Quart and the extensions.
HTTP_CODES = {
    400: ("BAD_REQUEST", "The request could not be understood."),
    401: ("UNAUTHENTICATED", "You need to sign in."),
    403: ("FORBIDDEN", "You may not do that."),
    404: ("NOT_FOUND", "There is nothing here."),
    405: ("METHOD_NOT_ALLOWED", "That method is not allowed here."),
    408: ("REQUEST_TIMEOUT", "The request's body did not arrive in time. Try again."),
    413: ("PAYLOAD_TOO_LARGE", "The request body is too large."),
    415: ("UNSUPPORTED_MEDIA_TYPE", "Send the body as application/json."),
    429: ("RATE_LIMITED", "Too many attempts. Try again later."),
    500: ("INTERNAL_ERROR", "Something went wrong on our side."),
    503: ("SERVICE_UNAVAILABLE", "The service is unavailable. Try again shortly."),
}
# Answered in JSON whatever the client accepts.
HEALTH_PATHS = frozenset({"/healthz", "/readyz"})
# Headings of the error pages browsers see.
PAGE_TITLES = {
    400: "That did not work",
    401: "Please sign in",
    403: "Not allowed",
    404: "Page not found",
    405: "Not allowed here",
    408: "That took too long",
    413: "Too much at once",
    429: "Slow down",
    431: "Too much at once",
    500: "Something went wrong",
    503: "Back in a moment",
}


class ErrorOut(BaseModel):
    """The body of every error answer."""

    code: str
    message: str
    details: list[ErrorDetail] | None = None


def wants_json() -> bool:
    """API paths answer JSON; elsewhere JSON when the client prefers it over HTML, and always
    when AUTHAPP_PAGES is off (no pages, so no error pages either)."""
    if request.path == "/api" or request.path.startswith(("/api/", "/openapi")):
        return True
    if not state().settings.pages:
        return True
    if request.path in HEALTH_PATHS:  # probes send any Accept and read the JSON reason
        return True
    accept = request.accept_mimetypes
    return accept.best_match(["text/html", "application/json"]) == "application/json"


async def render_error(error: APIError) -> Response:
    if wants_json():
        body = ErrorOut(code=error.code, message=error.message, details=error.details)
        response = cast(Response, current_app.json.response(body.model_dump(exclude_none=True)))
    else:
        html = await render_template(
            "error.html", error=error, title=PAGE_TITLES.get(error.status), retry=_form_to_retry()
        )
        response = Response(html, content_type="text/html; charset=utf-8")
    response.status_code = error.status
    response.headers.update(error.headers)
    return response


def _form_to_retry() -> str | None:
    """After a failed form post, the page that shows the form again, if there is one."""
    if request.method in {"GET", "HEAD"}:
        return None
    try:
        current_app.create_url_adapter(request).match(request.path, method="GET")  # type: ignore[union-attr]
    except HTTPException:
        return None
    return request.path


def details_from(validation_error: Exception) -> list[ErrorDetail]:
    if not isinstance(validation_error, PydanticValidationError):
        return [ErrorDetail(field="body", message=str(validation_error), type="invalid")]
    details = []
    for item in validation_error.errors(include_url=False, include_input=False):
        field = ".".join(str(part) for part in item["loc"]) or "body"
        message = str(item["msg"]).removeprefix("Value error, ")
        if item["type"] == "missing" or (
            item["type"] == "string_too_short" and item.get("ctx", {}).get("min_length") == 1
        ):
            message = "This field is required."
        details.append(ErrorDetail(field=field, message=message, type=str(item["type"])))
    return details


async def handle_api_error(error: APIError) -> Response:
    return await render_error(error)


async def handle_schema_error(error: RequestSchemaValidationError) -> Response:
    details = details_from(error.validation_error)
    if not details:  # quart-schema gives a TypeError when the body is not an object at all
        details = [ErrorDetail(field="body", message="Expected a JSON object.", type="type")]
    return await render_error(
        APIError(400, "VALIDATION_ERROR", "The request is not valid.", details)
    )


async def handle_rate_limited(error: RateLimitExceeded) -> Response:
    code, message = HTTP_CODES[429]
    wait = max(error.retry_after if isinstance(error.retry_after, int) else 1, 1)
    message = f"Too many attempts. Try again in {wait_text(wait)}."
    return await render_error(APIError(429, code, message, headers={"Retry-After": str(wait)}))


async def handle_http_exception(error: HTTPException) -> Response:
    status = error.code or 500
    code, message = HTTP_CODES.get(status, ("HTTP_ERROR", error.description or "HTTP error."))
    headers = {}
    if status == 405 and (allow := error.get_response().headers.get("Allow")):
        headers["Allow"] = allow
    return await render_error(APIError(status, code, message, headers=headers))


async def handle_unexpected(error: Exception) -> Response:
    # The endpoint, not the path: a mailed link's path holds its token.
    log.exception("unhandled error on %s %s", request.method, request.endpoint, exc_info=error)
    return await render_error(APIError(500, *HTTP_CODES[500]))


def register_error_handlers(app: Quart) -> None:
    app.register_error_handler(APIError, handle_api_error)
    app.register_error_handler(RequestSchemaValidationError, handle_schema_error)
    app.register_error_handler(RateLimitExceeded, handle_rate_limited)
    app.register_error_handler(HTTPException, handle_http_exception)
    app.register_error_handler(Exception, handle_unexpected)


def documents_errors(*statuses: int) -> Callable[[T], T]:
    """Document in the OpenAPI spec the error answers a route can give."""

    def decorator(func: T) -> T:
        for status in statuses:
            func = document_response(ErrorOut, status)(func)
        return func

    return decorator
