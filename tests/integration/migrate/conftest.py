"""Fixtures: a directory file, a profile on disk, and the two servers it is handed over on.

The directory holds the cases a hand-off meets: a UPN equal to the email (adopted
by userName), a UPN on another domain and a bare uid (the IdP cannot find them), two
people whose UPN prefixes collide (one externalId for two), someone outside the
assigned group, someone not provisioned yet; the server adds a member invited by hand.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests
from click.testing import CliRunner, Result

from dirconnector import cli
from tests.emulators.bitwarden.server import BitwardenServer
from tests.integration.azure.conftest import (  # noqa: F401  # the Graph emulator fixtures
    emulator,
    tenant,
)
from tests.integration.scim.conftest import TOKEN, ScimServer
from tests.integration.scim.conftest import scim_process as scim_process  # a shared fixture

USERS = [
    # id, email, user_name (the UPN / login), in the "Staff" group
    ("u-alice", "alice@example.com", "alice@example.com", True),
    ("u-henry", "henry@example.com", "henry@example.com", True),
    ("u-bob", "bob@example.com", "bob@corp.onmicrosoft.com", True),
    ("u-frank", "frank@example.com", "frank", True),
    ("u-gina1", "gina@example.com", "gina@example.com", True),
    ("u-gina2", "gina@example.org", "gina@example.org", True),
    ("u-carol", "carol@example.com", "carol@example.com", False),
]
LATE = [("u-dave", "dave@example.com", "dave@example.com", True),
        ("u-ivy", "ivy@example.com", "ivy@example.com", True)]
"""Join the directory after the last sync: dave has no account (the IdP creates him), ivy
was invited by hand meanwhile (an account without externalId, adopted by userName)."""


def directory(with_late: bool = False) -> dict[str, Any]:
    rows = USERS + (LATE if with_late else [])
    return {
        # No display names: the Bitwarden side holds none, and the hand-off is about ids.
        "users": [{"id": i, "email": e, "user_name": n, "active": True} for i, e, n, _ in rows],
        "groups": [{"id": "g-staff", "name": "Staff", "members": [i for i, *_, s in rows if s]},
                   {"id": "g-contractors", "name": "Contractors",
                    "members": [i for i, *_, s in rows if not s]}],
    }


@dataclass
class Profile:
    """A profile on disk (file source, one target) and how to run the CLI on it."""

    tmp: Path
    target: str
    env: dict[str, str] = field(default_factory=dict)

    @property
    def config(self) -> Path:
        return self.tmp / "dirconnector.toml"

    @property
    def directory(self) -> Path:
        return self.tmp / "directory.json"

    @property
    def state(self) -> Path:
        return self.tmp / "state.db"

    def write(self, *, late: bool = False, migrate: str = "") -> None:
        self.directory.write_text(json.dumps(directory(late)))
        self.config.write_text(f"""
profile = "handoff"
[source]
type = "file"
users = "{self.directory}"
{self.target}
[state]
path = "{self.state}"
{migrate}
""")
        self.config.chmod(0o600)

    def run(self, *args: str) -> Result:
        return CliRunner().invoke(cli.main, ["--config", str(self.config), *args],
                                  catch_exceptions=False, env=self.env)


class IdpClient:
    """The requests an IdP's SCIM client makes to find accounts before it creates any."""

    def __init__(self, url: str, token: str) -> None:
        self.url = url.rstrip("/")
        self.headers = {"Authorization": f"Bearer {token}"}

    def search(self, resource: str, attribute: str, value: str) -> list[dict[str, Any]]:
        resp = requests.get(f"{self.url}/{resource}", headers=self.headers, timeout=10,
                            params={"filter": f'{attribute} eq "{value}"', "startIndex": 1,
                                    "count": 100})
        resp.raise_for_status()
        found: list[dict[str, Any]] = resp.json().get("Resources") or []
        return found

    def dump(self) -> dict[str, list[tuple[str, Any]]]:
        """Every user's and group's (id, externalId), exactly as the server returns them."""
        out: dict[str, list[tuple[str, Any]]] = {}
        for resource in ("Users", "Groups"):
            resp = requests.get(f"{self.url}/{resource}", headers=self.headers, timeout=10,
                                params={"startIndex": 1, "count": 1000})
            resp.raise_for_status()
            out[resource] = sorted((r["id"], r.get("externalId"))
                                   for r in resp.json().get("Resources") or [])
        return out


@pytest.fixture
def bw_server() -> Iterator[BitwardenServer]:
    server = BitwardenServer()
    server.start()
    # PUT /public/members/{id} needs a confirmed owner to remain (the real server's rule).
    server.add_owner("owner@example.com")
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def bw_profile(tmp_path: Path, bw_server: BitwardenServer) -> Profile:
    """The bitwarden target (Public API) on the test server."""
    p = Profile(tmp_path, f"""[target]
type = "bitwarden"
server_url = "{bw_server.url}"
client_id = "{bw_server.client_id}"
client_secret_env = "BW_SECRET"
""", {"BW_SECRET": bw_server.client_secret})
    p.write()
    return p


@pytest.fixture
def bw_scim_profile(tmp_path: Path, bw_server: BitwardenServer) -> Profile:
    """The scim target on the test server's Bitwarden SCIM endpoint."""
    p = Profile(tmp_path, f"""[target]
type = "scim"
url = "{bw_server.scim_url}"
token_env = "SCIM_KEY"
""", {"SCIM_KEY": bw_server.scim_key})
    p.write()
    return p


@pytest.fixture
def scim_server(scim_process: ScimServer) -> ScimServer:
    return ScimServer(scim_process.port, scim_process.process, f"m{uuid.uuid4().hex[:12]}")


@pytest.fixture
def scim_profile(tmp_path: Path, scim_server: ScimServer) -> Profile:
    """The scim target on the independent scim2-server."""
    p = Profile(tmp_path, f"""[target]
type = "scim"
url = "{scim_server.url}"
token_env = "SCIM_TOKEN"
""", {"SCIM_TOKEN": TOKEN})
    p.write()
    return p
