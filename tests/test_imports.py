"""What a worker loads: the heavy libraries of passkeys (py_webauthn, with cryptography.x509
and cbor2), of encryption at rest (cryptography) and of the Redis rate-limit store (redis) are
imported on first use, so a worker serving passwords, sessions and tokens never pays their
memory (issue 20: some 20 MiB a process)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

from authapp.infra.encryption import generate_key
from tests.conftest import PASSWORD, SECRET_KEY
from tests.mailbox import SmtpServer

HEAVY = ("webauthn", "cryptography", "redis")

# Production settings, from the environment as a deployment gives them; a few requests of the
# kinds most workers serve; then the heavy modules this process loaded, if any.
_WORKER = textwrap.dedent(
    f"""
    import asyncio, secrets, sys
    from authapp import create_app

    async def main():
        app = create_app()
        client = app.test_client()
        async with app.test_app():
            assert (await client.get("/healthz")).status_code == 200
            # An address of its own: the tests before it on this database left accounts.
            email = f"imports-{{secrets.token_hex(4)}}@example.com"
            account = {{"email": email, "password": {PASSWORD!r}}}
            response = await client.post("/api/auth/register", json=account)
            assert response.status_code == 201, await response.get_data(as_text=True)
            response = await client.post("/api/auth/login", json=account)
            assert response.status_code == 200, await response.get_data(as_text=True)
            response = await client.get("/api/me")
            assert response.status_code == 200, await response.get_data(as_text=True)
        print(" ".join(name for name in {HEAVY!r} if name in sys.modules))

    asyncio.run(main())
    """
)


def test_a_worker_serving_passwords_and_sessions_loads_no_heavy_library(
    database_url: str, smtp_server: SmtpServer, tmp_path: Path
) -> None:
    environment = {
        **{name: value for name, value in os.environ.items() if not name.startswith("AUTHAPP_")},
        "AUTHAPP_ENV": "production",
        "AUTHAPP_SECRET_KEY": SECRET_KEY,
        "AUTHAPP_ENCRYPTION_KEYS": generate_key(),
        "AUTHAPP_DATABASE_URL": database_url,
        "AUTHAPP_SMTP_URL": smtp_server.url,
        "AUTHAPP_BASE_URL": "https://auth.example.com",
        "AUTHAPP_INSTANCE_PATH": str(tmp_path / "instance"),
    }
    worker = subprocess.run(
        [sys.executable, "-c", _WORKER], env=environment, capture_output=True, text=True,
        timeout=120,
    )  # fmt: skip
    assert worker.returncode == 0, worker.stderr
    assert worker.stdout.split() == []  # none of HEAVY
