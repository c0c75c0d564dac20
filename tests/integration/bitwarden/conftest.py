"""Fixtures: a fresh Bitwarden-compatible server per test, and a token-holding client."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import requests

from dirconnector.targets.bitwarden.target import BitwardenSettings, BitwardenTarget
from tests.emulators.bitwarden.server import BitwardenServer


@pytest.fixture
def bw_server() -> Iterator[BitwardenServer]:
    server = BitwardenServer()
    server.start()
    try:
        yield server
    finally:
        server.stop()


class PublicApi:
    """A tiny raw client for asserting the server's wire behaviour."""

    def __init__(self, server: BitwardenServer) -> None:
        self.server = server
        resp = requests.post(f"{server.identity_url}/connect/token", data={
            "grant_type": "client_credentials", "client_id": server.client_id,
            "client_secret": server.client_secret, "scope": "api.organization"}, timeout=5)
        resp.raise_for_status()
        self.headers = {"Authorization": f"Bearer {resp.json()['access_token']}"}

    def post(self, path: str, body: Any = None) -> requests.Response:
        return requests.post(f"{self.server.api_url}{path}", json=body, headers=self.headers,
                             timeout=5)

    def get(self, path: str) -> requests.Response:
        return requests.get(f"{self.server.api_url}{path}", headers=self.headers, timeout=5)

    def import_(self, members: list[dict[str, Any]] = (), groups: list[dict[str, Any]] = (),
                **flags: Any) -> requests.Response:  # type: ignore[assignment]
        body = {"members": list(members), "groups": list(groups), "overwriteExisting": False,
                "largeImport": False, "inviteUsersAfterProvisioning": True, **flags}
        return self.post("/public/organization/import", body)


@pytest.fixture
def api(bw_server: BitwardenServer) -> PublicApi:
    return PublicApi(bw_server)


def target_for(server: BitwardenServer, clock: Callable[[], float] = time.monotonic,
               **options: Any) -> BitwardenTarget:
    """A bitwarden target pointed at the test server as a self-hosted install."""
    settings = BitwardenSettings(type="bitwarden", server_url=server.url,
                                 client_id=server.client_id,
                                 client_secret=server.client_secret, **options)
    return BitwardenTarget(settings, clock=clock)


@pytest.fixture
def target(bw_server: BitwardenServer) -> BitwardenTarget:
    return target_for(bw_server)
