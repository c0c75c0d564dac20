"""Entra ID (emulated Graph) -> the independent SCIM server, through the real runner and state store."""

from __future__ import annotations

from pathlib import Path

import pytest

from dirconnector import settings
from dirconnector.state import SqliteStore
from dirconnector.sync import Runner
from tests.emulators.graph import GraphEmulator
from tests.integration.scim.conftest import TOKEN, ScimServer

from .conftest import CLIENT_ID, SECRET, Tenant

pytestmark = pytest.mark.integration


def runner(emulator: GraphEmulator, scim: ScimServer, tmp_path: Path) -> Runner:
    profile = settings.load(data={
        "profile": "entra-test",
        "source": {"type": "entra", "tenant_id": emulator.tenant_id, "client_id": CLIENT_ID,
                   "client_secret": SECRET, "authority_host": emulator.origin,
                   "graph_url": emulator.origin, "ca_file": str(emulator.ca_file)},
        "target": {"type": "scim", "url": scim.url, "token": TOKEN},
        "sync": {"remove_missing": True, "max_revocation_ratio": 1.0},
        "state": {"path": str(tmp_path / "state.db")},
    })
    return Runner(profile, SqliteStore(profile.settings.state.path))


def test_sync_to_scim_converges_then_follows_delta(emulator: GraphEmulator, tenant: Tenant,
                                                   scim_server: ScimServer,
                                                   tmp_path: Path) -> None:
    """First run fills the SCIM server; the next reads by delta and changes nothing; a disable
    revokes exactly that account on the server."""
    first = runner(emulator, scim_server, tmp_path).run("sync")
    assert first.status == "ok", first.error
    assert len(scim_server.all("Users")) == 4 and len(scim_server.all("Groups")) == 3

    emulator.reset_log()
    second = runner(emulator, scim_server, tmp_path).run("sync")
    assert second.status in ("unchanged", "no-changes")
    assert [s.path for s in emulator.graph_calls()] == ["users/delta", "groups/delta"]

    emulator.directory.disable_user(tenant.bob)
    third = runner(emulator, scim_server, tmp_path).run("sync")
    assert third.status == "ok" and third.plan is not None
    assert [c.kind for c in third.plan.changes] == ["revoke_user"]
    assert scim_server.find_user(tenant.bob)["active"] is False
    again = runner(emulator, scim_server, tmp_path).run("plan")
    assert again.status in ("no-changes", "unchanged")
