"""schemathesis against our own /openapi.json, on a real hypercorn: every documented operation,
signed in with a session cookie, with valid and invalid data; no 5xx, and every answer matches
the status codes, content type, headers and schema the spec documents.

The budget is bounded and the generation derandomized, so a run costs the same every time and
a failure comes back on the next run.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.openapi import from_url
from schemathesis.specs.openapi.checks import positive_data_acceptance
from schemathesis.specs.openapi.schemas import OpenApiSchema

from tests.conftest import PASSWORD
from tests.mailbox import SmtpServer
from tests.servers import hypercorn

# Examples hypothesis draws per operation and generation mode (valid, invalid data).
MAX_EXAMPLES = 20
# No parameters, no body and the cookie optional or none: no request to them is invalid.
NOTHING_TO_NEGATE = {"POST /api/auth/logout", "POST /api/auth/passkey/options"}
# Operations after which the fuzzer's session is gone, so it signs in again.
SIGNS_OUT = {"/api/auth/logout", "/api/sessions/revoke-all"}


class SignedInFuzzer:
    """A user of the fuzz server and its live session cookie, renewed when a case ends it."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.http = requests.Session()
        self.email = f"fuzz-{secrets.token_hex(4)}@example.com"
        registered = self.http.post(
            f"{base}/api/auth/register", json={"email": self.email, "password": PASSWORD}
        )
        assert registered.status_code == 201, registered.text
        self.cookies: dict[str, str] = {}
        self.sign_in()

    def sign_in(self) -> None:
        response = requests.post(
            f"{self.base}/api/auth/login",
            json={"email": self.email, "password": PASSWORD},
            timeout=30,
        )
        assert response.status_code == 200, response.text
        self.cookies = dict(response.cookies)

    def after(self, path: str, response: Any) -> None:
        if path in SIGNS_OUT or response.status_code == 401:
            self.sign_in()


@pytest.fixture(scope="module")
def fuzz_server(
    database_url: str, smtp_server: SmtpServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    instance: Path = tmp_path_factory.mktemp("fuzz") / "instance"
    output: list[str] = []
    with hypercorn(
        database_url,
        instance,
        smtp_server.url,
        output=output,
        AUTHAPP_RATE_LIMIT_ENABLED="false",  # the fuzzer signs in and writes far past any limit
        AUTHAPP_LOCKOUT_THRESHOLD="1000000",  # and sends wrong passwords far past a lockout
        AUTHAPP_COOKIE_SECURE="false",  # so the cookie travels over the test's plain http
    ) as base:
        yield base
    assert "Traceback" not in "\n".join(output), "\n".join(output)


@pytest.fixture(scope="module")
def fuzzer(fuzz_server: str) -> SignedInFuzzer:
    return SignedInFuzzer(fuzz_server)


@pytest.fixture(scope="module")
def api_schema(fuzz_server: str, fuzzer: SignedInFuzzer) -> OpenApiSchema:
    api_schema = from_url(f"{fuzz_server}/openapi.json")

    @api_schema.auth(refresh_interval=None)
    class SessionCookie:
        """The fuzzer's live session: schemathesis knows the cookie is the credential, so it
        tries operations without it too (and expects 401) instead of mutating it."""

        def get(self, case: Any, context: Any) -> dict[str, str]:
            return fuzzer.cookies

        def set(self, case: Any, data: dict[str, str], context: Any) -> None:
            case.cookies = {**(case.cookies or {}), **data}

    return api_schema


# schemathesis' own pytest loader (from_fixture) does not run on pytest 9, so each operation
# gets its hypothesis test here; a failing operation is reported and the next one still runs.
@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_every_operation_matches_the_spec(
    api_schema: OpenApiSchema, fuzzer: SignedInFuzzer, mode: GenerationMode
) -> None:
    failures: dict[str, str] = {}
    operations = 0
    for result in api_schema.get_all_operations():
        operation = result.ok()
        operations += 1

        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(
            max_examples=MAX_EXAMPLES,
            derandomize=True,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        def call(case: Any) -> None:
            response = case.call_and_validate(
                timeout=30, excluded_checks=[positive_data_acceptance]
            )
            fuzzer.after(case.operation.path, response)

        try:
            call()
        except Unsatisfiable:
            assert mode is GenerationMode.NEGATIVE, operation.label
            assert operation.label in NOTHING_TO_NEGATE, operation.label
        except (Exception, BaseExceptionGroup) as error:  # every operation's, not just the first
            failures[operation.label] = str(error)
    assert operations >= 20
    assert not failures, "\n\n".join(f"{label}:\n{error}" for label, error in failures.items())
