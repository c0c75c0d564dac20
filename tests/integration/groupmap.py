"""What the group-mapping tests (slapd and Samba AD to scim2-server) read off the server and
the recording proxy in front of it."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from dirconnector.report import describe
from dirconnector.sync import Runner
from tests.integration.scim.conftest import ScimServer
from tests.integration.scim.proxy import FaultProxy


@pytest.fixture(name="wire")
def recording_wire(scim_server: ScimServer) -> Iterator[FaultProxy]:
    """The SCIM server behind a proxy that records every request."""
    recorder = FaultProxy(scim_server.port).start()
    yield recorder
    recorder.stop()


def mapping_changes(mapping: dict[str, str]) -> list[Any]:
    """The changes of [target.group_mapping] after a first sync: (first, then) pairs."""
    return [
        pytest.param(
            mapping, {"displayName": "app-{name}", "externalId": "app-{id}"}, id="both-changed"
        ),
        pytest.param(
            mapping, {"displayName": "dir-{name}", "externalId": "x-{id}"}, id="external-id-changed"
        ),
        pytest.param({}, mapping, id="mapping-added"),
        pytest.param(mapping, {}, id="mapping-removed"),
    ]


def writes(wire: FaultProxy) -> list[tuple[str, str, Any]]:
    """Every write the proxy saw: (method, resource type, JSON body)."""
    return [
        (m, path.rsplit("/", 2)[-2], json.loads(b) if b else None)
        for m, path, b in wire.requests
        if m in ("PATCH", "PUT", "POST", "DELETE")
    ]


def user_ids(scim: ScimServer) -> dict[str, str]:
    """Server id by userName."""
    return {str(u["userName"]): str(u["id"]) for u in scim.all("Users")}


def by_name(scim: ScimServer) -> dict[str, dict[str, Any]]:
    return {str(g["displayName"]): g for g in scim.all("Groups")}


def members(group: dict[str, Any]) -> set[str]:
    return {m["value"] for m in group.get("members") or []}


def assert_converged(run: Runner) -> None:
    left = run.run("plan", full=True)
    assert left.status == "no-changes", [describe(c) for c in left.plan.changes]
