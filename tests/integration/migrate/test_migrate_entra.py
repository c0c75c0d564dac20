"""Entra ID (the Graph emulator, azure connector) -> Bitwarden, then the hand-off to Entra SCIM.

The emulated tenant has the common shape where userPrincipalName (x@contoso.
onmicrosoft.com) differs from mail (x@contoso.com): Entra's default userName mapping
then finds nobody on Bitwarden, which the plan must say before anyone turns
provisioning on; mapping userName from mail ([migrate] user_name_from = "email",
and the same change in Entra's attribute mappings) makes them adoptable.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from dirconnector import settings
from dirconnector.migrate.apply import Migration
from dirconnector.state import SqliteStore
from dirconnector.sync import Runner
from tests.emulators.bitwarden.server import BitwardenServer
from tests.emulators.graph import GraphEmulator
from tests.integration.azure.conftest import CLIENT_ID, SECRET, Tenant

from .conftest import IdpClient

pytestmark = pytest.mark.integration


def profile(emulator: GraphEmulator, bw: BitwardenServer, tmp_path: Path,
            **migrate: Any) -> settings.Profile:
    return settings.load(data={
        "profile": "entra-handoff",
        "source": {"type": "azure", "tenant_id": emulator.tenant_id, "client_id": CLIENT_ID,
                   "client_secret": SECRET, "authority_host": emulator.origin,
                   "graph_url": emulator.origin, "ca_file": str(emulator.ca_file)},
        "target": {"type": "bitwarden", "server_url": bw.url, "client_id": bw.client_id,
                   "client_secret": bw.client_secret},
        "state": {"path": str(tmp_path / "state.db")},
        "migrate": {"idp": "entra", "scope_groups": ["Sales", "Platform"], **migrate},
    })


def test_entra_upn_mismatch_then_mail_mapping(emulator: GraphEmulator, tenant: Tenant,
                                              bw_server: BitwardenServer, tmp_path: Path):
    """Default Entra mapping: UPN != mail means conflicts (carol, whose email is her UPN,
    is adopted); with userName from mail every in-scope member is adopted, apply makes
    them findable by Entra's filters, and rollback restores the connector's object ids."""
    store = SqliteStore(tmp_path / "state.db")
    first = Runner(profile(emulator, bw_server, tmp_path), store).run("sync")
    assert first.status == "ok", first.error

    default = Migration(profile(emulator, bw_server, tmp_path), store).plan(None)
    verdicts = {m.email: m.verdict for m in default.members}
    assert verdicts["bob@contoso.com"] == verdicts["dave@contoso.com"] == "conflict"
    assert verdicts["carol@contoso.onmicrosoft.com"] == "adopt_user_name"
    assert verdicts["alice@contoso.com"] == "unmanaged"   # Engineering is not assigned

    mapped = Migration(profile(emulator, bw_server, tmp_path, user_name_from="email"), store)
    plan = mapped.plan(None)
    c = plan.counts()
    assert (c["members.adopt_user_name"], c["members.conflict"], c["groups.matched_external_id"]
            ) == (3, 0, 2)
    idp = IdpClient(bw_server.scim_url, bw_server.scim_key)
    before = idp.dump()
    out = mapped.apply(None, map_path=tmp_path / "entra.csv")
    assert out.exit_code == 0 and out.frozen and len(out.done) == 3
    for m in plan.members:
        if m.verdict == "adopt_user_name":
            found = idp.search("Users", "userName", m.idp_user_name)
            assert [(u["id"], u["externalId"]) for u in found] == [(m.ref, m.idp_external_id)]
            assert m.idp_external_id == m.email.split("@")[0]   # UPN prefix for mailNickname
    sales = idp.search("Groups", "displayName", "Sales")
    assert [g["externalId"] for g in sales] == [tenant.sales]
    back = mapped.rollback(tmp_path / "entra.csv")
    assert back.exit_code == 0 and not back.frozen
    assert idp.dump() == before
    assert bw_server.member("bob@contoso.com").external_id == tenant.bob  # type: ignore[union-attr]
