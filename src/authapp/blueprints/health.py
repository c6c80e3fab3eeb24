"""Health checks for load balancers and orchestrators: /healthz says the process is alive,
/readyz that it can serve (the database answers and is fully migrated). Never rate limited,
never cached, and left out of the API docs: they are for machines that watch the service."""

from __future__ import annotations

from quart import Blueprint
from quart_rate_limiter import rate_exempt
from quart_schema import hide

from ..state import state

bp = Blueprint("health", __name__)


@bp.get("/healthz")
@rate_exempt
@hide
async def healthz() -> dict[str, str]:
    """200 while the process serves; touches nothing else, so an outage never restarts it."""
    return {"status": "alive"}


@bp.get("/readyz")
@rate_exempt
@hide
async def readyz() -> dict[str, str]:
    """200 when the database answers and every migration is applied, else 503
    `SERVICE_UNAVAILABLE` with the reason in `details` (`database_unavailable`,
    `migrations_pending`, `migrations_failed`)."""
    await state().db.check_ready()
    return {"status": "ready"}
