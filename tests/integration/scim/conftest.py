"""Fixtures: a fresh independent SCIM server (PyPI scim2-server) per test, a fault proxy, data."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from dirconnector.model import Group, User
from dirconnector.targets.scim.target import ScimSettings, ScimTarget

from .proxy import FaultProxy

TOKEN = "test-token-not-secret"


def _server_command() -> str:
    exe = Path(sys.executable).with_name("scim2-server")
    return str(exe) if exe.exists() else "scim2-server"


@dataclass
class ScimServer:
    """One tenant of the session's scim2-server: an empty store per test."""

    port: int
    process: subprocess.Popen[bytes]
    tenant: str = ""

    @property
    def path(self) -> str:
        return f"/{self.tenant}/v2" if self.tenant else "/v2"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}{self.path}"

    def get(self, path: str, **params: object) -> dict[str, object]:
        """Read the server directly (not through the target) to check what it holds."""
        resp = requests.get(f"{self.url}/{path}", params=params,  # type: ignore[arg-type]
                            headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10)
        resp.raise_for_status()
        body: dict[str, object] = resp.json()
        return body

    def find_user(self, external_id: str) -> dict[str, object]:
        found = self.get("Users", filter=f'externalId eq "{external_id}"')["Resources"]
        assert isinstance(found, list) and len(found) == 1, found
        user: dict[str, object] = found[0]
        return user

    def all(self, path: str) -> list[dict[str, object]]:
        body = self.get(path, count=10000)
        res = body.get("Resources") or []
        assert isinstance(res, list)
        return res


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def start_server(*extra: str, tries: int = 5) -> ScimServer:
    """A scim2-server on a free port, once it says it is serving.

    scim2-server cannot be told port 0 (it prints the port it was given, not the one it
    bound), so a free port is picked first; another process may take it before the
    server binds it, and then the server exits and a new port is tried. Its own
    "Serving SCIM on" line, printed once it has bound the port, is what is waited for:
    an answer on the port could come from whoever took it.
    """
    for _ in range(tries):
        port = free_port()
        with tempfile.TemporaryFile() as out:
            proc = subprocess.Popen(
                [_server_command(), "--hostname", "127.0.0.1", "--port", str(port),
                 "--bearer-token", TOKEN, *extra],
                stdout=out, stderr=subprocess.DEVNULL, env={**os.environ})
            deadline = time.monotonic() + 20
            while proc.poll() is None and time.monotonic() < deadline:
                out.seek(0)
                if out.read().startswith(b"Serving SCIM on"):
                    return ScimServer(port, proc)
                time.sleep(0.02)
        proc.kill()  # it exited (the port was taken) or hung
        proc.wait(timeout=10)
    raise RuntimeError(f"scim2-server did not start in {tries} tries")


@pytest.fixture(scope="session")
def scim_process() -> Iterator[ScimServer]:
    """One scim2-server for the session; --dynamic-tenants gives each test its own store."""
    server = start_server("--dynamic-tenants")
    try:
        yield server
    finally:
        server.process.terminate()
        server.process.wait(timeout=10)


@pytest.fixture
def scim_server(scim_process: ScimServer) -> ScimServer:
    """A fresh, empty tenant of the session's server."""
    return ScimServer(scim_process.port, scim_process.process, f"t{uuid.uuid4().hex[:12]}")


@pytest.fixture
def proxy(scim_server: ScimServer) -> Iterator[FaultProxy]:
    p = FaultProxy(scim_server.port).start()
    try:
        yield p
    finally:
        p.stop()


MakeTarget = Callable[..., ScimTarget]


@pytest.fixture
def make_target(scim_server: ScimServer) -> MakeTarget:
    """A ScimTarget on the server (or on ``url``), with settings overridable by keyword."""
    def make(url: str | None = None, **options: object) -> ScimTarget:
        base = scim_server.url if url is None else url + scim_server.path
        settings = ScimSettings.model_validate(
            {"type": "scim", "url": base, "token": TOKEN, **options})
        return ScimTarget(settings)
    return make


def directory(n_users: int = 50) -> tuple[list[User], list[Group]]:
    """A directory of ``n_users`` people in nested groups (engineering holds two teams)."""
    users = [User(f"ext-{i:03d}", f"user{i:03d}@example.org", display_name=f"User {i:03d}",
                  given_name="User", family_name=f"{i:03d}") for i in range(n_users)]
    ids = [u.external_id for u in users]
    groups = [
        Group("grp-eng", "Engineering", frozenset(ids[:5]), frozenset({"grp-backend",
                                                                       "grp-frontend"})),
        Group("grp-backend", "Backend", frozenset(ids[5:20])),
        Group("grp-frontend", "Frontend", frozenset(ids[20:30])),
        Group("grp-sales", "Sales", frozenset(ids[30:n_users])),
        Group("grp-all", "Everyone", frozenset(), frozenset({"grp-eng", "grp-sales"})),
    ]
    return users, groups
