"""Health checks for load balancers and orchestrators: /healthz says the process is alive,
/readyz that it can serve (the database answers and is fully migrated). Never rate limited,
never cached, and left out of the API docs: they are for machines that watch the service."""

from __future__ import annotations

from quart import Blueprint
from quart_rate_limiter import rate_exempt
from quart_schema import hide

from ...state import state

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
    """200 when the database answers, takes writes and has every migration applied, else 503
    `SERVICE_UNAVAILABLE` with Retry-After and the reason in `details[0].type`: the kind of
    outage (`database_unavailable`, `database_refusing_connections`, `database_missing`,
    `database_auth_failed`, `database_out_of_resources`, `database_read_only`,
    `database_timeout`; see authapp.database.outage_of), `migrations_pending` or
    `migrations_failed`."""
    await state().db.check_ready()
    return {"status": "ready"}
