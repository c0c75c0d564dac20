"""One scim2-server (a tenant per profile) for the PostgreSQL replica tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.integration.scim.conftest import ScimServer, start_server


@pytest.fixture(scope="module")
def scim() -> Iterator[ScimServer]:
    server = start_server("--dynamic-tenants")
    yield server
    server.process.terminate()
    server.process.wait(timeout=10)
